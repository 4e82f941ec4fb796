package org.peft4j.model;

import org.junit.jupiter.api.Test;
import org.peft4j.core.Peft4jException.ConfigException;
import org.peft4j.model.generate.Sampler;
import org.peft4j.model.generate.TokenSampler;

import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.peft4j.testkit.Assert.assertClose;

/// Sampling against distributions derived here by hand in double precision (transformers' processor semantics).
class SamplerTest {
    static final float[] LOGITS = {2.0f, 1.0f, 0.5f, 0.5f, -1.0f, -3.0f};
    static final int V = LOGITS.length;
    /// the sampler divides by the temperature in float (as transformers does in the model dtype); 1e-6 covers it.
    static final double PROB_ATOL = 1e-6;

    static double[] softmax(double[] z, boolean[] keep) {
        double max = Double.NEGATIVE_INFINITY, sum = 0;
        for (int i = 0; i < z.length; i++) if (keep[i]) max = Math.max(max, z[i]);
        double[] p = new double[z.length];
        for (int i = 0; i < z.length; i++) if (keep[i]) sum += p[i] = Math.exp(z[i] - max);
        for (int i = 0; i < z.length; i++) p[i] /= sum;
        return p;
    }

    static double[] dist(Sampler s, boolean[] seen) {
        double[] out = new double[V];
        new TokenSampler(s, V).distribution(out, LOGITS, 0, seen);
        return out;
    }

    static boolean[] all(boolean v) { boolean[] b = new boolean[V]; java.util.Arrays.fill(b, v); return b; }

    @Test
    void greedyAndRepetitionPenalty() {
        TokenSampler g = new TokenSampler(new Sampler.Greedy(), V);
        assertEquals(0, g.sample(LOGITS, 0, null, null));
        // penalty 3 on token 0: 2.0 / 3 = 0.667 < 1.0, so token 1 wins
        boolean[] seen = new boolean[V]; seen[0] = true;
        assertEquals(1, new TokenSampler(new Sampler.Greedy(3.0), V).sample(LOGITS, 0, seen, null));
        // a negative logit is multiplied: token 4 with penalty 1.5 → −1.5; softmax at temperature 1 over all
        boolean[] seen4 = new boolean[V]; seen4[4] = true; seen4[1] = true;
        double[] z = {2.0, 1.0 / 1.5, 0.5, 0.5, -1.5, -3.0};
        assertClose("penalized distribution", softmax(z, all(true)), dist(new Sampler.Random(1.0, 0, 1.0, 1.5), seen4), PROB_ATOL, 0);
    }

    @Test
    void temperature() {
        double[] z = new double[V];
        for (int i = 0; i < V; i++) z[i] = LOGITS[i] / 0.7;
        assertClose("T=0.7", softmax(z, all(true)), dist(new Sampler.Random(0.7, 0, 1.0, 1.0), null), PROB_ATOL, 0);
    }

    @Test
    void topKKeepsTiesWithTheKth() {
        // k = 3: the 3rd largest logit is 0.5, shared by ids 2 and 3, so both stay (transformers: remove < kth)
        boolean[] keep = {true, true, true, true, false, false};
        double[] z = new double[V];
        for (int i = 0; i < V; i++) z[i] = LOGITS[i];
        assertClose("top-k 3", softmax(z, keep), dist(new Sampler.Random(1.0, 3, 1.0, 1.0), null), PROB_ATOL, 0);
        boolean[] top1 = {true, false, false, false, false, false};
        assertClose("top-k 1", softmax(z, top1), dist(new Sampler.Random(1.0, 1, 1.0, 1.0), null), PROB_ATOL, 0);
    }

    @Test
    void topPKeepsSmallestSetReachingP() {
        double[] z = new double[V];
        for (int i = 0; i < V; i++) z[i] = LOGITS[i];
        double[] p = softmax(z, all(true));
        // p ≈ [0.5346, 0.1967, 0.1193, 0.1193, 0.0266, 0.0036]: cumulative 0.535, 0.731, 0.851 → p = 0.8 keeps 3
        assertEquals(0.8505, p[0] + p[1] + p[2], 1e-4);
        boolean[] keep3 = {true, true, true, false, false, false};
        assertClose("top-p 0.8", softmax(z, keep3), dist(new Sampler.Random(1.0, 0, 0.8, 1.0), null), PROB_ATOL, 0);
        // p = 0.5: the top token alone has 0.534 ≥ 0.5
        boolean[] keep1 = {true, false, false, false, false, false};
        assertClose("top-p 0.5", softmax(z, keep1), dist(new Sampler.Random(1.0, 0, 0.5, 1.0), null), PROB_ATOL, 0);
        assertClose("top-p tiny keeps one", softmax(z, keep1), dist(new Sampler.Random(1.0, 0, 1e-9, 1.0), null), PROB_ATOL, 0);
        // top-k then top-p: within the top 2 (renormalized 0.731, 0.269), p = 0.9 keeps both
        boolean[] keep2 = {true, true, false, false, false, false};
        assertClose("top-k 2 + top-p 0.9", softmax(z, keep2), dist(new Sampler.Random(1.0, 2, 0.9, 1.0), null), PROB_ATOL, 0);
    }

    @Test
    void seededDrawsAreReproducibleAndFollowTheDistribution() {
        Sampler s = new Sampler.Random(0.9, 4, 0.95, 1.0);
        int n = 40_000;
        int[] a = draws(s, 42, n), b = draws(s, 42, n);
        assertArrayEquals(a, b, "same seed, same tokens");
        double[] want = dist(s, null), got = new double[V];
        for (int t : a) got[t] += 1.0 / n;
        // binomial standard error ≤ 0.0025 at n = 40000; 5 sigma
        assertClose("empirical frequencies", want, got, 0.0125, 0);
        for (int i = 0; i < V; i++) if (want[i] == 0) assertEquals(0.0, got[i], "token " + i + " is outside the kept set");
    }

    static int[] draws(Sampler s, long seed, int n) {
        TokenSampler ts = new TokenSampler(s, V);
        SplittableRandom rng = new SplittableRandom(seed);
        int[] out = new int[n];
        for (int i = 0; i < n; i++) out[i] = ts.sample(LOGITS, 0, null, rng);
        return out;
    }

    @Test
    void invalidSettingsAreRejected() {
        assertThrows(ConfigException.class, () -> new Sampler.Random(0, 0, 1, 1));
        assertThrows(ConfigException.class, () -> new Sampler.Random(1, -1, 1, 1));
        assertThrows(ConfigException.class, () -> new Sampler.Random(1, 0, 1.5, 1));
        assertThrows(ConfigException.class, () -> new Sampler.Greedy(0));
    }
}
