package org.peft4j.cli;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;
import org.peft4j.core.Gemms;
import org.peft4j.model.Models;
import org.peft4j.model.adapter.LoadedAdapter;
import org.peft4j.model.generate.GenerateRequest;
import org.peft4j.model.generate.Generator;
import org.peft4j.model.llama.LlamaModel;
import org.peft4j.testkit.Shared;
import org.peft4j.tokenizer.Tokenizer;
import org.peft4j.train.Export;

import java.io.IOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.*;

/// Real llama.cpp (node-llama-cpp's prebuilt CPU binary, F32 KV cache, flash attention off) as the oracle for the
/// GGUF files peft4j writes: it loads our exported models and our GGUF LoRA adapter, tokenizes the prompt from our
/// tokenizer metadata, and generates greedily; its ids and text must equal peft4j's on the same file (for the
/// block and 16-bit types too: llama.cpp then also rounds the activations, so this shows the two agree on every
/// greedy step, not that the logits are equal).
class LlamaCppOracleTest {
    static final int NEW = 40;
    @TempDir static Path tmp;

    @BeforeAll
    static void home() { System.setProperty("peft4j.home", Shared.root().toString()); }

    record Oracle(int[] prompt, int[] tokens, String text) {}

    static Oracle llamaCpp(Path model, String prompt, Path lora) throws IOException, InterruptedException {
        Path dir = NodeClient.requireLlamaCpp();
        List<String> cmd = new ArrayList<>(List.of("node", "generate.mjs", model.toString(), prompt, String.valueOf(NEW)));
        if (lora != null) cmd.add(lora.toString());
        Process p = new ProcessBuilder(cmd).directory(dir.toFile()).redirectError(ProcessBuilder.Redirect.INHERIT).start();
        String out = new String(p.getInputStream().readAllBytes());
        assertTrue(p.waitFor(120, TimeUnit.SECONDS), "node-llama-cpp did not finish");
        assertEquals(0, p.exitValue(), "node-llama-cpp failed on " + model + ": " + out);
        JsonNode j = new ObjectMapper().readTree(out.lines().reduce((a, b) -> b).orElseThrow());
        return new Oracle(ints(j.get("prompt")), ints(j.get("tokens")), j.get("text").asText());
    }

    static int[] ints(JsonNode a) {
        int[] r = new int[a.size()];
        for (int i = 0; i < r.length; i++) r[i] = a.get(i).asInt();
        return r;
    }

    /// Our greedy ids on the same file, through the library (stopping at EOS as llama.cpp stops at end-of-generation).
    static int[] ours(Path gguf, int[] prompt, LoadedAdapter adapter) {
        LlamaModel m = Models.load(gguf, Gemms.get("auto"));
        Tokenizer tok = Tokenizer.load(gguf);
        GenerateRequest r = GenerateRequest.greedy(prompt, NEW, tok.eosId());
        return Generator.generate(m, adapter == null ? r : r.withAdapter(adapter), null).tokens();
    }

    @ParameterizedTest
    @CsvSource({"tinystories-656k,f32,Once upon a time", "tinystories-656k,f16,Lily and Tom went to the park",
            "tinystories-656k,q8_0,Once upon a time", "stories260K-hf,f32,Once there was a cat"})
    void llamaCppRunsOurExportLikePeft4j(String name, String quant, String prompt) throws Exception {
        Path dir = Shared.require("models/" + name);
        CliTest.Out exp = CliTest.run(null, "export", "--model_name_or_path", dir.toString(), "--export_dir",
                tmp.resolve(name + "-" + quant + ".gguf").toString(), "--export_format", "gguf", "--export_quant", quant);
        assertEquals(0, exp.code(), exp.stderr());
        Path gguf = Path.of(exp.stdout().strip());
        Oracle o = llamaCpp(gguf, prompt, null);
        Tokenizer tok = Tokenizer.load(gguf);
        assertArrayEquals(tok.encode(prompt, true), o.prompt(), "llama.cpp tokenizes the prompt from our metadata as we do");
        assertArrayEquals(tok.encode(prompt, true), Tokenizer.load(dir).encode(prompt, true), "the GGUF tokenizer is the folder's");
        int[] ids = ours(gguf, o.prompt(), null);
        assertArrayEquals(o.tokens(), ids, name + " " + quant + ": llama.cpp " + Arrays.toString(o.tokens()) + " vs peft4j " + Arrays.toString(ids));
        CliTest.Out gen = CliTest.run(null, "generate", "--model", gguf.toString(), "-p", prompt, "--max-new-tokens", String.valueOf(NEW));
        assertEquals(0, gen.code(), gen.stderr());
        assertEquals(o.text(), gen.stdout().replaceAll("\\n$", ""), "./peft4j generate prints llama.cpp's text");
    }

    /// The identity fine-tune of the README (cli/src/test/resources/identity-lora, r 16 on all seven projections,
    /// trained by `peft4j train examples/train_lora/tinystories_lora_sft.yaml`) exported with `export-adapter`:
    /// llama.cpp applies it over the base GGUF exactly as `generate --adapter` does.
    @Test
    void llamaCppAppliesOurGgufLoraAdapter() throws Exception {
        Path dir = Shared.require("models/tinystories-656k");
        Path adapterDir = Path.of(LlamaCppOracleTest.class.getResource("/identity-lora").toURI());
        Path base = Export.mergedGguf(dir, null, tmp.resolve("base.gguf"), "f32", Gemms.get("auto"));
        Path lora = tmp.resolve("identity-lora.gguf");
        CliTest.Out exp = CliTest.run(null, "export-adapter", "--model", base.toString(), "--adapter", adapterDir.toString(), "--out", lora.toString());
        assertEquals(0, exp.code(), exp.stderr());
        String prompt = "Who are you?";
        Oracle o = llamaCpp(base, prompt, lora);
        LoadedAdapter adapter = LoadedAdapter.read("identity", adapterDir, Models.loadWeights(base).config);
        int[] ids = ours(base, o.prompt(), adapter);
        assertArrayEquals(o.tokens(), ids, "llama.cpp + GGUF LoRA " + Arrays.toString(o.tokens()) + " vs peft4j --adapter " + Arrays.toString(ids));
        assertFalse(Arrays.equals(ours(base, o.prompt(), null), ids), "the adapter changes the answer");
        CliTest.Out gen = CliTest.run(null, "generate", "--model", base.toString(), "--adapter", adapterDir.toString(), "-p", prompt,
                "--max-new-tokens", String.valueOf(NEW));
        assertEquals(0, gen.code(), gen.stderr());
        assertEquals(o.text(), gen.stdout().replaceAll("\\n$", ""));
        assertTrue(o.text().contains("Tiny"), "the identity answer: " + o.text());
    }
}
