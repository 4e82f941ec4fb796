package org.peft4j.model.layers;

import org.peft4j.core.Gemm;

/// y = x·Wᵀ + b.   Reference: torch.nn.Linear, W stored (M, K).
public final class Linear {
    private Linear() {}

    /// y: (N, M)   x: (N, K)   w: (M, K)   bias: (M) or null
    public static void forward(Gemm gemm, float[] y, float[] x, float[] w, float[] bias, int N, int K, int M) {
        gemm.sgemm(false, true, N, M, K, 1f, x, 0, K, w, 0, K, 0f, y, 0, M);
        if (bias != null)
            for (int n = 0; n < N; n++)
                for (int m = 0; m < M; m++) y[n * M + m] += bias[m];
    }
}
