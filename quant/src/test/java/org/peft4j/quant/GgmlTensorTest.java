package org.peft4j.quant;

import org.junit.jupiter.api.Test;

import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.*;

/// The Vector API Q8_0 block dot against its scalar twin: both sum exact integer block dots; they differ only in
/// where the float scaling rounds (per lane vs per block), so they agree to a few ulps of the row's magnitude.
class GgmlTensorTest {
    @Test
    void vectorQ8DotMatchesTheScalarTwin() {
        var rng = new SplittableRandom(11);
        for (int K : new int[]{32, 64, 576, 1536}) {
            int M = 9;
            float[] w = new float[M * K], x = new float[K];
            for (int i = 0; i < w.length; i++) w[i] = (float) rng.nextDouble(-1, 1);
            for (int i = 0; i < K; i++) x[i] = (float) (rng.nextDouble(-1, 1) * (i % 5 == 0 ? 10 : 1));
            GgmlTensor t = GgmlTensor.quantize(GgmlBlocks.Q8_0, w, M, K);
            float[] s = new float[t.q8ScratchPerRow()];
            GgmlTensor.quantizeRowQ8(x, 0, K, s, 0, K);
            for (int m = 0; m < M; m++) {
                float a = t.dotQ8(m, s, 0, K), b = t.dotQ8Vector(m, s, 0, K);
                double mag = 0;
                for (int j = 0; j < K; j++) mag += Math.abs(w[m * K + j] * x[j]);
                assertEquals(a, b, 1e-6 * (1 + mag), "K=" + K + " row " + m + " (vector path " + GgmlTensor.VECTOR + ")");
            }
        }
    }
}
