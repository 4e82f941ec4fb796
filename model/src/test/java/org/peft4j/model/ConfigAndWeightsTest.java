package org.peft4j.model;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.peft4j.core.DType;
import org.peft4j.core.Peft4jException;
import org.peft4j.core.Peft4jException.ConfigException;
import org.peft4j.core.Peft4jException.FormatException;
import org.peft4j.core.Peft4jException.UnsupportedModelException;
import org.peft4j.core.kernels.ScalarGemm;
import org.peft4j.formats.safetensors.SafeTensors;
import org.peft4j.model.llama.LlamaModel;
import org.peft4j.model.llama.LlamaWeights;
import org.peft4j.testkit.Shared;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/// config.json mapping, presets, random models and their save/load round trip, and the errors bad input gives.
class ConfigAndWeightsTest {

    static LlamaConfig tiny(String modelType, boolean tied) {
        String json = """
            {"model_type": "%s", "hidden_size": 24, "intermediate_size": 40, "num_hidden_layers": 2,
             "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 8, "vocab_size": 50,
             "max_position_embeddings": 64, "tie_word_embeddings": %s, "eos_token_id": [2, 7], "bos_token_id": 1}
            """.formatted(modelType, tied);
        return LlamaConfig.fromJson(json, "test");
    }

    @Test
    void smolLm2PresetEqualsItsConfigJson() {
        Path p = Shared.require("tokenizers/smollm2-135m-instruct/config.json");
        assertEquals(ModelPresets.smollm2_135m(), LlamaConfig.read(p));
    }

    /// Parameter counts as published on each model card / `model.num_parameters()`.
    @Test
    void presetParameterCounts() {
        assertEquals(134_515_008L, ModelInfo.of(ModelPresets.smollm2_135m(), DType.BF16).parameterCount());
        assertEquals(494_032_768L, ModelInfo.of(ModelPresets.qwen25_05b(), DType.BF16).parameterCount());
        assertEquals(1_235_814_400L, ModelInfo.of(ModelPresets.llama32_1b(), DType.BF16).parameterCount());
        assertEquals(6_738_415_616L, ModelInfo.of(ModelPresets.llama2_7b(), DType.F16).parameterCount());
        for (String n : ModelPresets.NAMES) {
            LlamaConfig c = ModelPresets.byName(n);
            assertEquals(c, LlamaConfig.fromJson(c.toJson(), n), n + " survives toJson/fromJson");
        }
        var e = assertThrows(ConfigException.class, () -> ModelPresets.byName("gpt-5"));
        assertTrue(e.getMessage().contains("smollm2-135m"), e.getMessage());
    }

    @Test
    void configMapping() {
        LlamaConfig q = tiny("qwen2", true);
        assertInstanceOf(Architecture.Qwen2.class, q.architecture());
        assertTrue(q.qkvBias());
        assertEquals(List.of(2, 7), q.eosTokenIds());
        assertEquals(32, q.qDim());
        assertEquals(16, q.kvDim());
        LlamaConfig d = LlamaConfig.fromJson("""
            {"model_type": "llama", "hidden_size": 64, "intermediate_size": 8, "num_hidden_layers": 1,
             "num_attention_heads": 4, "vocab_size": 10, "rope_parameters": {"rope_type": "llama3", "rope_theta": 500000.0,
             "factor": 32.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}}""", "t");
        assertEquals(4, d.numKeyValueHeads(), "kv heads default to heads");
        assertEquals(16, d.headDim(), "head_dim defaults to hidden / heads");
        assertEquals(500000.0, d.ropeTheta());
        assertEquals(new RopeScaling.Llama3(32, 1, 4, 8192), d.ropeScaling());
        assertEquals(false, d.tieWordEmbeddings(), "absent tie_word_embeddings is false");
        assertEquals(0, tiny("mistral", false).slidingWindow());
    }

    @Test
    void badConfigsSayWhatAndWhatToDo() {
        String ok = "\"hidden_size\": 8, \"intermediate_size\": 8, \"num_hidden_layers\": 1, \"num_attention_heads\": 2, \"vocab_size\": 10";
        var e1 = assertThrows(UnsupportedModelException.class, () -> LlamaConfig.fromJson("{\"model_type\": \"gpt2\", " + ok + "}", "cfg.json"));
        assertTrue(e1.getMessage().contains("'gpt2'") && e1.getMessage().contains("[llama, mistral, qwen2]"), e1.getMessage());
        var e2 = assertThrows(ConfigException.class, () -> LlamaConfig.fromJson("{\"model_type\": \"llama\", " + ok, "cfg.json"));
        assertTrue(e2.getMessage().startsWith("cfg.json: malformed JSON"), e2.getMessage());
        var e3 = assertThrows(ConfigException.class, () -> LlamaConfig.fromJson("{\"model_type\": \"llama\"}", "cfg.json"));
        assertTrue(e3.getMessage().contains("'hidden_size' is missing"), e3.getMessage());
        var e4 = assertThrows(UnsupportedModelException.class, () -> LlamaConfig.fromJson(
                "{\"model_type\": \"llama\", \"rope_scaling\": {\"rope_type\": \"yarn\", \"factor\": 4}, " + ok + "}", "cfg.json"));
        assertTrue(e4.getMessage().contains("'yarn'") && e4.getMessage().contains("llama3"), e4.getMessage());
        var e5 = assertThrows(UnsupportedModelException.class, () -> LlamaConfig.fromJson(
                "{\"model_type\": \"llama\", \"hidden_act\": \"gelu\", " + ok + "}", "cfg.json"));
        assertTrue(e5.getMessage().contains("gelu"), e5.getMessage());
        var e6 = assertThrows(ConfigException.class, () -> LlamaConfig.fromJson(
                "{\"model_type\": \"llama\", \"num_key_value_heads\": 3, " + ok + "}", "cfg.json"));
        assertTrue(e6.getMessage().contains("multiple of num_key_value_heads 3"), e6.getMessage());
        var e7 = assertThrows(ConfigException.class, () -> LlamaConfig.fromJson("{\"model_type\": \"llama\", \"hidden_size\": \"big\"}", "cfg.json"));
        assertTrue(e7.getMessage().contains("'hidden_size' must be an integer"), e7.getMessage());
    }

    @Test
    void randomModelRoundTripsThroughSafetensors(@TempDir Path tmp) {
        for (boolean tied : new boolean[]{true, false}) {
            LlamaConfig c = tiny("qwen2", tied);
            LlamaWeights w = RandomModels.create(c, 7);
            assertArrayEquals(w.layers.get(1).wq(), RandomModels.create(c, 7).layers.get(1).wq(), "seeded");
            Path f32 = tmp.resolve("f32-" + tied), bf16 = tmp.resolve("bf16-" + tied);
            RandomModels.save(f32, w, DType.F32);
            RandomModels.save(bf16, w, DType.BF16);
            LlamaWeights back = Models.loadWeights(f32);
            assertEquals(c, back.config);
            for (var e : w.tensors().entrySet()) assertArrayEquals(e.getValue(), back.tensors().get(e.getKey()), e.getKey());
            assertEquals(tied, back.lmHead == back.embedTokens, "tied ⇔ one array");
            float[] wq = w.layers.get(0).wq(), wqBf16 = Models.loadWeights(bf16).layers.get(0).wq();
            for (int i = 0; i < wq.length; i++) assertEquals(DType.bf16ToFloat(DType.floatToBf16(wq[i])), wqBf16[i]);
            int[] ids = {1, 5, 9, 33, 2};
            assertArrayEquals(new LlamaModel(w, ScalarGemm.INSTANCE).logits(ids), Models.load(f32, ScalarGemm.INSTANCE).logits(ids));
            assertEquals(w.parameterCount(), ModelInfo.read(f32).parameterCount());
        }
    }

    /// init-random's writer: tensor by tensor into shards, the values of create(c, seed); one file gives save's bytes.
    @Test
    void streamedRandomModelEqualsCreateAndSave(@TempDir Path tmp) throws java.io.IOException {
        for (boolean tied : new boolean[]{true, false}) {
            LlamaConfig c = tiny("qwen2", tied);
            LlamaWeights w = RandomModels.create(c, 7);
            Path one = tmp.resolve("one-" + tied), saved = tmp.resolve("saved-" + tied), sharded = tmp.resolve("sharded-" + tied);
            RandomModels.saveStreamed(one, c, 7, DType.BF16, 5_000_000_000L);
            RandomModels.save(saved, w, DType.BF16);
            assertArrayEquals(Files.readAllBytes(saved.resolve("model.safetensors")), Files.readAllBytes(one.resolve("model.safetensors")));
            RandomModels.saveStreamed(sharded, c, 7, DType.F32, 20_000);
            assertTrue(Files.exists(sharded.resolve("model.safetensors.index.json")), "sharded");
            LlamaWeights back = Models.loadWeights(sharded);
            for (var e : w.tensors().entrySet()) assertArrayEquals(e.getValue(), back.tensors().get(e.getKey()), e.getKey());
        }
    }

    @Test
    void tiedWeightStoredOnlyAsLmHead() {
        Path dir = Shared.require("models/tinystories-656k");
        LlamaWeights w = Models.loadWeights(dir);
        assertSame(w.embedTokens, w.lmHead);
        ModelInfo info = ModelInfo.read(dir);
        assertEquals(656_000L, info.parameterCount(), "as llama_reference.py inspect reports");
        assertEquals(656_000L, w.parameterCount());
        assertTrue(info.summary().lines().anyMatch(l -> l.matches("lm_head.weight +F32 +\\[2048, 128\\]")), info.summary());
    }

    @Test
    void missingTensorAndWrongShapeAreNamed(@TempDir Path tmp) {
        LlamaConfig c = tiny("qwen2", true);
        LlamaWeights w = RandomModels.create(c, 1);
        Map<String, long[]> shapes = LlamaWeights.expectedShapes(c);
        String victim = "model.layers.1.self_attn.k_proj.bias";

        List<SafeTensors.Entry> missing = new ArrayList<>();
        for (var e : w.tensors().entrySet())
            if (!e.getKey().equals(victim)) missing.add(SafeTensors.Entry.ofFloats(e.getKey(), shapes.get(e.getKey()), e.getValue(), DType.F32));
        Path d1 = write(tmp.resolve("missing"), c, missing);
        var e1 = assertThrows(FormatException.class, () -> Models.loadWeights(d1));
        assertTrue(e1.getMessage().contains("'" + victim + "' (shape [16]) is missing"), e1.getMessage());

        List<SafeTensors.Entry> wrong = new ArrayList<>();
        for (var e : w.tensors().entrySet()) {
            boolean v = e.getKey().equals("model.layers.0.mlp.up_proj.weight");
            wrong.add(SafeTensors.Entry.ofFloats(e.getKey(), v ? new long[]{24, 40} : shapes.get(e.getKey()), e.getValue(), DType.F32));
        }
        Path d2 = write(tmp.resolve("wrong"), c, wrong);
        var e2 = assertThrows(FormatException.class, () -> Models.loadWeights(d2));
        assertTrue(e2.getMessage().contains("'model.layers.0.mlp.up_proj.weight' has shape [24, 40], expected [40, 24]"), e2.getMessage());

        var e3 = assertThrows(ConfigException.class, () -> Models.loadWeights(tmp.resolve("nowhere")));
        assertTrue(e3.getMessage().contains("not a directory"), e3.getMessage());
    }

    @Test
    void forwardRejectsWhatItCannotRun() {
        LlamaConfig c = LlamaConfig.fromJson("""
            {"model_type": "mistral", "hidden_size": 16, "intermediate_size": 8, "num_hidden_layers": 1,
             "num_attention_heads": 2, "vocab_size": 10, "max_position_embeddings": 32, "sliding_window": 4}""", "t");
        LlamaModel m = new LlamaModel(RandomModels.create(c, 3), ScalarGemm.INSTANCE);
        assertEquals(4 * 10, m.logits(new int[]{1, 2, 3, 4}).length);
        var e1 = assertThrows(UnsupportedModelException.class, () -> m.logits(new int[]{1, 2, 3, 4, 5}));
        assertTrue(e1.getMessage().contains("sliding window 4"), e1.getMessage());
        var e2 = assertThrows(ConfigException.class, () -> m.logits(new int[]{1, 10}));
        assertTrue(e2.getMessage().contains("token id 10 at index 1"), e2.getMessage());
        Peft4jException e3 = assertThrows(ConfigException.class, () -> m.newCache(1, 33));
        assertTrue(e3.getMessage().contains("max_position_embeddings 32"), e3.getMessage());
    }

    static Path write(Path dir, LlamaConfig c, List<SafeTensors.Entry> entries) {
        try {
            Files.createDirectories(dir);
            Files.writeString(dir.resolve("config.json"), c.toJson());
        } catch (java.io.IOException e) { throw new java.io.UncheckedIOException(e); }
        SafeTensors.write(dir.resolve("model.safetensors"), entries, null);
        return dir;
    }
}
