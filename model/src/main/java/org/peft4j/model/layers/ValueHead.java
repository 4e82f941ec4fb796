package org.peft4j.model.layers;

/// A reward model's value head and its pairwise loss (LLaMA-Factory's `stage: rm`).
///
/// The head is TRL's `ValueHead` (trl/models/modeling_value_head.py: `dropout(summary_dropout_prob)` then
/// `summary = nn.Linear(hidden_size, 1)`) on the final-normed hidden state of a position: v = w·x + b. LLaMA-Factory's
/// `PairwiseTrainer.compute_loss` (src/llamafactory/train/rm/trainer.py) takes each sequence's value at its last
/// non-pad token (`gather(index=attention_mask.sum(-1) - 1)`), splits the 2P rows into P chosen then P rejected, and
/// the loss is `-logsigmoid(chosen - rejected).mean()`; its `ComputeAccuracy` (rm/metric.py) counts chosen > rejected.
///
/// Everything runs on R ≤ a few dozen vectors of C floats (no vector kernel, so no separate scalar twin):
/// [#forward] is the reference, [#backward] its hand-written derivative, checked by finite differences and the loss
/// against reference/reward_loss.py in the tests.
public final class ValueHead {
    private ValueHead() {}

    /// values[r] = Σ_c x[r,c]·w[c] + b, in double.   x: (R, C), w: (C), b: (1), values: (R)
    public static void forward(double[] values, float[] x, float[] w, float[] b, int R, int C) {
        for (int r = 0; r < R; r++) {
            double s = b[0];
            int o = r * C;
            for (int c = 0; c < C; c++) s += (double) x[o + c] * w[c];
            values[r] = s;
        }
    }

    /// Adds into dx, dw, db (+=) from dvalues (R): dx[r] += dv[r]·w, dw += Σ_r dv[r]·x[r], db += Σ_r dv[r].
    /// dx may be null (only the head's gradient is wanted).
    public static void backward(float[] dx, float[] dw, float[] db, double[] dvalues, float[] x, float[] w, int R, int C) {
        double sb = 0;
        for (int r = 0; r < R; r++) {
            double d = dvalues[r];
            int o = r * C;
            if (dx != null) for (int c = 0; c < C; c++) dx[o + c] += (float) (d * w[c]);
            for (int c = 0; c < C; c++) dw[c] += (float) (d * x[o + c]);
            sb += d;
        }
        db[0] += (float) sb;
    }

    /// The pairwise loss of P pairs: values (2P) hold the P chosen rewards then the P rejected ones; losses[p] =
    /// −logσ(c_p − r_p) = softplus(r_p − c_p). Returns their sum.
    public static double pairwiseForward(double[] losses, double[] values, int P) {
        double sum = 0;
        for (int p = 0; p < P; p++) {
            losses[p] = softplus(values[P + p] - values[p]);
            sum += losses[p];
        }
        return sum;
    }

    /// dvalues (2P) = scale · d(Σ_p losses)/d(values): d/dc = −σ(r − c), d/dr = +σ(r − c).
    public static void pairwiseBackward(double[] dvalues, double[] values, int P, double scale) {
        for (int p = 0; p < P; p++) {
            double s = sigmoid(values[P + p] - values[p]);
            dvalues[p] = -scale * s;
            dvalues[P + p] = scale * s;
        }
    }

    /// log(1 + e^z) without overflow.
    static double softplus(double z) { return z > 0 ? z + Math.log1p(Math.exp(-z)) : Math.log1p(Math.exp(z)); }

    static double sigmoid(double z) {
        if (z >= 0) return 1 / (1 + Math.exp(-z));
        double e = Math.exp(z);
        return e / (1 + e);
    }
}
