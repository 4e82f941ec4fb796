package org.peft4j.model.layers;

import org.peft4j.core.Peft4jException.ConfigException;

/// LLaMA-Factory's token-weighted SFT losses (src/llamafactory/train/trainer_utils.py): each labelled token's
/// cross-entropy ℓₙ = lseₙ − xₙ[yₙ] is multiplied by a weight wₙ computed from the logits **without gradient**
/// (`torch.no_grad()`), and the sum goes through the usual normalisation (Σ wₙ·ℓₙ / num_items_in_batch, or the mean
/// over labelled tokens without it):
///
/// - DFT (`use_dft_loss`, `_dft_cross_entropy`): wₙ = exp(−ℓₙ), the model's probability of the label.
/// - EAFT (`use_eaft_loss`, `_eaft_cross_entropy`): wₙ = (Hₙ / 3)^α with Hₙ the entropy of the softmax over the 20
///   largest logits of the row (`torch.topk(k=20)`, all of them when V < 20) and α = `eaft_alpha`.
///
/// As the weights are constants, d(wₙ·ℓₙ)/dx = wₙ·(softmax(x) − onehot(yₙ)): backward is [CrossEntropy]'s per-row
/// scaled backward with scales wₙ·scale. The cross-entropy runs through [CrossEntropy]'s vector kernels or their
/// scalar twins (`scalar`); the weights are plain double loops over the row (one top-k pass for EAFT).
public final class TokenWeightedLoss {
    private TokenWeightedLoss() {}

    /// LLaMA-Factory's `topk(k=20)` in `_eaft_cross_entropy`.
    public static final int EAFT_TOP_K = 20;

    public enum Kind { DFT, EAFT }

    public record Config(Kind kind, double eaftAlpha) {
        public Config {
            if (kind == null) throw new IllegalArgumentException("kind");
            if (kind == Kind.EAFT && !(eaftAlpha >= 0) || !Double.isFinite(eaftAlpha))
                throw new ConfigException("eaft_alpha must be a finite number >= 0, got " + eaftAlpha);
        }
    }

    /// Scratch for [#forward]: min(20, V) floats.
    public static float[] scratch(int V) { return new float[Math.min(EAFT_TOP_K, V)]; }

    /// Forward: per-row cross-entropy into `losses` (N) and `lse` (N, kept for backward), the detached weights into
    /// `weights` (N; 0 for IGNORE rows), and returns Σ wₙ·ℓₙ (double, row order). `top`: [#scratch].
    public static double forward(Config cfg, float[] weights, float[] losses, double[] lse, float[] logits, int[] targets, int N, int V,
                                 float[] top, boolean scalar) {
        if (scalar) CrossEntropy.forwardScalar(losses, lse, logits, targets, N, V);
        else CrossEntropy.forward(losses, lse, logits, targets, N, V);
        double sum = 0;
        for (int n = 0; n < N; n++) {
            if (targets[n] == CrossEntropy.IGNORE) { weights[n] = 0; continue; }
            double w = switch (cfg.kind()) {
                case DFT -> Math.exp(-(double) losses[n]);
                case EAFT -> Math.pow(topKEntropy(logits, n * V, V, top) / 3.0, cfg.eaftAlpha());
            };
            weights[n] = (float) w;
            sum += (double) weights[n] * losses[n];
        }
        return sum;
    }

    /// Backward: dlogits[n] = scale·wₙ·(softmax − onehot(yₙ)), 0 for IGNORE rows; `scales` (N) is scratch.
    public static void backward(float[] dlogits, float[] logits, double[] lse, int[] targets, float[] weights, float[] scales, int N, int V,
                                float scale, boolean scalar) {
        for (int n = 0; n < N; n++) scales[n] = weights[n] * scale;
        if (scalar) CrossEntropy.backwardScalar(dlogits, logits, lse, targets, N, V, scales);
        else CrossEntropy.backward(dlogits, logits, lse, targets, N, V, scales);
    }

    /// −Σ p log p over the softmax of the k = top.length largest of x[o .. o+V), in double.
    static double topKEntropy(float[] x, int o, int V, float[] top) {
        int k = top.length, filled = 0;
        // top holds the largest values seen, in descending order
        for (int v = 0; v < V; v++) {
            float a = x[o + v];
            if (filled == k && a <= top[k - 1]) continue;
            int i = filled < k ? filled++ : k - 1;
            while (i > 0 && top[i - 1] < a) { top[i] = top[i - 1]; i--; }
            top[i] = a;
        }
        double max = top[0], s = 0;
        for (int i = 0; i < k; i++) s += Math.exp(top[i] - max);
        double lse = max + Math.log(s), h = 0;
        for (int i = 0; i < k; i++) {
            double lp = top[i] - lse;
            h -= Math.exp(lp) * lp;
        }
        return h;
    }
}
