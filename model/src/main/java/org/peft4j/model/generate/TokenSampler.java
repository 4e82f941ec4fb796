package org.peft4j.model.generate;

import java.util.Arrays;
import java.util.random.RandomGenerator;

/// Runs a `Sampler` over one row of logits with scratch buffers of vocabulary size allocated once, so a decode
/// loop allocates nothing. Reference: transformers `RepetitionPenaltyLogitsProcessor`, `TemperatureLogitsWarper`,
/// `TopKLogitsWarper`, `TopPLogitsWarper`, then `torch.multinomial`.
public final class TokenSampler {
    private final Sampler sampler;
    private final int V;
    private final float[] work;     // (V) penalized, temperature-scaled logits
    private final long[] order;     // (V) sort keys: descending logit, then ascending id
    private final double[] prob;    // (V) unnormalized probabilities of the candidates, in `order`

    public TokenSampler(Sampler sampler, int V) {
        this.sampler = sampler; this.V = V;
        work = new float[V]; order = new long[V]; prob = new double[V];
    }

    public Sampler sampler() { return sampler; }

    /// The next token. logits: (V) at `off`, unchanged.   seen: (V) tokens of prompt + output so far, or null.
    public int sample(float[] logits, int off, boolean[] seen, RandomGenerator rng) {
        prepare(logits, off, seen);
        return switch (sampler) {
            case Sampler.Greedy _ -> argmax(work, V);
            case Sampler.Random r -> {
                int n = candidates(r);
                double total = 0;
                for (int i = 0; i < n; i++) total += prob[i];
                double u = rng.nextDouble() * total;
                int i = 0;
                for (double acc = prob[0]; acc <= u && i < n - 1; acc += prob[++i]) { }
                yield id(order[i]);
            }
        };
    }

    /// The distribution `sample` draws from, written to out (V): one-hot for greedy, zeros outside the kept set.
    public void distribution(double[] out, float[] logits, int off, boolean[] seen) {
        prepare(logits, off, seen);
        Arrays.fill(out, 0, V, 0.0);
        switch (sampler) {
            case Sampler.Greedy _ -> out[argmax(work, V)] = 1.0;
            case Sampler.Random r -> {
                int n = candidates(r);
                double total = 0;
                for (int i = 0; i < n; i++) total += prob[i];
                for (int i = 0; i < n; i++) out[id(order[i])] = prob[i] / total;
            }
        }
    }

    private void prepare(float[] logits, int off, boolean[] seen) {
        System.arraycopy(logits, off, work, 0, V);
        float penalty = (float) sampler.repetitionPenalty();
        if (seen != null && penalty != 1f)
            for (int i = 0; i < V; i++)
                if (seen[i]) work[i] = work[i] < 0 ? work[i] * penalty : work[i] / penalty;
        if (sampler instanceof Sampler.Random r && r.temperature() != 1.0) {
            float t = (float) r.temperature();
            for (int i = 0; i < V; i++) work[i] /= t;
        }
    }

    /// Sorts the ids, applies top-k and top-p, and leaves exp(logit − max) of the n kept ids in prob[0..n).
    private int candidates(Sampler.Random r) {
        for (int i = 0; i < V; i++) order[i] = ((long) ~sortable(work[i]) << 32) | i;
        Arrays.sort(order, 0, V);
        int n = V;
        if (r.topK() > 0 && r.topK() < V) {
            float kth = work[id(order[r.topK() - 1])];
            n = r.topK();
            while (n < V && work[id(order[n])] >= kth) n++;   // ties with the k-th are kept, as in transformers
        }
        float max = work[id(order[0])];
        double total = 0;
        for (int i = 0; i < n; i++) total += prob[i] = Math.exp((double) work[id(order[i])] - max);
        if (r.topP() < 1.0) {
            double cum = 0, target = r.topP() * total;
            int m = 0;
            while (m < n && cum < target) cum += prob[m++];
            n = Math.max(1, m);
        }
        return n;
    }

    static int argmax(float[] x, int n) {
        int best = 0;
        for (int i = 1; i < n; i++) if (x[i] > x[best]) best = i;
        return best;
    }

    private static int id(long key) { return (int) key; }

    /// A signed int ordered as the floats are (−0 before +0).
    private static int sortable(float f) {
        int b = Float.floatToIntBits(f);
        return b ^ ((b >> 31) & 0x7fffffff);
    }
}
