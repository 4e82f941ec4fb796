package org.peft4j.model.adapter.lora;

import java.util.random.RandomGenerator;

/// Inverted dropout on the LoRA input path: xd = x ⊙ mask, mask = 1/(1−p) with probability 1−p, else 0.
/// Reference: torch.nn.Dropout in training mode (PEFT applies it only to lora_A's input, never to the base path).
/// With p = 0 or in eval, skip it: pass x itself as xd and dx itself as dxd to [LoraLinear] / [DoraLinear].
public final class Dropout {
    private Dropout() {}

    /// xd, mask, x: (n). mask is kept for backward. The random stream is `rng`'s, so a seed reproduces it.
    public static void forward(float[] xd, float[] mask, float[] x, float p, RandomGenerator rng, int n) {
        forward(xd, mask, x, p, 0, rng, n);
    }

    /// As above over elements [off, off + n) of xd, mask and x.
    public static void forward(float[] xd, float[] mask, float[] x, float p, int off, RandomGenerator rng, int n) {
        assert p >= 0 && p <= 1 : "dropout p = " + p;
        float keep = p >= 1 ? 0f : 1f / (1f - p); // torch: p = 1 drops everything
        for (int i = off; i < off + n; i++) {
            mask[i] = rng.nextFloat() < p ? 0f : keep;
            xd[i] = x[i] * mask[i];
        }
    }

    /// Adds into dx (+=): dx += dxd ⊙ mask.   dx, dxd, mask: (n)
    public static void backward(float[] dx, float[] dxd, float[] mask, int n) {
        for (int i = 0; i < n; i++) dx[i] += dxd[i] * mask[i];
    }
}
