package org.peft4j.model.layers;

import org.junit.jupiter.api.Test;

import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.*;
import static org.peft4j.testkit.Assert.assertClose;

/// Loss values against a direct double-precision log-softmax, label shifting as HF does it, stability on huge
/// logits, and the in-place (fused) backward against the out-of-place one.
class CrossEntropyTest {
    static final int IGN = CrossEntropy.IGNORE;
    /// lse is double; the per-row loss is rounded once to float (≤ 0.5 ulp of a loss ≤ ~20, i.e. ~1e-6).
    static final double LOSS_ATOL = 2e-6;

    @Test
    void lossMatchesDoubleLogSoftmax() {
        var rng = new SplittableRandom(11);
        int N = 5, V = 9;
        float[] logits = new float[N * V];
        for (int i = 0; i < logits.length; i++) logits[i] = (float) rng.nextDouble(-8, 8);
        int[] targets = {0, IGN, 8, 4, 4};
        float[] losses = new float[N];
        double[] lse = new double[N];
        double total = CrossEntropy.forward(losses, lse, logits, targets, N, V);
        double[] expected = new double[N];
        double sum = 0;
        for (int n = 0; n < N; n++) {
            if (targets[n] == IGN) continue;
            double s = 0;
            for (int i = 0; i < V; i++) s += Math.exp(logits[n * V + i]);
            expected[n] = Math.log(s) - logits[n * V + targets[n]];
            sum += expected[n];
        }
        assertClose("per-row loss", expected, org.peft4j.testkit.Assert.toDouble(losses), LOSS_ATOL, 0);
        assertEquals(sum, total, N * LOSS_ATOL);
        assertEquals(0f, losses[1], "an ignored row contributes 0");
    }

    @Test
    void hugeLogitsStayFinite() {
        int V = 4;
        float[] logits = {1e4f, -1e4f, 1e4f - 1f, 3e3f};
        float[] losses = new float[1], d = new float[V];
        double[] lse = new double[1];
        CrossEntropy.forward(losses, lse, logits, new int[]{2}, 1, V);
        assertEquals(1 + Math.log(1 + Math.exp(-1)), losses[0], 1e-3, "exp(1e4) must not overflow");
        CrossEntropy.backward(d, logits, lse, new int[]{2}, 1, V, 1f);
        for (float g : d) assertTrue(Float.isFinite(g));
        assertEquals(0.0, d[0] + d[1] + d[2] + d[3], 1e-6, "softmax − onehot sums to 0");
    }

    @Test
    void inPlaceBackwardEqualsOutOfPlace() {
        var rng = new SplittableRandom(12);
        int N = 4, V = 6;
        float[] logits = new float[N * V];
        for (int i = 0; i < logits.length; i++) logits[i] = (float) rng.nextDouble(-3, 3);
        int[] targets = {5, IGN, 0, 3};
        double[] lse = new double[N];
        CrossEntropy.forward(null, lse, logits, targets, N, V);
        float[] d = new float[N * V];
        java.util.Arrays.fill(d, 0.5f);                                // "+=" leaves existing content and ignored rows
        CrossEntropy.backward(d, logits, lse, targets, N, V, 1f / 3);
        for (int i = V; i < 2 * V; i++) assertEquals(0.5f, d[i], "ignored row untouched");
        float[] inPlace = logits.clone();
        CrossEntropy.backward(inPlace, inPlace, lse, targets, N, V, 1f / 3);
        for (int i = 0; i < d.length; i++) assertEquals(d[i] - 0.5f, inPlace[i], 1e-7, "element " + i);
    }

    @Test
    void shiftLabelsPredictsNextToken() {
        int[] labels = {IGN, IGN, 7, 8, 9,
                        1, 2, 3, IGN, IGN};
        int[] targets = new int[10];
        int count = CrossEntropy.shiftLabels(targets, labels, 2, 5);
        assertArrayEquals(new int[]{IGN, 7, 8, 9, IGN,
                                    2, 3, IGN, IGN, IGN}, targets);
        assertEquals(5, count);
        assertEquals(6, CrossEntropy.countLabels(labels), "HF counts the unshifted labels");
    }
}
