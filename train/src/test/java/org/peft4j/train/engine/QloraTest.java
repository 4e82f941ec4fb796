package org.peft4j.train.engine;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;
import org.peft4j.core.DType;
import org.peft4j.core.Gemm;
import org.peft4j.core.Gemms;
import org.peft4j.core.Peft4jException.ConfigException;
import org.peft4j.model.LlamaConfig;
import org.peft4j.model.adapter.lora.LoraConfig;
import org.peft4j.model.quant.QuantizedModel;
import org.peft4j.quant.Nf4Tensor;
import org.peft4j.quant.QuantType;
import org.peft4j.testkit.Shared;

import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.*;

/// A QLoRA step (4-bit base through QuantLinear) against a LoRA step over the dequantized base (the same floats, dense
/// Linear): same loss and adapter gradients; and the 4-bit base is untouched by the step.
class QloraTest {
    /// stories260K's shapes (hidden 64, intermediate 172, 5 layers, GQA 8/4) with random weights.
    static final String STORIES = "models/stories260K-hf";   // under ../shared, through Shared.require
    static final int B = 2, T = 32;
    /// With "auto" (OpenBLAS or the Vector API) a tile may be summed in another order than the dense product: each
    /// output is the same dot product of ≤ 172 terms, reassociated, so it differs by ≤ γ(172) ≈ 1e-5 of Σ|terms|,
    /// carried through 5 layers and the loss; 1e-4 of the gradient's norm leaves room for that and catches any real
    /// difference (a wrong tile column or a missing bias moves gradients by O(1) of their norm).
    static final double REL_TOL = 1e-4;

    static LoraConfig lora() {   // both A and B random (NO_INIT), so dA and dx through the adapters are non-zero
        return new LoraConfig(4, 8, 0.0, LoraConfig.ALL_LINEAR, false, false, LoraConfig.Init.NO_INIT,
                "none", false, null, Map.of(), Map.of(), null);
    }

    static int[][] batch(int V) {
        SplittableRandom r = new SplittableRandom(5);
        int[] tok = new int[B * T], tgt = new int[B * T];
        for (int i = 0; i < B * T; i++) { tok[i] = r.nextInt(V); tgt[i] = r.nextInt(V); }
        return new int[][]{tok, tgt};
    }

    static double step(TrainModel tm, int[][] bt) {
        tm.zeroGrad();
        double loss = tm.forward(bt[0], bt[1], T, true, 0);
        tm.backward(bt[0], bt[1], T, 1f / (B * T), 0);
        return loss;
    }

    /// "scalar": each tile's products are the dense product's, term for term (M ≤ 256 is one tile), so equal bits.
    /// BF16: the embeddings and lm_head kept in 16 bits (a row gather, a converting product forward and dX) against
    /// float32 copies of the same values: the head is one tile here, so the scalar products are again equal bits.
    @ParameterizedTest
    @CsvSource({"scalar,F32", "auto,F32", "scalar,BF16", "auto,BF16"})
    void qloraGradientsEqualLoraOverTheDequantizedBase(String mode, DType embed) {
        Gemm gemm = Gemms.get(mode);
        LlamaConfig c = LlamaConfig.read(Shared.require(STORIES));
        QuantizedModel qm = QuantizedModel.createRandom(c, 11, QuantType.NF4, 64, true, embed);
        assertEquals(embed == DType.BF16, qm.embed16 != null && qm.head16 != null && qm.weights.embedTokens == null, "16-bit embeddings held");
        byte[][][] packed = new byte[c.numHiddenLayers()][7][];
        float[][][] absmax = new float[c.numHiddenLayers()][7][];
        for (int l = 0; l < packed.length; l++)
            for (int i = 0; i < 7; i++) { packed[l][i] = qm.linears[l][i].packedBytes(); absmax[l][i] = qm.linears[l][i].absmaxValues(); }

        int[][] bt = batch(c.vocabSize());
        for (boolean ck : new boolean[]{false, true}) {
            TrainModel q = new TrainModel(qm, new Method.Lora(lora()), gemm, B, T, ck, 3);
            TrainModel d = new TrainModel(qm.dequantizedWeights(), new Method.Lora(lora()), gemm, B, T, ck, 3);
            double lq = step(q, bt), ld = step(d, bt);
            assertEquals(ld, lq, Math.abs(ld) * (mode.equals("scalar") ? 0 : REL_TOL), "loss");
            List<Param> pq = q.params(), pd = d.params();
            assertEquals(pd.size(), pq.size());
            for (int p = 0; p < pq.size(); p++) {
                float[] gq = pq.get(p).grad(), gd = pd.get(p).grad();
                double diff = 0, norm = 0;
                for (int i = 0; i < gq.length; i++) { diff += Math.pow(gq[i] - gd[i], 2); norm += (double) gd[i] * gd[i]; }
                assertTrue(norm > 0, pq.get(p).name() + " has a zero gradient: the test would not see a difference");
                if (mode.equals("scalar")) assertArrayEquals(gd, gq, pq.get(p).name());
                else assertTrue(Math.sqrt(diff / norm) <= REL_TOL, pq.get(p).name() + ": relative difference " + Math.sqrt(diff / norm));
            }
        }
        for (int l = 0; l < packed.length; l++)
            for (int i = 0; i < 7; i++) {
                Nf4Tensor w = qm.linears[l][i];
                assertArrayEquals(packed[l][i], w.packedBytes(), "4-bit base changed by a step");
                assertArrayEquals(absmax[l][i], w.absmaxValues(), "absmax changed by a step");
            }
    }

    @Test
    void fullOrFreezeTuningOverA4BitBaseIsRejected() {
        QuantizedModel qm = QuantizedModel.createRandom(LlamaConfig.read(Shared.require(STORIES)), 1, QuantType.NF4, 64, true);
        var e = assertThrows(ConfigException.class, () -> new TrainModel(qm, new Method.Full(), Gemms.get("scalar"), 1, 8, false, 1));
        assertTrue(e.getMessage().contains("lora"), e.getMessage());
        assertThrows(ConfigException.class, () -> new TrainModel(qm, new Method.Freeze(1, List.of("all")), Gemms.get("scalar"), 1, 8, false, 1));
    }
}
