package org.peft4j.model.layers;

import java.util.random.RandomGenerator;

/// NEFTune: during training only, add U(−mag, mag) noise to the embedding output, mag = alpha / sqrt(L·d), L the
/// padded sequence length, d the hidden size; every element of every row, padding included (specs §3).
/// Reference: transformers `trainer_utils.neftune_post_forward_hook` (HF/TRL semantics, not the paper's per-sequence L).
/// Backward is the identity (additive noise independent of x): the gradient passes through unchanged.
public final class Neftune {
    private Neftune() {}

    /// mag as torch computes it in float32: `alpha / sqrt(float32(L·d))` = fl32(fl32(1/fl32(sqrt)) · fl32(alpha)).
    public static float magnitude(float alpha, int L, int d) {
        float root = (float) Math.sqrt((float) ((long) L * d)); // sqrt of a float, correctly rounded, as torch's
        return (1f / root) * alpha;
    }

    /// In place, x += U(−mag, mag) when training; nothing when not (eval and generation get no noise).
    /// x: (B, L, d)   rng: the run's explicit noise stream, drawn in element order.
    public static void forward(float[] x, int B, int L, int d, float alpha, boolean training, RandomGenerator rng) {
        if (!training || alpha == 0f) return;
        float mag = magnitude(alpha, L, d);
        int n = B * L * d;
        for (int i = 0; i < n; i++) x[i] += (float) (rng.nextDouble(-1.0, 1.0)) * mag;
    }
}
