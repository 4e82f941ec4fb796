package org.peft4j.model.layers;

import org.peft4j.core.Parallel;

/// RMSNorm: y = x / sqrt(mean(x²) + eps) * w.   Reference: HF LlamaRMSNorm (float32 variance).
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
}
