package org.peft4j.model.layers;

/// Per-sequence log-probabilities of the labelled tokens: logps[b] = Σ_t log softmax(logits[b, t])[targets[b, t]]
/// over the targets of row b that are not [CrossEntropy#IGNORE], and counts[b] the number of such targets; the
/// sequence-level input of the preference losses ([PreferenceLoss]). It is cross-entropy summed per row with the sign
/// flipped, so it reuses [CrossEntropy]'s forward and its per-row-scaled backward.
/// Reference: TRL `DPOTrainer.get_batch_logps`, LLaMA-Factory `get_batch_logps` (labels shifted, IGNORE masked, summed
/// per row, `valid_length` = the number of labelled tokens).
public final class SequenceLogps {
    private SequenceLogps() {}

    /// logps, counts: (B)   lse: (B·T), kept for backward   logits: (B, T, V)   targets: (B, T) shifted ([CrossEntropy#shiftLabels]).
    /// Each row's sum runs in double in position order.
    public static void forward(double[] logps, int[] counts, double[] lse, float[] logits, int[] targets, int B, int T, int V) {
        CrossEntropy.forward(null, lse, logits, targets, B * T, V);
        sums(logps, counts, lse, logits, targets, B, T, V);
    }

    /// The scalar twin of [#forward] (exponentials in double).
    public static void forwardScalar(double[] logps, int[] counts, double[] lse, float[] logits, int[] targets, int B, int T, int V) {
        CrossEntropy.forwardScalar(null, lse, logits, targets, B * T, V);
        sums(logps, counts, lse, logits, targets, B, T, V);
    }

    private static void sums(double[] logps, int[] counts, double[] lse, float[] logits, int[] targets, int B, int T, int V) {
        for (int b = 0; b < B; b++) {
            double s = 0;
            int c = 0;
            for (int t = 0; t < T; t++) {
                int n = b * T + t, tgt = targets[n];
                if (tgt == CrossEntropy.IGNORE) continue;
                s += logits[n * V + tgt] - lse[n];
                c++;
            }
            logps[b] = s;
            counts[b] = c;
        }
    }

    /// As [#forward] on logits of the labelled positions only: logits (M, V) of positions whose targets are tgt (M)
    /// and which belong to rows rowOf (M); logps and counts (B) are written for all B rows.
    public static void forwardPacked(double[] logps, int[] counts, double[] lse, float[] logits, int[] tgt, int[] rowOf, int M, int B, int V) {
        CrossEntropy.forward(null, lse, logits, tgt, M, V);
        java.util.Arrays.fill(logps, 0, B, 0);
        java.util.Arrays.fill(counts, 0, B, 0);
        for (int m = 0; m < M; m++) {
            logps[rowOf[m]] += logits[m * V + tgt[m]] - lse[m];
            counts[rowOf[m]]++;
        }
    }

    /// dlogits[b, t] = dlogps[b] · (onehot(target) − softmax(logits[b, t])) on labelled positions (written, not added,
    /// when dlogits == logits, as [CrossEntropy#backward] in place). scratch: (B·T) per-position scales.
    public static void backward(float[] dlogits, float[] logits, double[] lse, int[] targets, double[] dlogps, float[] scratch,
                                int B, int T, int V) {
        scales(scratch, dlogps, B, T);
        CrossEntropy.backward(dlogits, logits, lse, targets, B * T, V, scratch);
    }

    /// The scalar twin of [#backward].
    public static void backwardScalar(float[] dlogits, float[] logits, double[] lse, int[] targets, double[] dlogps, float[] scratch,
                                      int B, int T, int V) {
        scales(scratch, dlogps, B, T);
        CrossEntropy.backwardScalar(dlogits, logits, lse, targets, B * T, V, scratch);
    }

    /// d logp / d(cross-entropy) = −1: each position of row b carries −dlogps[b].
    private static void scales(float[] scratch, double[] dlogps, int B, int T) {
        for (int b = 0; b < B; b++) java.util.Arrays.fill(scratch, b * T, (b + 1) * T, (float) -dlogps[b]);
    }
}
