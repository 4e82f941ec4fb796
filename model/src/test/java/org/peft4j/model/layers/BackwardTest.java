package org.peft4j.model.layers;

import org.junit.jupiter.api.Test;
import org.peft4j.core.Parallel;

import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.*;

/// Backward properties finite differences do not show: "+=" accumulation, frozen weights (null gradient) leave
/// the input gradient unchanged, and attention's backward is bit-identical across thread counts.
class BackwardTest {
    static float[] rand(SplittableRandom rng, int n) {
        float[] a = new float[n];
        for (int i = 0; i < n; i++) a[i] = (float) rng.nextDouble(-1, 1);
        return a;
    }

    @Test
    void rmsNormFrozenWeightGivesSameDxAndBackwardAdds() {
        var rng = new SplittableRandom(21);
        int N = 4, C = 16;
        float[] x = rand(rng, N * C), w = rand(rng, C), dy = rand(rng, N * C), y = new float[N * C], rstd = new float[N];
        RmsNorm.forward(y, rstd, x, w, N, C, 1e-5f);
        float[] dx1 = new float[N * C], dx2 = new float[N * C], dw = new float[C];
        RmsNorm.backward(dx1, dw, dy, x, w, rstd, N, C);
        RmsNorm.backward(dx2, null, dy, x, w, rstd, N, C);
        assertArrayEquals(dx1, dx2);
        float[] twice = dx1.clone();
        RmsNorm.backward(twice, null, dy, x, w, rstd, N, C);
        for (int i = 0; i < twice.length; i++) assertEquals(2 * dx1[i], twice[i], 1e-6f, "second call adds");
    }

    @Test
    void attentionBackwardDeterministicAcrossThreadCounts() {
        var rng = new SplittableRandom(22);
        int B = 2, T = 9, NH = 4, KVH = 2, HS = 8;
        float[] q = rand(rng, B * T * NH * HS), k = rand(rng, B * T * KVH * HS), v = rand(rng, B * T * KVH * HS);
        float[] dout = rand(rng, q.length), out = new float[q.length], att = new float[B * NH * T * T];
        int saved = Parallel.threads();
        float[][] one = null, four = null;
        try {
            for (int threads : new int[]{1, 4}) {
                Parallel.setThreads(threads);
                Attention.forward(out, att, q, k, v, B, T, T, NH, KVH, HS, 0);
                float[] dq = new float[q.length], dk = new float[k.length], dv = new float[v.length];
                Attention.backward(dq, dk, dv, dout, att, q, k, v, B, T, NH, KVH, HS);
                if (threads == 1) one = new float[][]{dq, dk, dv}; else four = new float[][]{dq, dk, dv};
            }
        } finally {
            Parallel.setThreads(saved);
        }
        for (int i = 0; i < 3; i++) assertArrayEquals(one[i], four[i], "tensor " + "qkv".charAt(i));
    }

    @Test
    void embeddingBackwardScatterAdds() {
        float[] dwte = new float[3 * 2];
        Embedding.backward(dwte, new float[]{1, 2, 10, 20, 100, 200}, new int[]{2, 0, 2}, 3, 2);
        assertArrayEquals(new float[]{10, 20, 0, 0, 101, 202}, dwte);
    }
}
