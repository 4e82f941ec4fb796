package org.peft4j.model.adapter.lora;

import org.peft4j.core.Gemm;

/// DoRA on one frozen linear layer: with V = W0 + s·B·A and g = m / ‖V‖ (norm per output row, detached),
/// y = x·W0ᵀ + b + (g − 1)⊙(xd·W0ᵀ) + g⊙s·(xd·Aᵀ)·Bᵀ, which is g⊙(x·Vᵀ) + b without dropout.
/// Reference: PEFT `tuners/lora/dora.py` `DoraLinearLayer.forward`, `variants.py` `DoraLinearVariant` (specs §2.4).
/// The norm is a constant of each step, as in PEFT training (paper §4.3): compute it with [#weightNorm] after every
/// update of A or B, before [#forward]; no gradient flows through it.
///
/// Shapes: W0 (M, K), A (r, K), B (M, r), m = lora_magnitude_vector (M); x, xd (N, K); y (N, M).
public final class DoraLinear {
    private DoraLinear() {}

    /// norm_i = ‖W0_i + s·B_i·A‖₂ over the K inputs of row i (torch.linalg.norm(dim=1)); summed in double.
    /// Also the initial magnitude: PEFT sets m = norm at creation, when B = 0 (then norm = ‖W0_i‖).
    /// norm: (M)   w0: (M, K)   a: (r, K)   b: (M, r)
    public static void weightNorm(float[] norm, float[] w0, float[] a, float[] b, float s, int M, int K, int r) {
        for (int i = 0; i < M; i++) {
            double sum = 0;
            for (int k = 0; k < K; k++) {
                float ba = 0f;
                for (int j = 0; j < r; j++) ba += b[i * r + j] * a[j * K + k];
                float v = w0[i * K + k] + s * ba;
                sum += (double) v * v;
            }
            norm[i] = (float) Math.sqrt(sum);
        }
    }

    /// Adds the adapter into y, which holds the base output x·W0ᵀ + b:
    /// h = xd·Aᵀ, u = xd·W0ᵀ, y −= u, u += s·h·Bᵀ, y += g⊙u (g = m/norm per column of y).
    /// Recomputing xd·W0ᵀ (one more base-sized matmul) is what PEFT does when dropout is active; without dropout PEFT
    /// reuses the base output instead, which differs only by rounding.
    /// y: (N, M)   h: (N, r), kept   u: (N, M), kept = xd·Vᵀ   norm: (M) from [#weightNorm]   xd: (N, K), kept
    public static void forward(Gemm gemm, float[] y, float[] h, float[] u, float[] norm, float[] xd,
                               float[] w0, float[] a, float[] b, float[] m, float s, int N, int K, int M, int r) {
        forward(gemm, y, h, u, norm, xd, w0, a, b, m, s, 0, N, K, M, r);
    }

    /// As above over rows [row0, row0 + N) of y, h, u and xd (a run of batch rows that share this adapter).
    public static void forward(Gemm gemm, float[] y, float[] h, float[] u, float[] norm, float[] xd,
                               float[] w0, float[] a, float[] b, float[] m, float s, int row0, int N, int K, int M, int r) {
        int ho = row0 * r, yo = row0 * M;
        gemm.sgemm(false, true, N, r, K, 1f, xd, row0 * K, K, a, 0, K, 0f, h, ho, r);   // h = xd·Aᵀ
        gemm.sgemm(false, true, N, M, K, 1f, xd, row0 * K, K, w0, 0, K, 0f, u, yo, M);  // u = xd·W0ᵀ
        for (int i = yo; i < yo + N * M; i++) y[i] -= u[i];                             // y −= u
        gemm.sgemm(false, true, N, M, r, s, h, ho, r, b, 0, r, 1f, u, yo, M);           // u += s·h·Bᵀ
        for (int n = 0; n < N; n++)                                                     // y += g⊙u
            for (int i = 0; i < M; i++) y[yo + n * M + i] += m[i] / norm[i] * u[yo + n * M + i];
    }

    /// Forward mirrored, norm held constant (detached):
    /// dm += Σₙ dy⊙u / norm, du = g⊙dy; dB += s·duᵀ·h, dh = s·du·B; dxd += (du − dy)·W0; dA += dhᵀ·xd, dxd += dh·A.
    /// Adds into dxd (or null), dA, dB, dm (+=); du (N, M) and dh (N, r) are scratch, overwritten.
    public static void backward(Gemm gemm, float[] dxd, float[] dA, float[] dB, float[] dm, float[] du, float[] dh,
                                float[] dy, float[] xd, float[] h, float[] u, float[] norm,
                                float[] w0, float[] a, float[] b, float[] m, float s, int N, int K, int M, int r) {
        for (int n = 0; n < N; n++)                                              // y += g⊙u
            for (int i = 0; i < M; i++) {
                dm[i] += dy[n * M + i] * u[n * M + i] / norm[i];
                du[n * M + i] = m[i] / norm[i] * dy[n * M + i];
            }
        gemm.sgemm(true, false, M, r, N, s, du, 0, M, h, 0, r, 1f, dB, 0, r);    // u += s·h·Bᵀ
        gemm.sgemm(false, false, N, r, M, s, du, 0, M, b, 0, r, 0f, dh, 0, r);
        if (dxd != null) {                                                       // y −= u; u = xd·W0ᵀ
            for (int i = 0; i < N * M; i++) du[i] -= dy[i];
            gemm.sgemm(false, false, N, K, M, 1f, du, 0, M, w0, 0, K, 1f, dxd, 0, K);
        }
        gemm.sgemm(true, false, r, K, N, 1f, dh, 0, r, xd, 0, K, 1f, dA, 0, K);  // h = xd·Aᵀ
        if (dxd != null)
            gemm.sgemm(false, false, N, K, r, 1f, dh, 0, r, a, 0, K, 1f, dxd, 0, K);
    }

    /// W ← (m/norm)_i · (W + s·B·A) per row i, in place; factor (M) receives m/norm, which [#unmerge] needs.
    /// w: (M, K)   factor: (M)   a: (r, K)   b: (M, r)   m: (M)
    public static void merge(Gemm gemm, float[] w, float[] factor, float[] a, float[] b, float[] m, float s,
                             int M, int K, int r) {
        weightNorm(factor, w, a, b, s, M, K, r);
        for (int i = 0; i < M; i++) factor[i] = m[i] / factor[i];
        LoraLinear.merge(gemm, w, a, b, s, M, K, r);
        for (int i = 0; i < M; i++)
            for (int k = 0; k < K; k++) w[i * K + k] *= factor[i];
    }

    /// W ← W / factor_i − s·B·A, the inverse of [#merge] (PEFT `unmerge`: weight / dora_factor − delta_weight).
    public static void unmerge(Gemm gemm, float[] w, float[] factor, float[] a, float[] b, float s, int M, int K, int r) {
        for (int i = 0; i < M; i++)
            for (int k = 0; k < K; k++) w[i * K + k] /= factor[i];
        LoraLinear.unmerge(gemm, w, a, b, s, M, K, r);
    }
}
