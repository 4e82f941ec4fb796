package org.peft4j.model.layers;

import jdk.incubator.vector.FloatVector;
import org.peft4j.core.kernels.Exp;
import org.peft4j.core.kernels.VectorOps;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.VectorSpecies;
import org.peft4j.core.Parallel;

/// Softmax cross-entropy over logits with ignored targets (-100), the causal-LM loss of specs §5.6.
/// Reference: HF `ForCausalLMLoss` → `F.cross_entropy(logits.float(), targets, ignore_index=-100)`.
///
/// Shifting is the caller's: targets are already aligned with logits rows (use [#shiftLabels]), so this op is a
/// plain row-wise cross-entropy. The loss HF reports is `sum / numItems`, with numItems the number of non-ignored
/// labels over every micro-batch of one accumulated step (see [#countLabels]); backward takes `scale = 1/numItems`.
public final class CrossEntropy {
    public static final int IGNORE = -100;

    private CrossEntropy() {}

    /// targets[b, t] = labels[b, t + 1] and targets[b, T − 1] = IGNORE, per row: logits at t predict token t + 1.
    /// Returns the number of non-ignored targets.   targets, labels: (B, T)
    public static int shiftLabels(int[] targets, int[] labels, int B, int T) {
        int count = 0;
        for (int b = 0; b < B; b++) {
            int o = b * T;
            for (int t = 0; t < T - 1; t++) {
                targets[o + t] = labels[o + t + 1];
                if (targets[o + t] != IGNORE) count++;
            }
            targets[o + T - 1] = IGNORE;
        }
        return count;
    }

    /// Number of entries != IGNORE. HF's Trainer counts `num_items_in_batch` on the *unshifted* labels (specs §5.6),
    /// so `countLabels(labels)` over all micro-batches reproduces its divisor; the count of real targets
    /// ([#shiftLabels]) is smaller by the rows whose first label is not ignored.
    public static int countLabels(int[] labels) {
        int count = 0;
        for (int l : labels) if (l != IGNORE) count++;
        return count;
    }

    private static final VectorSpecies<Float> S = FloatVector.SPECIES_PREFERRED;
    /// Terms whose exponentials are summed in float before the partial goes to double: at most 1024/lanes + lanes
    /// float adds per term, so a partial is within 128·2⁻²⁴ ≈ 8e-6 relative (typically far less).
    private static final int SUM_BLOCK = 1024;

    /// As [#forwardScalar], with the exponentials in float by the Vector API (about 1 ulp) summed per 1024-term
    /// block in float and across blocks in double: lse is kept in double as before; its error is ≤ 8e-6 absolute in the
    /// worst case and ~1e-7 typically (a random walk of roundings), the size of the float rounding of the logits it
    /// came from (a logit of 30 carries 1e-6 absolute). Each row costs one pass for the max and one for the sum; rows run in parallel.
    public static double forward(float[] losses, double[] lse, float[] logits, int[] targets, int N, int V) {
        Parallel.range(N, n -> {
            int tgt = targets[n];
            if (tgt == IGNORE) { lse[n] = Double.NaN; return; }
            assert tgt >= 0 && tgt < V : "target " + tgt + " outside vocabulary " + V;
            int o = n * V;
            float max = rowMax(logits, o, V);
            FloatVector vm = FloatVector.broadcast(S, max);
            double sum = 0;
            for (int b0 = 0; b0 < V; b0 += SUM_BLOCK) {
                int b1 = Math.min(V, b0 + SUM_BLOCK), i = b0;
                FloatVector acc = FloatVector.zero(S);
                for (int end = b0 + S.loopBound(b1 - b0); i < end; i += S.length())
                    acc = acc.add(Exp.exp(FloatVector.fromArray(S, logits, o + i).sub(vm)));
                float part = VectorOps.sumLanes(acc);    // Exp and a fixed lane order: the same bits in every JIT state
                for (; i < b1; i++) part += Exp.exp(logits[o + i] - max);
                sum += part;
            }
            lse[n] = max + Math.log(sum);
        });
        return total(losses, lse, logits, targets, N, V);
    }

    static float rowMax(float[] x, int o, int n) {
        FloatVector vmax = FloatVector.broadcast(S, Float.NEGATIVE_INFINITY);
        int i = 0;
        for (int end = S.loopBound(n); i < end; i += S.length()) vmax = vmax.max(FloatVector.fromArray(S, x, o + i));
        float max = vmax.reduceLanes(VectorOperators.MAX);
        for (; i < n; i++) max = Math.max(max, x[o + i]);
        return max;
    }

    private static double total(float[] losses, double[] lse, float[] logits, int[] targets, int N, int V) {
        double total = 0;
        for (int n = 0; n < N; n++) {
            double loss = targets[n] == IGNORE ? 0 : lse[n] - logits[n * V + targets[n]];
            if (losses != null) losses[n] = (float) loss;
            total += loss;
        }
        return total;
    }

    /// As [#backwardScalar], with exp in float by the Vector API. softmax = exp((x − max) − (lse − max)): both
    /// differences are small numbers, so forming them in float loses nothing that a float lse near |logits| ~ 1e4
    /// would (see [#forwardScalar]); max is recomputed here (one more pass over the row, no stored state).
    public static void backward(float[] dlogits, float[] logits, double[] lse, int[] targets, int N, int V, float scale) {
        boolean inPlace = dlogits == logits;
        Parallel.range(N, n -> backwardRow(dlogits, logits, lse[n], targets[n], n * V, V, scale, inPlace));
    }

    /// One row of [#backward]: dlogits[o..o+V) (+)= scale · (softmax − onehot(tgt)), or zeros (in place) for IGNORE.
    private static void backwardRow(float[] dlogits, float[] logits, double lse, int tgt, int o, int V, float scale, boolean inPlace) {
        if (tgt == IGNORE) {
            if (inPlace) java.util.Arrays.fill(dlogits, o, o + V, 0f);
            return;
        }
        float max = rowMax(logits, o, V);
        float shift = (float) (lse - max);
        FloatVector vm = FloatVector.broadcast(S, max), vs = FloatVector.broadcast(S, shift);
        int i = 0;
        for (int end = S.loopBound(V); i < end; i += S.length()) {
            FloatVector d = Exp.exp(FloatVector.fromArray(S, logits, o + i).sub(vm).sub(vs)).mul(scale);
            if (!inPlace) d = d.add(FloatVector.fromArray(S, dlogits, o + i));
            d.intoArray(dlogits, o + i);
        }
        for (; i < V; i++) {
            float d = scale * Exp.exp(logits[o + i] - max - shift);
            dlogits[o + i] = inPlace ? d : dlogits[o + i] + d;
        }
        dlogits[o + tgt] -= scale;
    }

    /// As [#backward] with a scale per row of logits: dlogits[n] += scales[n] · (softmax(logits[n]) − onehot(target)).
    /// Sequence-level losses (DPO and its kin, [SequenceLogps]) weight each sequence's tokens by that sequence's
    /// gradient. scales: (N)
    public static void backward(float[] dlogits, float[] logits, double[] lse, int[] targets, int N, int V, float[] scales) {
        boolean inPlace = dlogits == logits;
        Parallel.range(N, n -> {
            // a zero-weight row is skipped like an ignored one
            int tgt = scales[n] == 0f ? IGNORE : targets[n];
            backwardRow(dlogits, logits, lse[n], tgt, n * V, V, scales[n], inPlace);
        });
    }

    /// The scalar twin of [#backward(float[], float[], double[], int[], int, int, float[])]: exponentials in double.
    public static void backwardScalar(float[] dlogits, float[] logits, double[] lse, int[] targets, int N, int V, float[] scales) {
        boolean inPlace = dlogits == logits;
        Parallel.range(N, n -> {
            int o = n * V, tgt = targets[n];
            if (tgt == IGNORE) {
                if (inPlace) java.util.Arrays.fill(dlogits, o, o + V, 0f);
                return;
            }
            double l = lse[n];
            for (int i = 0; i < V; i++) {
                float d = scales[n] * ((float) Math.exp(logits[o + i] - l) - (i == tgt ? 1f : 0f));
                dlogits[o + i] = inPlace ? d : dlogits[o + i] + d;
            }
        });
    }

    /// The scalar twin of [#forward]: every exponential in double.
    /// Returns Σ loss over non-ignored rows (in double, summed in row order), loss[n] = lse[n] − logits[n, targets[n]].
    /// losses: (N) per-row loss, 0 for ignored rows, or null   lse: (N) log-sum-exp in double, kept for backward (NaN for
    /// ignored rows)   logits: (N, V)   targets: (N), in [0, V) or IGNORE.
    /// Stable: lse = max + log Σ exp(x − max), with the exponentials summed in double so that a vocabulary of
    /// 150k terms loses no precision (float would lose ~log2(V) bits); each exp is evaluated in double anyway.
    /// lse is kept in double: near |logits| ~ 1e4 a float lse is off by up to 5e-4, and exp(x − lse) in backward
    /// would carry that error into every probability.
    public static double forwardScalar(float[] losses, double[] lse, float[] logits, int[] targets, int N, int V) {
        Parallel.range(N, n -> {
            int tgt = targets[n];
            if (tgt == IGNORE) { lse[n] = Double.NaN; return; }
            assert tgt >= 0 && tgt < V : "target " + tgt + " outside vocabulary " + V;
            int o = n * V;
            float max = Float.NEGATIVE_INFINITY;
            for (int i = 0; i < V; i++) if (logits[o + i] > max) max = logits[o + i];
            double sum = 0;
            for (int i = 0; i < V; i++) sum += Math.exp(logits[o + i] - max);
            lse[n] = max + Math.log(sum);
        });
        return total(losses, lse, logits, targets, N, V);
    }

    /// The scalar twin of [#backward].
    /// dlogits += scale · (softmax(logits) − onehot(target)) on non-ignored rows; ignored rows get nothing.
    /// scale is dLoss/d(sum of row losses): 1/numItems for HF's mean over the whole accumulated batch.
    ///
    /// In place (llm.c's fused softmax + CE backward): pass dlogits == logits to turn the logits into their gradient
    /// and save an (N, V) buffer. Then "+=" cannot hold, so each row is *written*: ignored rows become 0.
    /// dlogits, logits: (N, V)   lse: (N) from [#forward]   targets: (N)
    public static void backwardScalar(float[] dlogits, float[] logits, double[] lse, int[] targets, int N, int V, float scale) {
        boolean inPlace = dlogits == logits;
        Parallel.range(N, n -> {
            int o = n * V, tgt = targets[n];
            if (tgt == IGNORE) {
                if (inPlace) java.util.Arrays.fill(dlogits, o, o + V, 0f);
                return;
            }
            double l = lse[n];
            for (int i = 0; i < V; i++) {
                float d = scale * ((float) Math.exp(logits[o + i] - l) - (i == tgt ? 1f : 0f));
                dlogits[o + i] = inPlace ? d : dlogits[o + i] + d;
            }
        });
    }
}
