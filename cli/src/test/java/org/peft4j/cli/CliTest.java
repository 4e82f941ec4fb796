package org.peft4j.cli;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.peft4j.testkit.Shared;

import java.io.ByteArrayInputStream;
import java.io.ByteArrayOutputStream;
import java.io.InputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;

import static org.junit.jupiter.api.Assertions.*;

/// The CLI against independent numbers: the golden greedy text and prompt ids of TinyStories-656K (made by the
/// numpy reference in ../shared), exit codes and messages for bad input, and piped chat.
class CliTest {
    record Out(int code, String stdout, String stderr) {}

    @BeforeAll
    static void home() { System.setProperty("peft4j.home", Shared.root().toString()); }

    static synchronized Out run(String stdin, String... args) {
        PrintStream oldOut = System.out, oldErr = System.err;
        InputStream oldIn = System.in;
        var out = new ByteArrayOutputStream();
        var err = new ByteArrayOutputStream();
        try {
            System.setOut(new PrintStream(out, true, StandardCharsets.UTF_8));
            System.setErr(new PrintStream(err, true, StandardCharsets.UTF_8));
            if (stdin != null) System.setIn(new ByteArrayInputStream(stdin.getBytes(StandardCharsets.UTF_8)));
            int code = Main.run(args);
            return new Out(code, out.toString(StandardCharsets.UTF_8), err.toString(StandardCharsets.UTF_8));
        } finally {
            System.setOut(oldOut); System.setErr(oldErr); System.setIn(oldIn);
        }
    }

    static JsonNode golden() throws Exception {
        return new ObjectMapper().readTree(Shared.require("models/tinystories-656k/golden/greedy.json").toFile());
    }

    @Test
    void generateGreedyMatchesTheReference() throws Exception {
        JsonNode g = golden();
        Out o = run(null, "generate", "--prompt", g.get("prompt").asText(), "--max-new-tokens", "40", "--temperature", "0", "--gemm", "java");
        assertEquals(0, o.code(), o.stderr());
        String expected = g.get("greedy_text").asText().substring(g.get("prompt").asText().length());
        assertEquals(expected, o.stdout().stripTrailing(), "completion only, no prompt");
    }

    /// `bench generate` on the bundled model (seconds): every variant's row (the float16 KV cache's included), the
    /// BF16/F32 ratios, the llama.cpp step (a number, or what to install), and the bytes a decode step reads, against
    /// the sum over the config's shapes.
    @Test
    void benchGenerateReportsEveryVariant() throws Exception {
        Path dir = Shared.require("models/tinystories-656k");
        Out o = run(null, "bench", "generate", "--model", dir.toString(), "--prompt-tokens", "8", "--new-tokens", "4", "--rounds", "1", "--threads", "1");
        assertEquals(0, o.code(), o.stderr());
        var c = org.peft4j.model.LlamaConfig.read(dir);
        long C = c.hiddenSize(), F = c.intermediateSize(), params = c.numHiddenLayers() * (2 * C * c.qDim() + 2 * C * c.kvDim() + 3 * C * F)
                + (long) c.vocabSize() * C;
        for (String dt : new String[]{"F32", "BF16"}) {
            var m = java.util.regex.Pattern.compile("(?m)^" + dt + "\\s+java\\s+\\S+\\s+\\S+\\s+\\S+\\s+(\\S+)").matcher(o.stdout());
            assertTrue(m.find(), dt + " java row in:\n" + o.stdout());
            double mb = Double.parseDouble(m.group(1)), expected = params * (dt.equals("F32") ? 4 : 2) / 1e6;
            assertEquals(expected, mb, 0.006, dt + " MB of weights per decode step");
        }
        var kv16 = java.util.regex.Pattern.compile("(?m)^F32\\s+java\\+kv16\\s+\\S+\\s+\\S+\\s+\\S+\\s+(\\S+)").matcher(o.stdout());
        assertTrue(kv16.find(), "F32 weights over a float16 KV cache: a row in:\n" + o.stdout());
        assertEquals(params * 4 / 1e6, Double.parseDouble(kv16.group(1)), 0.006, "the float16 cache's row reads the F32 weights");
        assertTrue(o.stdout().contains("java: BF16 decode"), o.stdout());
        assertTrue(o.stdout().contains("read bandwidth of this machine"), o.stdout());
        assertTrue(o.stdout().contains("llama.cpp"), o.stdout());
        if (java.nio.file.Files.isDirectory(Shared.root().resolve("bench/llamacpp/node_modules/node-llama-cpp"))) {   // rounds interleaved with ours
            assertTrue(o.stdout().matches("(?s).*\\nF32\\s+llama\\.cpp\\s+[0-9.]+\\s+[0-9.]+\\s+[0-9.]+.*"), o.stdout());
            assertTrue(o.stdout().matches("(?s).*java\\+kv16 F32 vs llama\\.cpp F32, both with float16 KV caches: prefill [0-9.]+x, decode [0-9.]+x.*"), o.stdout());
        }
        Out bad = run(null, "bench", "generate", "--model", dir.toString(), "--new-tokens", "1");
        assertEquals(1, bad.code());
        assertTrue(bad.stderr().contains("--new-tokens >= 2"), bad.stderr());
    }

    /// `bench train --shift-attn --attention-only` prints a full / S² row per length (short lengths: seconds), and the
    /// flags it needs are asked for by name.
    @Test
    void benchShiftAttnAttentionOnly() throws Exception {
        Out o = run(null, "bench", "train", "--shift-attn", "--attention-only", "--seqs", "64,128", "--warmup", "0", "--steps", "1", "--threads", "1");
        assertEquals(0, o.code(), o.stderr());
        for (String seq : new String[] {"64", "128"})
            assertTrue(o.stdout().matches("(?s).*seq\\s+" + seq + " \\| full\\s+[0-9.]+ ms \\| S2\\s+[0-9.]+ ms \\| S2/full [0-9.]+.*"), o.stdout());
        Out bad = run(null, "bench", "train", "--attention-only");
        assertEquals(1, bad.code());
        assertTrue(bad.stderr().contains("--shift-attn"), bad.stderr());
        bad = run(null, "bench", "train", "--shift-attn", "--attention-only", "--seqs", "60");
        assertEquals(1, bad.code());
        assertTrue(bad.stderr().contains("multiple of 8"), bad.stderr());
    }

    @Test
    void stopStringCutsTheCompletion() throws Exception {
        JsonNode g = golden();
        Out o = run(null, "generate", "-p", g.get("prompt").asText(), "--max-new-tokens", "40", "--temperature", "0", "--stop", "Lily");
        assertEquals(0, o.code(), o.stderr());
        String full = g.get("greedy_text").asText().substring(g.get("prompt").asText().length());
        assertEquals(full.substring(0, full.indexOf("Lily")), o.stdout().replaceAll("\\n$", ""));
    }

    @Test
    void seededSamplingIsReproducible() {
        Out a = run(null, "generate", "-p", "The cat", "--max-new-tokens", "20", "--temperature", "0.8", "--top-p", "0.9", "--top-k", "40", "--seed", "7");
        Out b = run(null, "generate", "-p", "The cat", "--max-new-tokens", "20", "--temperature", "0.8", "--top-p", "0.9", "--top-k", "40", "--seed", "7");
        Out c = run(null, "generate", "-p", "The cat", "--max-new-tokens", "20", "--temperature", "0.8", "--top-p", "0.9", "--top-k", "40", "--seed", "8");
        assertEquals(0, a.code(), a.stderr());
        assertEquals(a.stdout(), b.stdout());
        assertNotEquals(a.stdout(), c.stdout(), "another seed should sample another continuation");
    }

    @Test
    void tokenizeMatchesGoldenIds() throws Exception {
        JsonNode g = golden();
        Out o = run(null, "tokenize", "--text", g.get("prompt").asText());
        assertEquals(0, o.code(), o.stderr());
        assertEquals(g.get("prompt_ids").toString().replace(",", ", "), o.stdout().strip());
        Out n = run(null, "tokenize", "--text", g.get("prompt").asText(), "--no-special");
        assertFalse(n.stdout().startsWith("[1,"), n.stdout());
    }

    @Test
    void inspectCountsParameters() {
        Out o = run(null, "inspect");
        assertEquals(0, o.code(), o.stderr());
        assertTrue(o.stdout().contains("656,000"), o.stdout());
        assertTrue(o.stdout().contains("lm_head.weight"), o.stdout());
    }

    @Test
    void pipedChatPrintsOneAnswerPerLine() {
        Out o = run("Tell me a story\nWhat happened next?\n", "chat", "--max-new-tokens", "12", "--temperature", "0");
        assertEquals(0, o.code(), o.stderr());
        assertEquals(2, o.stdout().strip().split("\n").length, o.stdout());
    }

    /// quantize writes a bitsandbytes 4-bit folder that loads back and generates; QLoRA trains over it.
    @Test
    void quantizeThenGenerateAndQloraTrain(@TempDir Path tmp) throws Exception {
        Path q = tmp.resolve("q4");
        Out o = run(null, "quantize", "--model", Shared.root().resolve("models/tinystories-656k").toString(), "--out", q.toString());
        assertEquals(0, o.code(), o.stderr());
        String cfg = Files.readString(q.resolve("config.json"));
        assertTrue(cfg.replaceAll("\\s", "").contains("\"bnb_4bit_quant_type\":\"nf4\""), cfg);
        assertTrue(Files.exists(q.resolve("tokenizer.json")));
        Out again = run(null, "quantize", "--model", Shared.root().resolve("models/tinystories-656k").toString(), "--out", q.toString());
        assertEquals(1, again.code(), "an existing model folder is not silently overwritten");
        assertTrue(again.stderr().startsWith("error: --out " + q + " already exists and is not empty") && again.stderr().contains("--overwrite"), again.stderr());
        Out export = run(null, "export", "--model_name_or_path", Shared.root().resolve("models/tinystories-656k").toString(), "--export_dir", q.toString());
        assertEquals(1, export.code());
        assertTrue(export.stderr().startsWith("error: --export_dir " + q + " already exists"), export.stderr());
        assertEquals(0, run(null, "quantize", "--model", Shared.root().resolve("models/tinystories-656k").toString(), "--out", q.toString(), "--overwrite").code());
        Out g = run(null, "generate", "--model", q.toString(), "-p", "Once upon a time", "--max-new-tokens", "8", "--temperature", "0");
        assertEquals(0, g.code(), g.stderr());
        assertFalse(g.stdout().isBlank());
        Path root = Shared.root();
        Out t = run(null, "train", "--model_name_or_path", q.toString(), "--dataset", "identity_en", "--dataset_dir", root.resolve("data").toString(),
                "--template", "default", "--cutoff_len", "64", "--per_device_train_batch_size", "2", "--max_steps", "4", "--save_steps", "0",
                "--output_dir", tmp.resolve("qlora").toString());
        assertEquals(0, t.code(), t.stderr());
        assertTrue(t.stderr().contains("QLoRA: base frozen in 4-bit nf4"), t.stderr());
        assertTrue(Files.exists(tmp.resolve("qlora/adapter_model.safetensors")));
    }

    /// init-random --quant writes a 4-bit folder directly (BF16 embeddings kept in 16 bits on load); it generates.
    @Test
    void initRandomQuantWritesA4BitFolder(@TempDir Path tmp) throws Exception {
        Path q = tmp.resolve("r4");
        Out o = run(null, "init-random", "--config", Shared.root().resolve("models/tinystories-656k/config.json").toString(), "--quant", "nf4", "--out", q.toString());
        assertEquals(0, o.code(), o.stderr());
        var m = org.peft4j.model.quant.QuantizedModel.load(q);
        assertNotNull(m.embed16, "BF16 embeddings stay 16-bit");
        assertTrue(m.linears[0][0].packed().isMapped(), "4-bit codes used in place");
        Files.copy(Shared.root().resolve("models/tinystories-656k/tokenizer.json"), q.resolve("tokenizer.json"));
        Out g = run(null, "generate", "--model", q.toString(), "-p", "Once upon a time", "--max-new-tokens", "4", "--temperature", "0");
        assertEquals(0, g.code(), g.stderr());
    }

    /// LLaMA-Factory's examples/train_lora/llama3_lora_sft.yaml, unchanged but for the model path, parses and runs
    /// (flags shorten it: dataset_dir, cutoff_len, max_steps, output_dir).
    @Test
    void llamaFactoryExampleYamlRuns(@TempDir Path tmp) throws Exception {
        Path yaml = tmp.resolve("llama3_lora_sft.yaml");
        Files.writeString(yaml, Shared.llamaFactoryExample("llama3_lora_sft.yaml", Shared.root().resolve("models/tinystories-656k")));
        Out o = run(null, "train", yaml.toString(), "--dataset_dir", Shared.require("data/llamafactory").toString(),
                "--cutoff_len", "128", "--max_samples", "16", "--max_steps", "2", "--output_dir", tmp.resolve("out").toString());
        assertEquals(0, o.code(), o.stderr());
        assertTrue(o.stderr().contains("note: bf16=true"), o.stderr());
        assertTrue(Files.exists(tmp.resolve("out/adapter_model.safetensors")));
        assertTrue(Files.exists(tmp.resolve("out/training_args.json")));
    }

    /// LLaMA-Factory's examples/train_lora/llama3_lora_dpo.yaml, unchanged but for the model path, runs stage dpo on
    /// its dpo_en_demo (flags shorten it: dataset_dir, cutoff_len, max_samples, max_steps, output_dir) and logs TRL's
    /// metric names.
    @Test
    void llamaFactoryDpoExampleYamlRuns(@TempDir Path tmp) throws Exception {
        Path yaml = tmp.resolve("llama3_lora_dpo.yaml");
        Files.writeString(yaml, Shared.llamaFactoryExample("llama3_lora_dpo.yaml", Shared.root().resolve("models/tinystories-656k")));
        Out o = run(null, "train", yaml.toString(), "--dataset_dir", Shared.require("data/llamafactory").toString(),
                "--cutoff_len", "128", "--max_samples", "8", "--max_steps", "1", "--gradient_accumulation_steps", "2",
                "--logging_steps", "1", "--output_dir", tmp.resolve("out").toString());
        assertEquals(0, o.code(), o.stderr());
        assertTrue(Files.exists(tmp.resolve("out/adapter_model.safetensors")));
        String log = Files.readString(tmp.resolve("out/trainer_log.jsonl"));
        for (String k : List.of("rewards/chosen", "rewards/rejected", "rewards/accuracies", "rewards/margins", "logps/chosen", "logps/rejected"))
            assertTrue(log.contains("\"" + k + "\""), k + " missing from " + log);
        assertTrue(o.stderr().contains("rewards/accuracies"), o.stderr());
    }

    /// The main job in small: after training on the identity data, greedy answers carry the new name.
    @Test
    void trainedAdapterAnswersWithTheNewName(@TempDir Path tmp) {
        Path root = Shared.root();
        Out t = run(null, "train", "--model_name_or_path", root.resolve("models/tinystories-656k").toString(), "--dataset", "identity_en",
                "--dataset_dir", root.resolve("data").toString(), "--template", "default", "--cutoff_len", "96", "--lora_rank", "16",
                "--per_device_train_batch_size", "4", "--learning_rate", "3e-3", "--num_train_epochs", "25", "--lr_scheduler_type", "cosine",
                "--save_steps", "0", "--output_dir", tmp.resolve("out").toString());
        assertEquals(0, t.code(), t.stderr());
        Out c = run("Who are you?\nWhat is your name?\n", "chat", "--adapter", tmp.resolve("out").toString(), "--template", "default",
                "--max-new-tokens", "24", "--temperature", "0");
        assertEquals(0, c.code(), c.stderr());
        for (String answer : c.stdout().strip().split("\n")) assertTrue(answer.contains("Tiny"), "answer without the new name: " + answer);
        Out base = run("Who are you?\n", "chat", "--template", "default", "--max-new-tokens", "24", "--temperature", "0");
        assertFalse(base.stdout().contains("Tiny"), "the base model cannot know the name: " + base.stdout());
    }

    @Test
    void badInputGivesAClearErrorAndExitCode(@TempDir Path tmp) throws Exception {
        Out missing = run(null, "generate", "--model", tmp.resolve("nope").toString(), "-p", "x");
        assertEquals(1, missing.code());
        assertTrue(missing.stderr().startsWith("error: model folder"), missing.stderr());
        assertFalse(missing.stderr().contains("\tat "), "no stack trace without --verbose");
        Files.writeString(tmp.resolve("config.json"), "{\"model_type\": \"gpt2\"}");
        Out unknown = run(null, "inspect", "--model", tmp.toString());
        assertEquals(1, unknown.code());
        assertTrue(unknown.stderr().contains("gpt2"), unknown.stderr());
        Out usage = run(null, "generate", "--no-such-flag");
        assertEquals(2, usage.code());
        Out key = run(null, "train", "--model_name_or_path", "m", "--output_dir", tmp.toString(), "--dataset", "d", "--lora_rnk", "8");
        assertEquals(1, key.code());
        assertTrue(key.stderr().contains("did you mean 'lora_rank'"), key.stderr());
        Out text = run(null, "eval", "--text", tmp.resolve("missing.txt").toString());
        assertEquals(1, text.code());
        assertTrue(text.stderr().startsWith("error: --text " + tmp.resolve("missing.txt") + " is not a file (it does not exist)"), text.stderr());
        Out file = run(null, "generate", "-m", tmp.resolve("config.json").toString(), "-p", "x");
        assertEquals(1, file.code());
        assertTrue(file.stderr().startsWith("error: --model " + tmp.resolve("config.json") + " is a file, not a model folder"), file.stderr());
        Out nan = run(null, "train", "--model_name_or_path", "m", "--output_dir", tmp.toString(), "--dataset", "d", "--learning_rate", "NaN");
        assertEquals(1, nan.code());
        assertTrue(nan.stderr().contains("'learning_rate' must be a finite number, got 'NaN'") && !nan.stderr().contains("\tat "), nan.stderr());
        Out inf = run(null, "generate", "-p", "x", "--temperature", "Infinity");
        assertEquals(1, inf.code());
        assertTrue(inf.stderr().contains("--temperature must be a finite number >= 0"), inf.stderr());
    }
}
