package org.peft4j.model.generate;

import org.junit.jupiter.api.Test;

import java.util.Arrays;
import java.util.Comparator;
import java.util.SplittableRandom;
import java.util.stream.IntStream;

import static org.peft4j.testkit.Assert.assertClose;

/// TokenSampler's heap selection against a plain twin written here: sort all ids by logit (stable, so ties keep the
/// lower id first), cut at the k-th (keeping its ties), then at the smallest prefix reaching top-p, softmax over the
/// rest, in double. Random logits with many ties (quantized to 0.25), small and large vocabularies.
class TokenSamplerTest {
    /// exp and sums in double on both sides, in different orders: a few ulps of 1.
    static final double PROB_ATOL = 1e-12;

    static double[] twin(float[] logits, int k, double p, double temperature) {
        int V = logits.length;
        double[] z = new double[V];
        for (int i = 0; i < V; i++) z[i] = (float) (logits[i] / (float) temperature);
        Integer[] ids = IntStream.range(0, V).boxed().sorted(Comparator.comparingDouble(i -> -z[i])).toArray(Integer[]::new);
        int n = V;
        if (k > 0 && k < V) {
            n = k;
            while (n < V && z[ids[n]] >= z[ids[k - 1]]) n++;
        }
        double max = z[ids[0]], total = 0;
        double[] e = new double[n];
        for (int i = 0; i < n; i++) total += e[i] = Math.exp(z[ids[i]] - max);
        if (p < 1) {
            double cum = 0;
            int m = 0;
            while (m < n && cum < p * total) cum += e[m++];
            n = Math.max(1, m);
            total = 0;
            for (int i = 0; i < n; i++) total += e[i];
        }
        double[] out = new double[V];
        for (int i = 0; i < n; i++) out[ids[i]] = e[i] / total;
        return out;
    }

    @Test
    void heapSelectionEqualsTheSortedTwin() {
        SplittableRandom rnd = new SplittableRandom(3);
        for (int V : new int[] {1, 2, 7, 33, 512, 4099}) {
            TokenSampler ts = new TokenSampler(V);
            for (int trial = 0; trial < 20; trial++) {
                float[] logits = new float[V];
                for (int i = 0; i < V; i++) logits[i] = Math.round(rnd.nextGaussian() * 8) / 4f;
                int k = new int[] {0, 1, 3, 40, V, V + 5}[trial % 6];
                double p = new double[] {1.0, 0.9, 0.5, 0.05}[trial % 4];
                double t = trial % 3 == 0 ? 1.0 : 0.7;
                double[] got = new double[V];
                new TokenSampler(new Sampler.Random(t, k, p, 1.0), V).distribution(got, logits, 0, null);
                assertClose("V " + V + " k " + k + " p " + p + " T " + t, twin(logits, k, p, t), got, PROB_ATOL, 0);
                int id = ts.sample(new Sampler.Random(t, k, p, 1.0), logits, 0, null, rnd);
                if (twin(logits, k, p, t)[id] == 0) throw new AssertionError("sampled id " + id + " outside the kept set");
            }
        }
    }

    /// Sampling draws with the twin's frequencies (chi-square-free check: each kept id within 4 sigma).
    @Test
    void samplesFollowTheDistribution() {
        float[] logits = {2.0f, 1.0f, 0.5f, 0.5f, -1.0f, -3.0f, 1.0f};
        Sampler s = new Sampler.Random(0.8, 5, 0.95, 1.0);
        double[] want = twin(logits, 5, 0.95, 0.8);
        TokenSampler ts = new TokenSampler(logits.length);
        SplittableRandom rng = new SplittableRandom(11);
        int draws = 200_000;
        int[] count = new int[logits.length];
        for (int i = 0; i < draws; i++) count[ts.sample(s, logits, 0, null, rng)]++;
        for (int i = 0; i < logits.length; i++) {
            double sigma = Math.sqrt(draws * want[i] * (1 - want[i]));
            if (Math.abs(count[i] - draws * want[i]) > 4 * sigma + 1e-9)
                throw new AssertionError("id " + i + ": " + count[i] + " draws, expected " + draws * want[i] + " ± " + 4 * sigma + "; " + Arrays.toString(count));
        }
    }

    /// Non-finite sampling settings are refused with the setting's name (issue 17, item 8: --temperature Infinity).
    @Test
    void nonFiniteSettingsAreRefused() {
        for (double bad : new double[]{Double.POSITIVE_INFINITY, Double.NaN}) {
            var e = org.junit.jupiter.api.Assertions.assertThrows(org.peft4j.core.Peft4jException.ConfigException.class, () -> new Sampler.Random(bad, 0, 1, 1));
            org.junit.jupiter.api.Assertions.assertTrue(e.getMessage().startsWith("temperature must be a finite number > 0") && e.getMessage().contains("temperature 0 for greedy"), e.getMessage());
            e = org.junit.jupiter.api.Assertions.assertThrows(org.peft4j.core.Peft4jException.ConfigException.class, () -> new Sampler.Greedy(bad));
            org.junit.jupiter.api.Assertions.assertTrue(e.getMessage().startsWith("repetition_penalty must be a finite number"), e.getMessage());
        }
    }
}
