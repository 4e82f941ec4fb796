package org.peft4j.model.adapter.prefix;

import org.peft4j.core.Gemm;
import org.peft4j.model.layers.Linear;

/// Prefix tuning's reparameterisation (PEFT `PrefixEncoder` with prefix_projection, from P-tuning v2): the prefix is
/// not trained directly but computed from n trained embeddings through a two-layer MLP,
/// `prefix = W2·tanh(W1·e + b1) + b2`, used while training only (the saved file holds its output, see [PrefixAdapter]).
/// PEFT: `Embedding(n, token_dim)` → `Linear(token_dim, encoder_hidden_size)` → `Tanh` → `Linear(encoder_hidden_size,
/// num_layers·2·token_dim)`.   Shapes: e (n, D), w1 (E, D), b1 (E), h (n, E), w2 (W, E), b2 (W), prefix (n, W).
public final class PrefixEncoder {
    private PrefixEncoder() {}

    /// prefix = W2·tanh(W1·e + b1) + b2; h keeps tanh(W1·e + b1) for backward.
    public static void forward(Gemm gemm, float[] prefix, float[] h, float[] e, float[] w1, float[] b1, float[] w2, float[] b2,
                               int n, int D, int E, int W) {
        Linear.forward(gemm, h, e, w1, b1, n, D, E);
        for (int i = 0; i < n * E; i++) h[i] = (float) Math.tanh(h[i]);
        Linear.forward(gemm, prefix, h, w2, b2, n, E, W);
    }

    /// Forward mirrored: dW2 += dprefixᵀ·h, db2 += Σ dprefix; dh = dprefix·W2 (into `dh`, overwritten);
    /// dz = dh·(1 − h²); dW1 += dzᵀ·e, db1 += Σ dz; de += dz·W1. All gradients add (+=) except dh, scratch (n, E).
    public static void backward(Gemm gemm, float[] de, float[] dw1, float[] db1, float[] dw2, float[] db2, float[] dh,
                                float[] dprefix, float[] h, float[] e, float[] w1, float[] w2, int n, int D, int E, int W) {
        Linear.backwardWeight(gemm, dw2, db2, dprefix, h, n, E, W);
        java.util.Arrays.fill(dh, 0, n * E, 0f);
        Linear.backwardInput(gemm, dh, dprefix, w2, n, E, W);
        for (int i = 0; i < n * E; i++) dh[i] *= 1 - h[i] * h[i];
        Linear.backwardWeight(gemm, dw1, db1, dh, e, n, D, E);
        Linear.backwardInput(gemm, de, dh, w1, n, D, E);
    }
}
