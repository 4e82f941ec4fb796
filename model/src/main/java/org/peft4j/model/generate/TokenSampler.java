package org.peft4j.model.generate;

import java.util.Arrays;
import java.util.random.RandomGenerator;

/// Runs a `Sampler` over one row of logits with scratch buffers of vocabulary size allocated once, so a decode
/// loop allocates nothing; one instance serves every row of a batch, each row passing its own sampler.
/// Reference: transformers `RepetitionPenaltyLogitsProcessor`, `TemperatureLogitsWarper`, `TopKLogitsWarper`,
/// `TopPLogitsWarper`, then `torch.multinomial`.
public final class TokenSampler {
    private final Sampler sampler;  // the default of the sampler-less methods, or null
    private final int V;
    private final float[] work;     // (V) penalized, temperature-scaled logits
    private final long[] order;     // (V) sort keys (descending logit, then ascending id): a heap, then the kept ids from the end
    private final double[] prob;    // (V) unnormalized probabilities of the candidates, in `order`

    /// Scratch for a vocabulary of V, with `sampler` as the default of [#sample(float[], int, boolean[], RandomGenerator)].
    public TokenSampler(Sampler sampler, int V) {
        this.sampler = sampler; this.V = V;
        work = new float[V]; order = new long[V]; prob = new double[V];
    }

    /// Scratch for a vocabulary of V; each call names its sampler.
    public TokenSampler(int V) { this(null, V); }

    public Sampler sampler() { return sampler; }

    /// The next token with the default sampler.
    public int sample(float[] logits, int off, boolean[] seen, RandomGenerator rng) { return sample(sampler, logits, off, seen, rng); }

    /// The next token. logits: (V) at `off`, unchanged.   seen: (V) tokens of prompt + output so far, or null.
    public int sample(Sampler sampler, float[] logits, int off, boolean[] seen, RandomGenerator rng) {
        prepare(sampler, logits, off, seen);
        return switch (sampler) {
            case Sampler.Greedy _ -> argmax(work, V);
            case Sampler.Random r -> {
                int n = candidates(r);
                double total = 0;
                for (int i = 0; i < n; i++) total += prob[i];
                double u = rng.nextDouble() * total;
                int i = 0;
                for (double acc = prob[0]; acc <= u && i < n - 1; acc += prob[++i]) { }
                yield candidate(i);
            }
        };
    }

    /// The distribution `sample` draws from, written to out (V): one-hot for greedy, zeros outside the kept set.
    public void distribution(double[] out, float[] logits, int off, boolean[] seen) {
        prepare(sampler, logits, off, seen);
        Arrays.fill(out, 0, V, 0.0);
        switch (sampler) {
            case Sampler.Greedy _ -> out[argmax(work, V)] = 1.0;
            case Sampler.Random r -> {
                int n = candidates(r);
                double total = 0;
                for (int i = 0; i < n; i++) total += prob[i];
                for (int i = 0; i < n; i++) out[candidate(i)] = prob[i] / total;
            }
        }
    }

    private void prepare(Sampler sampler, float[] logits, int off, boolean[] seen) {
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

    /// Applies top-k and top-p: the kept ids in descending logit order (ties: the lower id first; in id order when
    /// neither applies), candidate i at order[V-1-i] ([#candidate]), exp(logit − max) of each in prob[0..n). The ids
    /// are taken one at a time from a min-heap of sort keys, so only the kept ones are ordered: O(V + n·log V) and no
    /// allocation, where a full sort of a 150K vocabulary per token would cost more than a small model's decode step.
    private int candidates(Sampler.Random r) {
        int k = r.topK() > 0 && r.topK() < V ? r.topK() : V;
        if (k == V && r.topP() >= 1.0) {               // all ids kept: any fixed order draws the same distribution
            float max = work[argmax(work, V)];
            for (int i = 0; i < V; i++) {
                order[V - 1 - i] = i;
                prob[i] = Math.exp((double) work[i] - max);
            }
            return V;
        }
        for (int i = 0; i < V; i++) order[i] = ((long) ~sortable(work[i]) << 32) | i;
        for (int i = V / 2 - 1; i >= 0; i--) siftDown(i, V);
        float max = work[id(order[0])];
        double target = Double.POSITIVE_INFINITY;      // top-p's mass, when it applies to all ids
        if (k == V && r.topP() < 1.0) {
            double total = 0;
            for (int i = 0; i < V; i++) total += Math.exp((double) work[i] - max);
            target = r.topP() * total;
        }
        int n = 0, heap = V;
        double cum = 0;
        float kth = 0;
        while (heap > 0 && cum < target) {
            long top = order[0];
            float w = work[id(top)];
            if (n >= k && w < kth) break;              // past the k-th only its ties stay, as in transformers
            order[0] = order[--heap];
            siftDown(0, heap);
            order[heap] = top;
            cum += prob[n] = Math.exp((double) w - max);
            if (++n == k) kth = w;
        }
        if (k < V && r.topP() < 1.0) {                  // top-p within the top-k set
            double t = r.topP() * cum, c = 0;
            int m = 0;
            while (m < n && c < t) c += prob[m++];
            n = Math.max(1, m);
        }
        return n;
    }

    /// The id of candidate i (0 = the most likely).
    private int candidate(int i) { return id(order[V - 1 - i]); }

    /// Restores the min-heap order[0..size) below position i.
    private void siftDown(int i, int size) {
        long x = order[i];
        for (int c = 2 * i + 1; c < size; i = c, c = 2 * i + 1) {
            if (c + 1 < size && order[c + 1] < order[c]) c++;
            if (order[c] >= x) break;
            order[i] = order[c];
        }
        order[i] = x;
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
