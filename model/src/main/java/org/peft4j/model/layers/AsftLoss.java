package org.peft4j.model.layers;

/// LLaMA-Factory's ASFT loss (`use_asft_loss`, `asft_alpha`; src/llamafactory/train/trainer_utils.py `asft_loss_func`
/// → `_asft_cross_entropy` = `_dft_cross_entropy` + asft_alpha · `_kl_divergence`). Over the M labelled rows of a
/// micro-batch, with xₙ the policy's logits, rₙ a frozen reference model's logits at the same position and yₙ the label:
///
///     L = (1/M) Σₙ wₙ·ℓₙ  +  α·(1/M) Σₙ KLₙ
///     ℓₙ = lse(xₙ) − xₙ[yₙ],   wₙ = exp(−ℓₙ) detached (DFT's weight, `torch.no_grad()`)
///     KLₙ = Σᵥ qᵥ·(log qᵥ − log pᵥ),   p = softmax(xₙ), q = softmax(rₙ)   (`F.kl_div(log_softmax(x), softmax(r)).sum(-1)`)
///
/// Both means are over the labelled rows of the micro-batch (`_dft_cross_entropy` is called without
/// num_items_in_batch; `_kl_divergence` divides by mask.sum()); a micro-batch without labels contributes 0.
/// Gradient: dL/dxₙ = (1/M)·(wₙ·(p − onehot(yₙ)) + α·(p − q)) = (1/M)·((wₙ + α)·p − wₙ·onehot(yₙ) − α·q), so backward is
/// [CrossEntropy]'s per-row scaled backward with scales (wₙ + α)/M, then +α/M at the label and −α/M·q over the row.
///
/// The DFT part runs through [TokenWeightedLoss] (vector kernels or their scalar twins, `scalar`); the reference's
/// log-softmax and the KL terms are plain double loops over the row.
public final class AsftLoss {
    private AsftLoss() {}

    private static final TokenWeightedLoss.Config DFT = new TokenWeightedLoss.Config(TokenWeightedLoss.Kind.DFT, 1);

    /// Forward in sum form: returns {Σ wₙ·ℓₙ, Σ KLₙ} over the labelled rows (divide by their count M for LLaMA-Factory's
    /// means; the loss is dft/M + α·kl/M). `weights`, `losses`, `lse` (N) as [TokenWeightedLoss#forward]; `ref` (M, V):
    /// the reference logits of the labelled rows in row order, replaced in place by their log-softmax (log q, read by
    /// [#backward]); `kl` (N): each row's KLₙ (0 for IGNORE rows).
    public static double[] forward(float[] weights, float[] losses, double[] lse, float[] kl, float[] logits, int[] targets, float[] ref,
                                   int N, int V, boolean scalar) {
        double dft = TokenWeightedLoss.forward(DFT, weights, losses, lse, logits, targets, N, V, null, scalar);
        double klSum = 0;
        int m = 0;
        for (int n = 0; n < N; n++) {
            if (targets[n] == CrossEntropy.IGNORE) { kl[n] = 0; continue; }
            int o = n * V, r = m++ * V;
            // log q = r − lse(r), in place
            double max = Double.NEGATIVE_INFINITY, s = 0;
            for (int v = 0; v < V; v++) max = Math.max(max, ref[r + v]);
            for (int v = 0; v < V; v++) s += Math.exp(ref[r + v] - max);
            double refLse = max + Math.log(s), k = 0;
            for (int v = 0; v < V; v++) {
                float lq = (float) (ref[r + v] - refLse);
                ref[r + v] = lq;
                double q = Math.exp(lq);
                if (q > 0) k += q * (lq - (logits[o + v] - lse[n]));   // xlogy: a q of 0 adds nothing (F.kl_div)
            }
            kl[n] = (float) k;
            klSum += k;
        }
        return new double[] {dft, klSum};
    }

    /// Backward: dlogits[n] = scale·(wₙ·(p − onehot(yₙ)) + α·(p − q)), 0 for IGNORE rows; scale = 1/M for the
    /// micro-batch mean. `logq` (M, V): `ref` after [#forward]. `scales` (N) is scratch. dlogits may be logits.
    public static void backward(float[] dlogits, float[] logits, double[] lse, int[] targets, float[] weights, float[] logq, float[] scales,
                                int N, int V, double alpha, float scale, boolean scalar) {
        for (int n = 0; n < N; n++) scales[n] = (float) ((weights[n] + alpha) * scale);
        if (scalar) CrossEntropy.backwardScalar(dlogits, logits, lse, targets, N, V, scales);
        else CrossEntropy.backward(dlogits, logits, lse, targets, N, V, scales);
        float a = (float) (alpha * scale);
        if (a == 0) return;
        int m = 0;
        for (int n = 0; n < N; n++) {
            if (targets[n] == CrossEntropy.IGNORE) continue;
            int o = n * V, r = m++ * V;
            dlogits[o + targets[n]] += a;
            for (int v = 0; v < V; v++) dlogits[o + v] -= (float) (a * Math.exp(logq[r + v]));
        }
    }

    /// How many rows are labelled: M, the rows `ref` must hold.
    public static int labelled(int[] targets, int N) {
        int M = 0;
        for (int n = 0; n < N; n++) if (targets[n] != CrossEntropy.IGNORE) M++;
        return M;
    }
}
