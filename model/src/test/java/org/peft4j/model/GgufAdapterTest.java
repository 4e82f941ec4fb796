package org.peft4j.model;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.peft4j.core.Peft4jException.ConfigException;
import org.peft4j.core.Peft4jException.UnsupportedModelException;
import org.peft4j.formats.gguf.GgmlType;
import org.peft4j.formats.gguf.GgufFile;
import org.peft4j.model.adapter.LoadedAdapter;
import org.peft4j.model.adapter.lora.LoraConfig;
import org.peft4j.model.adapter.lora.LoraWeights;
import org.peft4j.model.adapter.lora.PeftAdapter;
import org.peft4j.model.gguf.GgufAdapter;
import org.peft4j.model.gguf.GgufModel;
import org.peft4j.model.gguf.GgufNames;
import org.peft4j.model.llama.Projection;
import org.peft4j.testkit.Shared;

import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;
import java.util.TreeMap;

import static org.junit.jupiter.api.Assertions.*;

/// The GGUF LoRA layout of specs.md §4.4 (the end-to-end check with llama.cpp is cli's LlamaCppOracleTest): names,
/// ne, alpha such that llama.cpp's alpha/rank is PEFT's scaling, lora_b's rows Q/K-permuted, pre-scaled lora_b when
/// modules' scalings differ, DoRA and block types refused.
class GgufAdapterTest {
    @TempDir Path tmp;

    static PeftAdapter adapter(LlamaConfig c, boolean rslora, Map<String, Integer> rankPattern, boolean dora) {
        List<String> targets = List.of("q_proj", "v_proj", "down_proj");
        LoraConfig config = new LoraConfig(4, 8, 0.0, targets, rslora, dora, LoraConfig.Init.NO_INIT, "none", false,
                null, rankPattern, Map.of(), null);
        SplittableRandom rng = new SplittableRandom(1);
        Map<PeftAdapter.Target, LoraWeights> w = new TreeMap<>();
        for (int l = 0; l < c.numHiddenLayers(); l++)
            for (String t : targets) {
                Projection p = Projection.valueOf(t.toUpperCase());
                int r = config.rank(t), in = p.in(c), out = p.out(c);
                float[] a = new float[r * in], b = new float[out * r];
                for (int i = 0; i < a.length; i++) a[i] = (float) rng.nextDouble(-1, 1);
                for (int i = 0; i < b.length; i++) b[i] = (float) rng.nextDouble(-1, 1);
                float[] mag = dora ? new float[out] : null;
                if (dora) java.util.Arrays.fill(mag, 1f);
                w.put(new PeftAdapter.Target(l, t), new LoraWeights(r, in, out, a, b, mag));
            }
        return new PeftAdapter(config, "test", null, w);
    }

    @Test
    void layoutAlphaAndPermutation() {
        LlamaConfig c = LlamaConfig.read(Shared.require("models/tinystories-656k"));
        for (boolean rslora : new boolean[]{false, true}) {
            LoadedAdapter a = LoadedAdapter.of("t", "test", adapter(c, rslora, Map.of(), false), c);
            Path p = tmp.resolve("a" + rslora + ".gguf");
            GgufAdapter.writer(a, GgmlType.F32).write(p);
            try (GgufFile f = GgufFile.open(p)) {
                assertEquals("adapter", f.require("general.type").asString("t"));
                assertEquals("lora", f.require("adapter.type").asString("t"));
                assertEquals("llama", f.require("general.architecture").asString("t"));
                double alpha = f.require("adapter.lora.alpha").asDouble("a");
                assertEquals(a.module(0, Projection.Q_PROJ).scaling(), alpha / 4, 1e-6, "llama.cpp's alpha/rank = PEFT scaling (rslora " + rslora + ")");
                assertEquals(3 * c.numHiddenLayers() * 2, f.tensors().size());
                LoraWeights q = a.module(1, Projection.Q_PROJ).weights();
                assertArrayEquals(new long[]{c.hiddenSize(), 4}, f.info("blk.1.attn_q.weight.lora_a").ne());
                assertArrayEquals(new long[]{4, c.qDim()}, f.info("blk.1.attn_q.weight.lora_b").ne());
                assertArrayEquals(q.a(), f.readFloats("blk.1.attn_q.weight.lora_a"));
                assertArrayEquals(GgufNames.permuteRows(q.b(), c.numAttentionHeads(), 4, true), f.readFloats("blk.1.attn_q.weight.lora_b"));
                assertArrayEquals(a.module(0, Projection.V_PROJ).weights().b(), f.readFloats("blk.0.attn_v.weight.lora_b"), "v is not permuted");
            }
        }
    }

    @Test
    void differentScalingsArePreMultipliedWithAlphaZero() {
        LlamaConfig c = LlamaConfig.read(Shared.require("models/tinystories-656k"));
        LoadedAdapter a = LoadedAdapter.of("t", "test", adapter(c, false, Map.of("down_proj", 2), false), c);
        Path p = tmp.resolve("p.gguf");
        GgufAdapter.writer(a, GgmlType.F32).write(p);
        try (GgufFile f = GgufFile.open(p)) {
            assertEquals(0.0, f.require("adapter.lora.alpha").asDouble("a"));
            var down = a.module(0, Projection.DOWN_PROJ);
            float[] want = down.weights().b().clone();
            for (int i = 0; i < want.length; i++) want[i] *= down.scaling();
            assertArrayEquals(want, f.readFloats("blk.0.ffn_down.weight.lora_b"));
            assertArrayEquals(new long[]{2, c.hiddenSize()}, f.info("blk.0.ffn_down.weight.lora_b").ne());
        }
    }

    /// export-adapter → read back ([GgufAdapter#read], what `--adapter FILE.gguf` loads): the same logits as the PEFT
    /// adapter it came from. One scaling for all modules (plain and rsLoRA): alpha = s·r is exact, so the same bits;
    /// per-module scalings (lora_b pre-scaled, alpha 0, llama.cpp's scale 1): b·s rounded once in float instead of
    /// s applied to the product, a few ulps of the logits.
    @Test
    void exportedAdapterReadsBackToTheSameLogits() {
        Path dir = Shared.require("models/tinystories-656k");
        var model = new org.peft4j.model.llama.LlamaModel(Models.loadWeights(dir), org.peft4j.core.kernels.ScalarGemm.INSTANCE);
        LlamaConfig c = model.config;
        int[] ids = {1, 400, 17, 923, 5, 66, 1200, 31};
        float[] base = model.logits(ids);
        Object[][] cases = {{false, Map.of()}, {true, Map.of()}, {false, Map.of("down_proj", 2)}};
        for (int k = 0; k < cases.length; k++) {
            PeftAdapter peft = adapter(c, (Boolean) cases[k][0], (Map<String, Integer>) cases[k][1], false);
            LoadedAdapter a = LoadedAdapter.of("peft" + k, "test", peft, c);
            Path p = tmp.resolve("rt" + k + ".gguf");
            GgufAdapter.writer(a, GgmlType.F32).write(p);
            LoadedAdapter g = LoadedAdapter.read("gguf" + k, p, c);
            assertEquals(a.modules().size(), g.modules().size());
            model.adapters().register(a);
            model.adapters().register(g);
            float[] want = model.logits(ids, a), got = model.logits(ids, g);
            double diff = 0, moved = 0;
            for (int i = 0; i < want.length; i++) { diff = Math.max(diff, Math.abs(want[i] - got[i])); moved = Math.max(moved, Math.abs(want[i] - base[i])); }
            assertTrue(moved > 1e-2, "case " + k + ": the adapter barely moves the logits (" + moved + ")");
            if (k < 2) assertArrayEquals(want, got, "case " + k + ": one scaling, the same bits");
            else assertTrue(diff <= 1e-5 * (1 + moved), "case " + k + ": max |Δlogit| " + diff);
        }
    }

    @Test
    void readRefusesAModelAFileOfAnotherShapeAndBlockTypes() {
        LlamaConfig c = LlamaConfig.read(Shared.require("models/tinystories-656k"));
        Path model = tmp.resolve("m.gguf");
        GgufModel.writer(Models.loadWeights(Shared.require("models/tinystories-656k")), GgufModel.Quant.F32, "m").write(model);
        var e = assertThrows(ConfigException.class, () -> LoadedAdapter.read("x", model, c));
        assertTrue(e.getMessage().contains("not a LoRA adapter"), e.getMessage());
        LoadedAdapter a = LoadedAdapter.of("t", "test", adapter(c, false, Map.of(), false), c);
        Path p = tmp.resolve("ok.gguf");
        GgufAdapter.writer(a, GgmlType.F16).write(p);
        assertEquals(a.modules().size(), LoadedAdapter.read("f16", p, c).modules().size(), "F16 tensors are read");
        LlamaConfig wider = new LlamaConfig(c.architecture(), c.hiddenSize() * 2, c.intermediateSize(), c.numHiddenLayers(), c.numAttentionHeads(),
                c.numKeyValueHeads(), c.headDim(), c.vocabSize(), c.maxPositionEmbeddings(), c.rmsNormEps(), c.ropeTheta(), c.ropeScaling(),
                c.tieWordEmbeddings(), c.attentionBias(), c.mlpBias(), c.bosTokenId(), c.eosTokenIds(), c.slidingWindow(), c.initializerRange(), null);
        var s = assertThrows(ConfigException.class, () -> LoadedAdapter.read("w", p, wider));
        assertTrue(s.getMessage().contains("must be ["), s.getMessage());
    }

    @Test
    void doraAndBlockTypesAreRefused() {
        LlamaConfig c = LlamaConfig.read(Shared.require("models/tinystories-656k"));
        LoadedAdapter dora = LoadedAdapter.of("t", "test", adapter(c, false, Map.of(), true), c);
        var e = assertThrows(UnsupportedModelException.class, () -> GgufAdapter.writer(dora, GgmlType.F32));
        assertTrue(e.getMessage().contains("DoRA"), e.getMessage());
        LoadedAdapter plain = LoadedAdapter.of("t", "test", adapter(c, false, Map.of(), false), c);
        assertThrows(ConfigException.class, () -> GgufAdapter.writer(plain, GgmlType.Q8_0));
    }
}
