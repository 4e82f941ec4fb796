package org.peft4j.model.adapter.oft;

/// OFT's block-diagonal orthogonal rotation of one linear layer, and the merged weight it gives.
///
/// Reference: PEFT `tuners/oft/layer.py` `OFTRotationModule`: the parameter `oft_R.weight` (nBlocks, b(b−1)/2) holds
/// the upper triangle (row-major, `torch.triu_indices(b, b, 1)`) of a skew-symmetric Q = U − Uᵀ per block
/// (`_pytorch_skew_symmetric`); `_cayley_batch` with use_cayley_neumann and t terms builds
/// R = I + 2Q + 2Q² + … + 2Q^(t−2) + Q^(t−1) (t ≥ 3; t = 2: I + 2Q; t = 1: I), the truncated Neumann series of the
/// Cayley transform (I − Q)⁻¹(I + Q). `forward` rotates the input per block, x_rot[o+c] = Σₖ x[o+k]·R[k][c]
/// (einsum "...rk,rkc->...rc"), and the base layer runs on x_rot; so y = x·R_bd·W0ᵀ and the merged weight is
/// W' = W0·R_bdᵀ (PEFT `Linear.merge`: (oft_mat · W0ᵀ)ᵀ), which is what peft4j trains through.
///
/// Backward: with G = dL/dW', dR_q[i][j] = Σₘ G[m][o+i]·W0[m][o+j]; through the series
/// dQ = Σₖ cₖ Σ_{a+c=k−1} (Qᵃ)ᵀ·dR·(Qᶜ)ᵀ; and dU[i][j] = dQ[i][j] − dQ[j][i] for i < j.
/// Everything here is plain loops in double accumulation; block sizes are small (LLaMA-Factory's default 32).
public final class OftRotation {
    private OftRotation() {}

    /// Number of parameters per block: b(b−1)/2.
    public static int elements(int b) { return b * (b - 1) / 2; }

    /// q (b×b) = U − Uᵀ from the block's upper-triangle vector theta[off .. off + b(b−1)/2).
    public static void skew(double[] q, float[] theta, int off, int b) {
        java.util.Arrays.fill(q, 0, b * b, 0);
        int e = off;
        for (int i = 0; i < b; i++)
            for (int j = i + 1; j < b; j++) { double v = theta[e++]; q[i * b + j] = v; q[j * b + i] = -v; }
    }

    /// The coefficient of Qᵏ in the t-term series: 1 for k = 0 and k = t−1 (t ≥ 3), else 2 up to k = t−2.
    static double coeff(int k, int t) {
        if (k == 0) return 1;
        if (k >= t) return 0;
        if (t >= 3 && k == t - 1) return 1;
        return 2;
    }

    /// r (b×b) = Σₖ cₖ Qᵏ for each block q, into rot[(q·b·b) ...]; pw is scratch of t·b·b doubles (the powers).
    public static void rotations(float[] rot, float[] theta, int nBlocks, int b, int t, double[] pw) {
        int n = elements(b), bb = b * b;
        for (int q = 0; q < nBlocks; q++) {
            powers(pw, theta, q * n, b, t);
            for (int x = 0; x < bb; x++) {
                double s = 0;
                for (int k = 0; k < t; k++) s += coeff(k, t) * pw[k * bb + x];
                rot[q * bb + x] = (float) s;
            }
        }
    }

    /// pw[k] = Qᵏ for k = 0 .. t−1 of the block starting at theta[off].
    static void powers(double[] pw, float[] theta, int off, int b, int t) {
        int bb = b * b;
        java.util.Arrays.fill(pw, 0, bb, 0);
        for (int i = 0; i < b; i++) pw[i * b + i] = 1;
        if (t < 2) return;
        skew(pw, theta, off, b);   // overwrites pw[0..bb): redo identity after
        System.arraycopy(pw, 0, pw, bb, bb);
        java.util.Arrays.fill(pw, 0, bb, 0);
        for (int i = 0; i < b; i++) pw[i * b + i] = 1;
        for (int k = 2; k < t; k++)
            for (int i = 0; i < b; i++)
                for (int j = 0; j < b; j++) {
                    double s = 0;
                    for (int c = 0; c < b; c++) s += pw[(k - 1) * bb + i * b + c] * pw[bb + c * b + j];
                    pw[k * bb + i * b + j] = s;
                }
    }

    /// W' = W0·R_bdᵀ: w[m][o+i] = Σⱼ w0[m][o+j]·R_q[i][j]. w, w0: (M, K); rot: (nBlocks, b, b), nBlocks·b = K.
    public static void merge(float[] w, float[] w0, float[] rot, int M, int K, int b) {
        int nb = K / b, bb = b * b;
        for (int m = 0; m < M; m++)
            for (int q = 0; q < nb; q++) {
                int o = m * K + q * b;
                for (int i = 0; i < b; i++) {
                    double s = 0;
                    for (int j = 0; j < b; j++) s += (double) w0[o + j] * rot[q * bb + i * b + j];
                    w[o + i] = (float) s;
                }
            }
    }

    /// Adds dL/dtheta into dTheta given G = dL/dW' (M, K), the frozen w0 (M, K) and theta.
    /// Scratch: pw (t·b·b), dr (b·b), dq (b·b), tmp (b·b) doubles.
    public static void backward(float[] dTheta, float[] g, float[] w0, float[] theta, int M, int K, int b, int t,
                                double[] pw, double[] dr, double[] dq, double[] tmp) {
        int nb = K / b, bb = b * b, n = elements(b);
        for (int q = 0; q < nb; q++) {
            java.util.Arrays.fill(dr, 0, bb, 0);
            for (int m = 0; m < M; m++) {
                int o = m * K + q * b;
                for (int i = 0; i < b; i++) {
                    double gi = g[o + i];
                    if (gi == 0) continue;
                    for (int j = 0; j < b; j++) dr[i * b + j] += gi * w0[o + j];
                }
            }
            powers(pw, theta, q * n, b, t);
            java.util.Arrays.fill(dq, 0, bb, 0);
            // d/dQ of c_k·tr(drᵀ Qᵏ) = c_k Σ_{a+c=k−1} (Qᵃ)ᵀ·dr·(Qᶜ)ᵀ
            for (int k = 1; k < t; k++) {
                double ck = coeff(k, t);
                for (int a = 0; a < k; a++) {
                    int c = k - 1 - a;
                    // tmp = (Qᵃ)ᵀ·dr
                    for (int i = 0; i < b; i++)
                        for (int j = 0; j < b; j++) {
                            double s = 0;
                            for (int x = 0; x < b; x++) s += pw[a * bb + x * b + i] * dr[x * b + j];
                            tmp[i * b + j] = s;
                        }
                    // dq += ck · tmp·(Qᶜ)ᵀ
                    for (int i = 0; i < b; i++)
                        for (int j = 0; j < b; j++) {
                            double s = 0;
                            for (int x = 0; x < b; x++) s += tmp[i * b + x] * pw[c * bb + j * b + x];
                            dq[i * b + j] += ck * s;
                        }
                }
            }
            int e = q * n;
            for (int i = 0; i < b; i++)
                for (int j = i + 1; j < b; j++) dTheta[e++] += (float) (dq[i * b + j] - dq[j * b + i]);
        }
    }
}
