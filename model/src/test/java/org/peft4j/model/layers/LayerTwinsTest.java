package org.peft4j.model.layers;

import org.junit.jupiter.api.Test;
import org.peft4j.core.Parallel;

import java.util.SplittableRandom;

import static org.peft4j.testkit.Assert.assertClose;

/// Each fast layer kernel against its scalar twin, at sizes that leave vector tails (1, 7, 31, 33, 4097 elements, and
/// sequence lengths that cross the attention row block), on one and two threads.
class LayerTwinsTest {
    /// Fast kernels reorder float sums (vector lanes, blocked GEMM) and use the vector exp (within 1 ulp here):
    /// a few ulp of the largest term of a sum of ~100 terms.
    static final double ATOL = 2e-5, RTOL = 2e-5;
    static final int[] LENGTHS = {1, 7, 31, 33, 4097};

    static float[] rand(SplittableRandom rng, int n, double range) {
        float[] a = new float[n];
        for (int i = 0; i < n; i++) a[i] = (float) rng.nextDouble(-range, range);
        return a;
    }

    @Test
    void attention() {
        int[][] shapes = {{1, 1, 2, 1, 8}, {1, 7, 3, 1, 16}, {2, 33, 4, 2, 8}, {1, 70, 9, 3, 64}, {2, 131, 2, 2, 7}};
        for (int threads : new int[] {1, 2}) {
            Parallel.setThreads(threads);
            for (int[] s : shapes) {
                int B = s[0], T = s[1], NH = s[2], KVH = s[3], HS = s[4];
                var rng = new SplittableRandom(T * 31L + HS);
                float[] q = rand(rng, B * T * NH * HS, 2), k = rand(rng, B * T * KVH * HS, 2), v = rand(rng, B * T * KVH * HS, 1);
                float[] dout = rand(rng, B * T * NH * HS, 1);
                float[] out1 = new float[q.length], out2 = new float[q.length];
                float[] att1 = new float[B * NH * T * T], att2 = new float[B * NH * T * T];
                java.util.Arrays.fill(att2, Float.NaN);                      // the fast path must write every entry
                Attention.forwardScalar(out1, att1, q, k, v, B, T, T, NH, KVH, HS, 0);
                Attention.forward(out2, att2, q, k, v, B, T, T, NH, KVH, HS, 0);
                String what = "B=" + B + " T=" + T + " NH=" + NH + " KVH=" + KVH + " HS=" + HS + " threads=" + threads;
                assertClose("attention out " + what, out1, out2, ATOL, RTOL);
                assertClose("attention att " + what, att1, att2, ATOL, RTOL);
                float[] dq1 = rand(rng, q.length, 1), dk1 = rand(rng, k.length, 1), dv1 = rand(rng, v.length, 1);
                float[] dq2 = dq1.clone(), dk2 = dk1.clone(), dv2 = dv1.clone();
                Attention.backwardScalar(dq1, dk1, dv1, dout, att1, q, k, v, B, T, NH, KVH, HS);
                Attention.backward(dq2, dk2, dv2, dout, att1, q, k, v, B, T, NH, KVH, HS,
                        new float[Attention.backwardScratchSize(B, T, NH, HS)]);
                assertClose("attention dq " + what, dq1, dq2, ATOL, RTOL);
                assertClose("attention dk " + what, dk1, dk2, ATOL, RTOL);
                assertClose("attention dv " + what, dv1, dv2, ATOL, RTOL);
            }
        }
        Parallel.setThreads(Runtime.getRuntime().availableProcessors());
    }

    /// Inference layout: T new queries at absolute positions pos0.. over a cache of capacity Tcap.
    @Test
    void attentionWithCache() {
        int B = 2, NH = 4, KVH = 2, HS = 16, Tcap = 40;
        for (int[] tp : new int[][] {{1, 0}, {1, 17}, {5, 20}, {35, 5}}) {
            int T = tp[0], pos0 = tp[1];
            var rng = new SplittableRandom(T + pos0);
            float[] q = rand(rng, B * T * NH * HS, 2), k = rand(rng, B * Tcap * KVH * HS, 2), v = rand(rng, B * Tcap * KVH * HS, 1);
            float[] out1 = new float[q.length], out2 = new float[q.length];
            float[] att1 = new float[B * NH * T * Tcap], att2 = new float[B * NH * T * Tcap];
            java.util.Arrays.fill(att2, Float.NaN);
            Attention.forwardScalar(out1, att1, q, k, v, B, T, Tcap, NH, KVH, HS, pos0);
            Attention.forward(out2, att2, q, k, v, B, T, Tcap, NH, KVH, HS, pos0);
            assertClose("attention out T=" + T + " pos0=" + pos0, out1, out2, ATOL, RTOL);
            assertClose("attention att T=" + T + " pos0=" + pos0, att1, att2, ATOL, RTOL);
        }
    }
}
