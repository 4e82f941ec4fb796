package org.peft4j.model;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.peft4j.core.DType;
import org.peft4j.core.Gemm;
import org.peft4j.core.Gemms;
import org.peft4j.model.llama.LlamaModel;
import org.peft4j.model.llama.LlamaWeights;
import org.peft4j.model.llama.Projection;
import org.peft4j.model.quant.QuantizedModel;
import org.peft4j.model.weights.DenseF32;
import org.peft4j.model.weights.DenseHalf;
import org.peft4j.model.weights.Nf4Weight;
import org.peft4j.quant.QuantType;

import java.nio.file.Path;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

/// `Models.load` keeps linear weights in their stored dtype: a BF16/F16 folder runs on 16-bit weights (half the
/// bytes of float32) and gives the logits of the same weights upcast to float32 (`loadWeights`); a 4-bit folder runs
/// on its NF4 tensors and gives the logits of its dequantized float32 weights, without a float copy of its linears.
class ModelsLoadTest {
    @TempDir Path tmp;

    static LlamaConfig config() { return config(true); }

    static LlamaConfig config(boolean tied) {
        return new LlamaConfig(new Architecture.Qwen2(), 64, 96, 2, 4, 2, 16, 128, 64, 1e-6, 1e6, null,
                tied, false, false, 1, List.of(2), 0, 0.1, "bfloat16");
    }

    static int[] tokens(int n, int V) {
        int[] t = new int[n];
        for (int i = 0; i < n; i++) t[i] = (i * 37 + 5) % V;
        return t;
    }

    @Test
    void halfFoldersStayHalfAndMatchTheirFloat32Upcast() {
        Gemm gemm = Gemms.get("auto");
        for (boolean tied : new boolean[]{true, false})
        for (DType dt : new DType[]{DType.BF16, DType.F16}) {
            Path dir = tmp.resolve(dt.name() + "-" + tied);
            RandomModels.save(dir, RandomModels.create(config(tied), 5), dt);
            LlamaModel half = Models.load(dir, gemm);
            LlamaModel f32 = new LlamaModel(Models.loadWeights(dir), gemm);
            long halfBytes = 0, f32Bytes = 0;
            for (int l = 0; l < config().numHiddenLayers(); l++)
                for (Projection p : Projection.values()) {
                    DenseHalf lin = assertInstanceOf(DenseHalf.class, half.decoder.linear(l, p), dt + " " + p.weightName(l));
                    // used in place from the file's read-only mapping (a copy would be writable memory)
                    assertTrue(lin.data().isReadOnly(), "not a view of the file: " + p.weightName(l));
                    assertNull(p.weight(half.weights.layers.get(l)), "no float32 copy of " + p.weightName(l));
                    assertInstanceOf(DenseF32.class, f32.decoder.linear(l, p));
                    halfBytes += half.decoder.linear(l, p).bytes(); f32Bytes += f32.decoder.linear(l, p).bytes();
                }
            assertEquals(f32Bytes, 2 * halfBytes, "16-bit linears take half the bytes");
            // the lm_head (tied or not) stays 16-bit too: a decode step reads half the bytes for it
            DenseHalf head = assertInstanceOf(DenseHalf.class, half.decoder.head(), dt + " lm_head");
            assertEquals(dt, head.type());
            assertInstanceOf(DenseF32.class, f32.decoder.head());
            // and so does the embedding table, looked up in its 16 bits: no float32 copy of either (tied: one table)
            DenseHalf embed = half.decoder.embed16();
            assertEquals(dt, embed.type());
            assertNull(half.weights.embedTokens, dt + " embed_tokens as float32");
            assertNull(half.weights.lmHead, dt + " lm_head as float32");
            assertEquals(tied, embed == head, dt + " tied " + tied + ": the head is the embedding table");
            assertTrue(embed.data().isReadOnly() && head.data().isReadOnly(), "the tables are views of the file too");
            int[] ids = tokens(20, config().vocabSize());
            double d = maxDiff(half.logits(ids), f32.logits(ids));
            System.out.printf("%s tied %s: max |half - float32 upcast| = %.2e%n", dt, tied, d);
            assertTrue(d <= 1e-5, dt + ": " + d);
        }
    }

    @Test
    void fourBitFolderRunsInFourBits() {
        Gemm gemm = Gemms.get("auto");
        LlamaWeights w = RandomModels.create(config(), 6);
        QuantizedModel qm = QuantizedModel.quantize(w, QuantType.NF4, 64, true);
        Path dir = tmp.resolve("nf4");
        qm.save(dir, DType.F32);
        LlamaModel m = Models.load(dir, gemm);
        for (int l = 0; l < config().numHiddenLayers(); l++)
            for (Projection p : Projection.values()) assertInstanceOf(Nf4Weight.class, m.decoder.linear(l, p));
        LlamaModel deq = new LlamaModel(QuantizedModel.load(dir).dequantizedWeights(), gemm);
        int[] ids = tokens(20, config().vocabSize());
        double d = maxDiff(m.logits(ids), deq.logits(ids));
        System.out.printf("nf4: max |4-bit - dequantized| = %.2e%n", d);
        assertTrue(d <= 1e-5, "nf4: " + d);
    }

    static double maxDiff(float[] a, float[] b) {
        double d = 0;
        for (int i = 0; i < a.length; i++) d = Math.max(d, Math.abs(a[i] - b[i]));
        return d;
    }
}
