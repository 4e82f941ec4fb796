package org.peft4j.model;

import org.peft4j.model.gguf.GgufModel;
import org.peft4j.model.gguf.GgufNames;

import com.fasterxml.jackson.databind.JsonNode;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;
import org.peft4j.core.Peft4jException.ConfigException;
import org.peft4j.core.kernels.ScalarGemm;
import org.peft4j.formats.gguf.GgmlType;
import org.peft4j.formats.gguf.GgufFile;
import org.peft4j.formats.gguf.GgufValue;
import org.peft4j.model.llama.LlamaModel;
import org.peft4j.model.llama.LlamaWeights;
import org.peft4j.model.weights.GgmlWeight;
import org.peft4j.testkit.Shared;

import java.nio.file.Path;

import static org.junit.jupiter.api.Assertions.*;
import static org.peft4j.testkit.Assert.assertClose;

/// Models written to GGUF and read back: the same logits as the Hugging Face folder (F32: the same floats in the same
/// order, so 1e-5 is generous), the goldens of the independent numpy reference, and for 16-bit and block types the
/// fused/tiled products against the same model run on the dequantized float32 weights.
class GgufModelTest {
    @TempDir Path tmp;
    static final int[] IDS = {1, 80, 147, 201, 282, 57, 313, 598, 303, 1049, 1468, 267, 628, 333, 94, 1210};

    private Path write(Path dir, GgufModel.Quant q) {
        Path out = tmp.resolve(dir.getFileName() + "-" + q + ".gguf");
        GgufModel.writer(Models.loadWeights(dir), q, dir.getFileName().toString()).write(out);
        return out;
    }

    static void assertSameShape(LlamaConfig a, LlamaConfig b) {
        assertEquals(a.architecture(), b.architecture());
        assertArrayEquals(new int[]{a.hiddenSize(), a.intermediateSize(), a.numHiddenLayers(), a.numAttentionHeads(), a.numKeyValueHeads(),
                        a.headDim(), a.vocabSize(), a.maxPositionEmbeddings()},
                new int[]{b.hiddenSize(), b.intermediateSize(), b.numHiddenLayers(), b.numAttentionHeads(), b.numKeyValueHeads(),
                        b.headDim(), b.vocabSize(), b.maxPositionEmbeddings()});
        assertEquals((float) a.rmsNormEps(), (float) b.rmsNormEps());
        assertEquals((float) a.ropeTheta(), (float) b.ropeTheta());
        assertEquals(a.tieWordEmbeddings(), b.tieWordEmbeddings());
        assertEquals(a.qkvBias(), b.qkvBias());
        assertEquals(a.ropeScaling(), b.ropeScaling());
    }

    private static int[] ids(LlamaConfig c) {
        int[] ids = IDS.clone();
        for (int i = 0; i < ids.length; i++) ids[i] %= c.vocabSize();
        return ids;
    }

    @ParameterizedTest @ValueSource(strings = {"tinystories-656k", "stories260K-hf"})
    void f32GgufGivesTheFolderLogitsAndTheGoldens(String name) {
        Path dir = Shared.require("models/" + name);
        Path gguf = write(dir, GgufModel.Quant.F32);
        LlamaModel hf = Models.load(dir, ScalarGemm.INSTANCE), ours = Models.load(gguf, ScalarGemm.INSTANCE);
        assertSameShape(hf.config, ours.config);
        int[] ids = ids(hf.config);
        assertClose(name + " GGUF F32 vs folder", hf.logits(ids), ours.logits(ids), 1e-5, 0);

        JsonNode greedy = Fixtures.json(dir.resolve("golden/greedy.json"));
        int[] gIds = Fixtures.ints(greedy.get("logits_ids"));
        int[] shape = new int[2];
        float[] golden = Fixtures.npy(dir.resolve("golden/logits.npy"), shape);
        assertClose(name + " GGUF F32 vs numpy golden", golden, ours.logits(gIds), 1e-4, 0);
    }

    /// A GGUF we did not write: stories260K converted by reference/gguf_reference_writer.py (numpy, from the spec;
    /// alignment 64, its own key order) reads as the folder does.
    @Test void aGgufWrittenByAnIndependentNumpyWriterGivesTheFolderLogits() throws Exception {
        Path dir = Shared.require("models/stories260K-hf");
        Path gguf = Path.of(GgufModelTest.class.getResource("/gguf/stories260K-numpy-f32.gguf").toURI());
        try (GgufFile f = GgufFile.open(gguf)) { assertEquals(64, f.alignment()); }
        LlamaModel hf = Models.load(dir, ScalarGemm.INSTANCE), ours = Models.load(gguf, ScalarGemm.INSTANCE);
        assertSameShape(hf.config, ours.config);
        int[] ids = ids(hf.config);
        assertClose("numpy-written GGUF vs folder", hf.logits(ids), ours.logits(ids), 1e-5, 0);
    }

    @ParameterizedTest @ValueSource(strings = {"F16", "BF16", "Q8_0", "Q4_0"})
    void storedTypesRunAsTheirDequantizedWeights(String quant) {
        Path dir = Shared.require("models/tinystories-656k");
        Path gguf = write(dir, GgufModel.Quant.valueOf(quant));
        LlamaModel kept = Models.load(gguf, ScalarGemm.INSTANCE);
        LlamaModel dense = new LlamaModel(Models.loadWeights(gguf), ScalarGemm.INSTANCE);
        int[] ids = ids(kept.config);
        // 16-bit weights: the same floats, so the same logits. Q8_0/Q4_0: the kept weights also round the activations
        // to Q8_0 blocks as llama.cpp does (GgmlTensor.forwardQ8, checked exactly in GgmlWeightTest), which moves this
        // tiny model's logits by up to 0.34 (Q8_0) and 0.28 (Q4_0).
        double atol = quant.startsWith("Q") ? 1.0 : 1e-5;
        System.out.printf("%s kept vs dequantized: max |Δlogit| %.2e%n", quant, org.peft4j.testkit.Assert.maxAbsDiff(dense.logits(ids), kept.logits(ids)));
        assertClose(quant + " kept vs dequantized", dense.logits(ids), kept.logits(ids), atol, 0);
        try (GgufFile f = GgufFile.open(gguf)) {
            assertEquals(GgmlType.valueOf(quant), f.info("blk.1.ffn_down.weight").type());
            assertEquals(GgmlType.F32, f.info("blk.0.attn_norm.weight").type());
            assertEquals(GgufModel.Quant.valueOf(quant).fileType, f.require("general.file_type").asInt("t"));
        }
        if (quant.startsWith("Q")) {
            // quantization costs accuracy, not correctness: logits stay near the float model's
            LlamaModel hf = Models.load(dir, ScalarGemm.INSTANCE);
            float[] a = hf.logits(ids), b = kept.logits(ids);
            double err = org.peft4j.testkit.Assert.maxAbsDiff(a, b);
            assertTrue(err < (quant.equals("Q8_0") ? 0.5 : 8), quant + " max |Δlogit| " + err);   // seen 0.2 and 3.3 on logits up to ~15
        }
    }

    /// Qwen2 (q/k/v biases, no permutation: llama.cpp runs it with NEOX rope) and a Llama with an explicit head_dim
    /// (key_length/value_length keys), untied embeddings (output.weight) and q/k biases (permuted like their rows).
    @Test void qwen2AndExplicitHeadDimUntiedLlamaRoundTrip() {
        LlamaConfig qwen = new LlamaConfig(new Architecture.Qwen2(), 64, 96, 2, 4, 2, 16, 128, 64, 1e-6, 1e6, null,
                false, false, false, 1, java.util.List.of(2), 0, 0.1, null);
        LlamaConfig llama = new LlamaConfig(new Architecture.Llama(), 64, 96, 2, 4, 2, 24, 128, 64, 1e-5, 5e5, new RopeScaling.Linear(2),
                false, true, false, 1, java.util.List.of(2), 0, 0.1, null);
        for (LlamaConfig c : new LlamaConfig[]{qwen, llama}) {
            LlamaWeights w = RandomModels.create(c, 7);
            Path gguf = tmp.resolve(c.architecture().modelType() + ".gguf");
            GgufModel.writer(w, GgufModel.Quant.F32, null).write(gguf);
            LlamaModel ours = Models.load(gguf, ScalarGemm.INSTANCE), ref = new LlamaModel(w, ScalarGemm.INSTANCE);
            assertSameShape(c, ours.config);
            int[] ids = ids(c);
            assertClose(c.architecture().modelType() + " GGUF round trip", ref.logits(ids), ours.logits(ids), 1e-5, 0);
            try (GgufFile f = GgufFile.open(gguf)) {
                assertTrue(f.tensors().containsKey("output.weight"));
                assertTrue(f.tensors().containsKey("blk.0.attn_q.bias"));
                String arch = f.require("general.architecture").asString("a");
                assertEquals(c == qwen ? "qwen2" : "llama", arch);
                if (c == llama) {
                    assertEquals(24, f.require("llama.attention.key_length").asInt("k"));
                    assertEquals("linear", f.require("llama.rope.scaling.type").asString("t"));
                } else {
                    assertArrayEquals(w.layers.getFirst().wq(), f.readFloats("blk.0.attn_q.weight"), "qwen2 is not permuted");
                }
            }
        }
    }

    @Test void qkRowsArePermutedAsTheConverterDoes() {
        float[] rows = new float[8];
        for (int i = 0; i < 8; i++) rows[i] = i;
        float[] g = GgufNames.permuteRows(rows, 2, 1, true);
        assertArrayEquals(new float[]{0, 2, 1, 3, 4, 6, 5, 7}, g);   // specs.md §4.3 example: 8 rows, 2 heads
        assertArrayEquals(rows, GgufNames.permuteRows(g, 2, 1, false));
        byte[] b = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
        assertArrayEquals(new byte[]{0, 1, 4, 5, 2, 3, 6, 7, 8, 9, 12, 13, 10, 11, 14, 15}, GgufNames.permuteRows(b, 2, 2, true));
        Path dir = Shared.require("models/tinystories-656k");
        LlamaWeights w = Models.loadWeights(dir);
        Path gguf = write(dir, GgufModel.Quant.F32);
        try (GgufFile f = GgufFile.open(gguf)) {
            float[] q = f.readFloats("blk.0.attn_q.weight"), hfq = w.layers.getFirst().wq();
            int C = w.config.hiddenSize(), hd = w.config.headDim();
            // GGUF row h·hd + 2j + p = HF row h·hd + p·hd/2 + j; head 1, j = 3, p = 1
            int g2 = hd + 2 * 3 + 1, f2 = hd + hd / 2 + 3;
            assertArrayEquals(java.util.Arrays.copyOfRange(hfq, f2 * C, f2 * C + C), java.util.Arrays.copyOfRange(q, g2 * C, g2 * C + C));
            float[] v = f.readFloats("blk.0.attn_v.weight");
            assertArrayEquals(w.layers.getFirst().wv(), v, "v is not permuted");
            assertFalse(f.tensors().containsKey("output.weight"), "tied embeddings: no output.weight");
            assertEquals("llama", f.require("general.architecture").asString("a"));
            assertEquals(16, f.require("llama.rope.dimension_count").asInt("d"));
            assertEquals(4, f.require("llama.attention.head_count_kv").asInt("d"));
        }
    }

    @Test void blockWeightsAreKeptAsBlocks() {
        Path gguf = write(Shared.require("models/tinystories-656k"), GgufModel.Quant.Q8_0);
        var model = Models.load(gguf, ScalarGemm.INSTANCE);
        assertNotNull(model.toString());
        LlamaWeights w = Models.loadWeights(gguf);
        assertEquals(w.config.vocabSize() * w.config.hiddenSize(), w.embedTokens.length);
        assertInstanceOf(GgmlWeight.class, new GgmlWeight(org.peft4j.quant.GgmlTensor.quantize(org.peft4j.quant.GgmlBlocks.Q8_0,
                new float[64], 2, 32)));
    }

    @Test void anAdapterFileIsNotAModel() {
        Path p = tmp.resolve("adapter.gguf");
        new org.peft4j.formats.gguf.GgufWriter().put("general.architecture", GgufValue.string("llama"))
                .put("general.type", GgufValue.string("adapter")).write(p);
        ConfigException e = assertThrows(ConfigException.class, () -> Models.load(p, ScalarGemm.INSTANCE));
        assertTrue(e.getMessage().contains("--adapter"), e.getMessage());
    }
}
