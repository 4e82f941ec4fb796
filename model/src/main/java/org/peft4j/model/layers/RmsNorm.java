package org.peft4j.model.layers;

import org.peft4j.core.Parallel;

/// RMSNorm: y = x · r · w with r = 1 / sqrt(mean(x²) + eps).   Reference: HF LlamaRMSNorm (float32 variance).
/// Backward: dx = r·(w⊙dy) − x · r³/C · Σ(w⊙dy⊙x),   dw = Σ_n dy ⊙ x · r.
public final class RmsNorm {
    private RmsNorm() {}

    /// y, x: (N, C)   w: (C)   rstd: (N), kept for backward (may be null in inference)
    public static void forward(float[] y, float[] rstd, float[] x, float[] w, int N, int C, float eps) {
        Parallel.range(N, n -> {
            int o = n * C;
            float ss = 0f;
            for (int i = 0; i < C; i++) ss += x[o + i] * x[o + i];
            float r = (float) (1.0 / Math.sqrt(ss / C + eps));
            if (rstd != null) rstd[n] = r;
            for (int i = 0; i < C; i++) y[o + i] = w[i] * (x[o + i] * r);
        });
    }

    /// Adds into dx and dw (+=). dw is null when w is frozen, which it is in LoRA training.
    /// dx, dy, x: (N, C)   dw, w: (C)   rstd: (N) from forward.
    /// Rows run in parallel for dx; dw runs in parallel over channels, each summing rows in order (deterministic).
    public static void backward(float[] dx, float[] dw, float[] dy, float[] x, float[] w, float[] rstd, int N, int C) {
        Parallel.range(N, n -> {
            int o = n * C;
            float r = rstd[n];
            float dot = 0f;                                  // Σ (w⊙dy)·x
            for (int i = 0; i < C; i++) dot += w[i] * dy[o + i] * x[o + i];
            float k = dot * r * r * r / C;
            for (int i = 0; i < C; i++) dx[o + i] += r * w[i] * dy[o + i] - k * x[o + i];
        });
        if (dw != null)
            Parallel.chunks(C, Parallel.threads(), (chunk, from, to) -> {
                for (int n = 0; n < N; n++) {
                    int o = n * C;
                    float r = rstd[n];
                    for (int i = from; i < to; i++) dw[i] += dy[o + i] * x[o + i] * r;
                }
            });
    }
}
