package org.peft4j.train;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.peft4j.core.kernels.ScalarGemm;
import org.peft4j.model.Models;
import org.peft4j.model.llama.LlamaWeights;
import org.peft4j.tokenizer.Tokenizer;
import org.peft4j.train.engine.Param;
import org.peft4j.train.engine.TrainModel;
import org.peft4j.testkit.Shared;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.*;

/// End to end on the bundled TinyStories-656K with the shipped identity data: the loss falls, only adapters change,
/// and resuming from a checkpoint reproduces an uninterrupted run bit for bit.
class TrainerTest {
    static Path root() { return Shared.root(); }

    static TrainConfig config(Path out, String... extra) {
        Path model = root().resolve("models/tinystories-656k");
        var flags = new java.util.ArrayList<>(List.of("--model_name_or_path", model.toString(), "--output_dir", out.toString(),
                "--dataset", "identity_en", "--dataset_dir", root().resolve("data").toString(), "--template", "default",
                "--cutoff_len", "96", "--per_device_train_batch_size", "4", "--learning_rate", "3e-3", "--lora_rank", "8",
                "--logging_steps", "5", "--save_steps", "0", "--lr_scheduler_type", "cosine", "--val_size", "3", "--gemm", "java"));
        flags.addAll(List.of(extra));
        return TrainConfig.load(null, flags);
    }

    record Run(Trainer.Result result, TrainModel model, byte[] adapter) {}

    static Run train(TrainConfig cfg) throws Exception {
        Path modelDir = Path.of(cfg.str("model_name_or_path"));
        LlamaWeights w = Models.loadWeights(modelDir);
        TrainData data = TrainData.prepare(cfg, Tokenizer.load(modelDir), modelDir);
        TrainModel m = Trainer.model(cfg, w, org.peft4j.core.Gemms.get(cfg.str("gemm")), Math.min(cfg.i("cutoff_len"), data.maxLength()));
        Path out = Path.of(cfg.str("output_dir"));
        Trainer.Result r = new Trainer(cfg, m, data.train(), data.eval(), out, modelDir.toString(), null).padId(data.padId()).run();
        Path saved = out.resolve(Files.exists(out.resolve("adapter_model.safetensors")) ? "adapter_model.safetensors" : "model.safetensors");
        return new Run(r, m, Files.readAllBytes(saved));
    }

    @Test
    void lossFallsAndOnlyAdaptersChange(@TempDir Path dir) throws Exception {
        Path modelDir = root().resolve("models/tinystories-656k");
        LlamaWeights before = Models.loadWeights(modelDir);
        TrainConfig cfg = config(dir.resolve("out"), "--max_steps", "60", "--eval_strategy", "steps", "--eval_steps", "60");
        Run run = train(cfg);
        var log = Files.readAllLines(dir.resolve("out/trainer_log.jsonl"));
        var om = new com.fasterxml.jackson.databind.ObjectMapper();
        double first = om.readTree(log.get(0)).get("loss").asDouble();
        double last = om.readTree(log.get(log.size() - 2)).get("loss").asDouble();
        assertTrue(last < first / 3, "training loss should fall clearly: first window " + first + ", last " + last);
        assertNotNull(run.result().evalLoss());
        assertTrue(run.result().evalLoss() < 3.0, "validation loss " + run.result().evalLoss());
        // the base weights are untouched (hash of every tensor)
        Map<String, float[]> b = before.tensors(), a = run.model().weights.tensors();
        for (var e : b.entrySet()) assertArrayEquals(e.getValue(), a.get(e.getKey()), e.getKey() + " changed");
        for (Param p : run.model().params()) assertTrue(p.name().contains("lora_"), p.name());
        assertTrue(Files.exists(dir.resolve("out/adapter_config.json")));
        assertTrue(Files.exists(dir.resolve("out/all_results.json")));
    }

    /// 12 steps straight vs 6 steps, a checkpoint, and a resumed run for the rest: identical adapter bytes and log.
    @org.junit.jupiter.params.ParameterizedTest
    @org.junit.jupiter.params.provider.ValueSource(strings = {"adamw_torch", "paged_adamw_8bit"})
    void resumeIsBitIdentical(String optim, @TempDir Path dir) throws Exception {
        Run straight = train(config(dir.resolve("a"), "--max_steps", "12", "--lora_dropout", "0.1", "--neftune_noise_alpha", "5", "--optim", optim));
        // first half: save at 6, stop by limiting max_steps... the schedule depends on max_steps, so instead save every
        // 6 steps in a full run, delete what came after the checkpoint, and resume from it.
        Path b = dir.resolve("b");
        train(config(b, "--max_steps", "12", "--save_steps", "6", "--lora_dropout", "0.1", "--neftune_noise_alpha", "5", "--optim", optim));
        Files.delete(b.resolve("adapter_model.safetensors"));
        Run resumed = train(config(b, "--max_steps", "12", "--save_steps", "6", "--lora_dropout", "0.1", "--neftune_noise_alpha", "5",
                "--optim", optim, "--resume_from_checkpoint", b.resolve("checkpoint-6").toString()));
        assertEquals(6 + 0, resumed.result().steps() - 6, "resumed run should run the remaining 6 steps");
        assertArrayEquals(straight.adapter(), resumed.adapter(), "adapter after resume differs from the uninterrupted run");
        assertEquals(Files.readAllLines(dir.resolve("a/trainer_log.jsonl")).stream().map(TrainerTest::withoutTimes).toList(),
                Files.readAllLines(b.resolve("trainer_log.jsonl")).stream().map(TrainerTest::withoutTimes).toList());
    }

    /// LLaMA-Factory's memory-saving optimizers, full fine-tuning: 8 steps lower the loss, and a run resumed from the
    /// step-4 checkpoint ends with the same model bytes and log as the uninterrupted run (GaLore refreshes its
    /// projection at steps 0, 3 and 6, APOLLO too, BAdam switches layers after steps 2 and 5, so the saved state matters).
    @org.junit.jupiter.params.ParameterizedTest
    @org.junit.jupiter.params.provider.ValueSource(strings = {"use_adam_mini", "use_muon", "use_galore", "use_apollo", "use_badam"})
    void memorySavingOptimizersLowerTheLossAndResume(String key, @TempDir Path dir) throws Exception {
        String[] f = {"--finetuning_type", "full", "--learning_rate", "1e-3", "--max_steps", "8", "--logging_steps", "1", "--" + key, "true",
                "--galore_update_interval", "3", "--galore_rank", "8", "--apollo_update_interval", "3", "--apollo_rank", "8", "--badam_switch_interval", "3", "--val_size", "0",
                "--max_samples", "4", "--cutoff_len", "48", "--per_device_train_batch_size", "2", "--save_steps", "4"};
        Run straight = train(config(dir, f));
        var log = Files.readAllLines(dir.resolve("trainer_log.jsonl"));
        var om = new com.fasterxml.jackson.databind.ObjectMapper();
        double first = om.readTree(log.getFirst()).get("loss").asDouble(), last = om.readTree(log.getLast()).get("loss").asDouble();
        assertTrue(last < first, key + ": loss " + first + " -> " + last);
        Files.delete(dir.resolve("model.safetensors"));
        Run resumed = train(config(dir, concat(f, "--resume_from_checkpoint", dir.resolve("checkpoint-4").toString())));
        assertArrayEquals(straight.adapter(), resumed.adapter(), key + ": the model after resume differs from the uninterrupted run");
        assertEquals(log.stream().map(TrainerTest::withoutTimes).toList(),
                Files.readAllLines(dir.resolve("trainer_log.jsonl")).stream().map(TrainerTest::withoutTimes).toList());
    }

    static String[] concat(String[] a, String... b) {
        String[] out = java.util.Arrays.copyOf(a, a.length + b.length);
        System.arraycopy(b, 0, out, a.length, b.length);
        return out;
    }

    /// Full fine-tuning and freeze tuning also run and reduce the loss.
    @Test
    void fullAndFreezeRun(@TempDir Path dir) throws Exception {
        for (String ft : List.of("full", "freeze")) {
            Run r = train(config(dir.resolve(ft), "--finetuning_type", ft, "--max_steps", "20", "--learning_rate", "1e-3",
                    "--freeze_trainable_layers", "1"));
            var log = Files.readAllLines(dir.resolve(ft + "/trainer_log.jsonl"));
            var om = new com.fasterxml.jackson.databind.ObjectMapper();
            double first = om.readTree(log.get(0)).get("loss").asDouble(), last = om.readTree(log.getLast()).get("loss").asDouble();
            assertTrue(last < first, ft + ": loss " + first + " -> " + last);
            assertTrue(Files.exists(dir.resolve(ft + "/model.safetensors")), ft + " saves the whole model");
            if (ft.equals("freeze")) for (Param p : r.model().params()) assertTrue(p.name().startsWith("model.layers.1."), p.name());
        }
    }

    /// Continued pre-training on raw text (LLaMA-Factory's c4_demo), packed into cutoff_len blocks.
    @Test
    void pretrainingStageRuns(@TempDir Path dir) throws Exception {
        Path shared = Shared.require("data/llamafactory");
        Path model = root().resolve("models/tinystories-656k");
        TrainConfig cfg = TrainConfig.load(null, List.of("--stage", "pt", "--model_name_or_path", model.toString(),
                "--output_dir", dir.toString(), "--dataset", "c4_demo", "--dataset_dir", shared.toString(), "--max_samples", "40",
                "--cutoff_len", "64", "--per_device_train_batch_size", "2", "--max_steps", "6", "--logging_steps", "3",
                "--save_steps", "0", "--learning_rate", "1e-3"));
        Run r = train(cfg);
        assertEquals(6, r.result().steps());
        assertTrue(Double.isFinite(r.result().trainLoss()) && r.result().trainLoss() > 0);
    }

    /// export: the merged float32 model scores held-out data exactly as the base with the adapter applied unmerged.
    @Test
    void exportedMergedModelMatchesTheAdapter(@TempDir Path dir) throws Exception {
        Run r = train(config(dir.resolve("out"), "--max_steps", "10"));
        Path model = root().resolve("models/tinystories-656k");
        var gemm = org.peft4j.core.Gemms.get("java");
        Export.merged(model, dir.resolve("out"), dir.resolve("merged"), "float32", 1, gemm);
        var tok = Tokenizer.load(model);
        var data = Evaluation.texts(List.of("Once upon a time there was a cat.", "Who are you?"), s -> tok.encode(s, true));
        var base = Models.load(model, gemm);
        var a = base.loadAdapter("a", dir.resolve("out"));
        double unmerged = Evaluation.evaluate(base, a, data).loss();
        double merged = Evaluation.evaluate(Models.load(dir.resolve("merged"), gemm), data).loss();
        assertEquals(unmerged, merged, 1e-5, "merged model loss vs unmerged adapter");
        assertTrue(Files.exists(dir.resolve("merged/tokenizer.json")));
        assertNotEquals(Evaluation.evaluate(Models.load(model, gemm), data).loss(), merged, 1e-4, "the adapter changes the model");
    }

    /// save_total_limit keeps the newest checkpoints only; the last step (9) is saved too, as transformers does.
    @Test
    void saveTotalLimitRotatesCheckpoints(@TempDir Path dir) throws Exception {
        train(config(dir, "--max_steps", "9", "--save_steps", "2", "--save_total_limit", "2"));
        try (var s = Files.list(dir)) {
            assertEquals(List.of("checkpoint-8", "checkpoint-9"), s.map(p -> p.getFileName().toString())
                    .filter(n -> n.startsWith("checkpoint-")).sorted().toList());
        }
    }

    /// A diverging run stops with the step (and, for gradients, the tensor) instead of writing NaN adapters.
    @Test
    void divergenceIsReportedWithTheStep(@TempDir Path dir) {
        var e = assertThrows(org.peft4j.core.Peft4jException.class,
                () -> train(config(dir, "--max_steps", "20", "--learning_rate", "1e30", "--max_grad_norm", "0")));
        assertTrue(e.getMessage().startsWith("training diverged") && e.getMessage().contains("at step"), e.getMessage());
        assertTrue(e.getMessage().endsWith("(no checkpoint was written)") && !e.getMessage().contains("null"), e.getMessage());
        assertFalse(Files.exists(dir.resolve("adapter_model.safetensors")), "no adapter is written after a divergence");
    }

    static String withoutTimes(String line) {
        return line.replaceAll("\"(elapsed_time|remaining_time|tokens_per_second)\":(\"[^\"]*\"|[0-9.]+)", "");
    }

    static { ScalarGemm.INSTANCE.name(); }
}
