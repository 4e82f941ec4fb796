package org.peft4j.model.layers;

import org.peft4j.core.Gemm;

/// y = x·Wᵀ + b.   Reference: torch.nn.Linear, W stored (M, K).
/// Backward is two calls: [#backwardInput] (dx += dy·W), always, and [#backwardWeight] (dW += dyᵀ·x, db += Σ dy),
/// only when W is trained; a frozen base layer under LoRA calls backwardInput alone.
public final class Linear {
    private Linear() {}

    /// y: (N, M)   x: (N, K)   w: (M, K)   bias: (M) or null
    public static void forward(Gemm gemm, float[] y, float[] x, float[] w, float[] bias, int N, int K, int M) {
        gemm.sgemm(false, true, N, M, K, 1f, x, 0, K, w, 0, K, 0f, y, 0, M);
        if (bias != null)
            for (int n = 0; n < N; n++)
                for (int m = 0; m < M; m++) y[n * M + m] += bias[m];
    }

    /// dx += dy·W.   dx: (N, K)   dy: (N, M)   w: (M, K)
    public static void backwardInput(Gemm gemm, float[] dx, float[] dy, float[] w, int N, int K, int M) {
        gemm.sgemm(false, false, N, K, M, 1f, dy, 0, M, w, 0, K, 1f, dx, 0, K);
    }

    /// dw += dyᵀ·x, dbias += Σ_n dy[n].   dw: (M, K)   dbias: (M) or null (no bias, or bias frozen)   dy: (N, M)   x: (N, K)
    public static void backwardWeight(Gemm gemm, float[] dw, float[] dbias, float[] dy, float[] x, int N, int K, int M) {
        gemm.sgemm(true, false, M, K, N, 1f, dy, 0, M, x, 0, K, 1f, dw, 0, K);
        if (dbias != null)
            for (int n = 0; n < N; n++)
                for (int m = 0; m < M; m++) dbias[m] += dy[n * M + m];
    }
}
