package org.peft4j.cli;

import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.peft4j.core.DType;
import org.peft4j.core.Gemms;
import org.peft4j.model.LlamaConfig;
import org.peft4j.model.Models;
import org.peft4j.model.adapter.LoadedAdapter;
import org.peft4j.model.adapter.lora.LoraConfig;
import org.peft4j.model.adapter.lora.LoraWeights;
import org.peft4j.model.adapter.lora.PeftAdapter;
import org.peft4j.model.generate.GenerateRequest;
import org.peft4j.model.llama.LlamaModel;
import org.peft4j.model.llama.Projection;
import org.peft4j.template.ChatMessage;
import org.peft4j.testkit.Shared;
import org.peft4j.tokenizer.Tokenizer;
import org.peft4j.train.generate.ChatPrompt;
import org.peft4j.train.generate.TextStream;

import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;
import java.util.TreeMap;

import static org.junit.jupiter.api.Assertions.*;

/// `generate` and `chat` as thin callers of the library: what they print is the library's text, the continuation reads
/// on from the prompt, an adapter runs as the library (and the server) runs it.
class GenerateChatTest {
    @BeforeAll
    static void home() { System.setProperty("peft4j.home", Shared.root().toString()); }

    /// The report: "Once there was a cat" on stories260K printed "named Tom." where prompt + output must read
    /// "Once there was a cat named Tom."
    @Test
    void theContinuationReadsOnFromThePrompt() {
        String model = Shared.require("models/stories260K-hf").toString();
        CliTest.Out o = CliTest.run(null, "generate", "--model", model, "--prompt", "Once there was a cat", "--max-new-tokens", "20");
        assertEquals(0, o.code(), o.stderr());
        assertTrue(("Once there was a cat" + o.stdout()).startsWith("Once there was a cat named Tom."), o.stdout());
    }

    /// README: `generate -p "Once upon a time" --temperature 0.8 --top-p 0.9 --top-k 40 --seed 1 --stop "."`
    @Test
    void readmeSamplingExampleStopsBeforeTheStopString() {
        CliTest.Out o = CliTest.run(null, "generate", "-p", "Once upon a time", "--temperature", "0.8", "--top-p", "0.9", "--top-k", "40",
                "--seed", "1", "--stop", ".");
        assertEquals(0, o.code(), o.stderr());
        String text = o.stdout().replaceAll("\\n$", "");
        assertFalse(text.isBlank());
        assertFalse(text.contains("."), text);
    }

    /// An adapter given to `generate` and `chat` runs unmerged, exactly as the library runs it for a request.
    @Test
    void adapterOutputEqualsTheLibrarysAndDiffersFromTheBase(@TempDir Path tmp) {
        Path dir = Shared.require("models/tinystories-656k");
        LlamaModel model = Models.load(dir, Gemms.get("auto"));
        Tokenizer tok = Tokenizer.load(dir);
        Path adapterDir = tmp.resolve("random-adapter");
        randomAdapter(model.config, 5).write(adapterDir, DType.F32);
        LoadedAdapter adapter = LoadedAdapter.read("random-adapter", adapterDir, model.config);

        int[] prompt = tok.encode("Once upon a time", true);
        String library = TextStream.complete(model, tok, GenerateRequest.greedy(prompt, 24, tok.eosId()).withAdapter(adapter), List.of(), null).text();
        CliTest.Out o = CliTest.run(null, "generate", "-p", "Once upon a time", "--max-new-tokens", "24", "--temperature", "0",
                "--adapter", adapterDir.toString());
        assertEquals(0, o.code(), o.stderr());
        assertEquals(library, o.stdout().replaceAll("\\n$", ""));
        CliTest.Out base = CliTest.run(null, "generate", "-p", "Once upon a time", "--max-new-tokens", "24", "--temperature", "0");
        assertNotEquals(base.stdout(), o.stdout(), "the adapter changes the text");

        ChatPrompt chat = ChatPrompt.of("default", tok, dir);
        int[] ids = chat.encode(List.of(ChatMessage.user("Who are you?")));
        String answer = TextStream.complete(model, tok, GenerateRequest.greedy(ids, 24, tok.eosId()).withAdapter(adapter),
                chat.stopStrings(), null).text();
        CliTest.Out c = CliTest.run("Who are you?\n", "chat", "--template", "default", "--max-new-tokens", "24", "--temperature", "0",
                "--adapter", adapterDir.toString());
        assertEquals(0, c.code(), c.stderr());
        assertEquals(answer.strip().replaceAll("\\s*\\R\\s*", " "), c.stdout().strip());
    }

    /// `--kv-cache f16` takes effect (a 200-token sampled completion changes: float16 keys and values move the
    /// logits, and a sample follows them), repeats itself, and a type other than f32 or f16 is refused.
    @Test
    void kvCacheTypeTakesEffectOrIsRefused() {
        String[] args = {"generate", "-p", "Once upon a time", "--max-new-tokens", "200", "--temperature", "1", "--seed", "3", "--kv-cache"};
        CliTest.Out f32 = CliTest.run(null, append(args, "f32")), f16 = CliTest.run(null, append(args, "f16")), again = CliTest.run(null, append(args, "F16"));
        assertEquals(0, f32.code(), f32.stderr());
        assertEquals(0, f16.code(), f16.stderr());
        assertEquals(f16.stdout(), again.stdout(), "the same seed and cache type give the same completion");
        assertNotEquals(f32.stdout(), f16.stdout(), "--kv-cache f16 left a 200-token sampled completion unchanged");
        CliTest.Out bad = CliTest.run(null, append(args, "bf16"));
        assertEquals(1, bad.code(), bad.stderr());
        assertTrue(bad.stderr().contains("--kv-cache bf16 is not a KV cache type; use f32 (default) or f16"), bad.stderr());
    }

    static String[] append(String[] a, String last) {
        String[] r = java.util.Arrays.copyOf(a, a.length + 1);
        r[a.length] = last;
        return r;
    }

    @Test
    void templateModelNeedsAModelTemplate() {
        CliTest.Out o = CliTest.run("Hi\n", "chat", "--model", Shared.require("models/stories260K-hf").toString(), "--template", "model");
        assertEquals(1, o.code(), o.stderr());
        assertTrue(o.stderr().contains("template 'model' needs a chat template"), o.stderr());
    }

    static PeftAdapter randomAdapter(LlamaConfig c, long seed) {
        List<String> targets = List.of("q_proj", "v_proj", "down_proj");
        LoraConfig config = new LoraConfig(4, 8, 0.0, targets, false, false, LoraConfig.Init.NO_INIT, "none", false,
                null, Map.of(), Map.of(), null);
        SplittableRandom rng = new SplittableRandom(seed);
        Map<PeftAdapter.Target, LoraWeights> w = new TreeMap<>();
        for (int l = 0; l < c.numHiddenLayers(); l++)
            for (String t : targets) {
                Projection p = Projection.valueOf(t.toUpperCase());
                int in = p.in(c), out = p.out(c);
                float[] a = new float[4 * in], b = new float[out * 4];
                for (int i = 0; i < a.length; i++) a[i] = (float) (rng.nextDouble(-1, 1) / Math.sqrt(in));
                for (int i = 0; i < b.length; i++) b[i] = (float) rng.nextDouble(-0.3, 0.3);
                w.put(new PeftAdapter.Target(l, t), new LoraWeights(4, in, out, a, b, null));
            }
        return new PeftAdapter(config, "test/random", null, w);
    }
}
