package org.peft4j.model.adapter.lora;

import org.peft4j.core.Parallel;
import org.peft4j.core.Peft4jException.ConfigException;

import java.util.LinkedHashMap;
import java.util.Map;
import java.util.random.RandomGenerator;

/// PiSSA initialisation (Meng et al. 2024, arXiv:2404.02948; PEFT `LoraLayer.pissa_init`): the adapter starts as the
/// principal rank-r part of the weight and the base keeps the residual, so the adapted layer equals W at step 0.
/// Top-r SVD W ≈ U·S·Vᵀ, then A = diag(√(S/s))·Vᵀ, B = U·diag(√(S/s)) and W_res = W − s·B·A.
/// The SVD is our own, in double precision (no library): Gram matrices and a cyclic Jacobi eigen-decomposition, either
/// exact (PEFT `"pissa"`) or after torch's `svd_lowrank(W, q = r, niter)` range finder (PEFT `"pissa_niter_N"`; Halko
/// et al. 2009, Alg. 4.4 and 5.1). [#convert] turns a trained PiSSA adapter into a plain LoRA over the original W.
public final class Pissa {
    private Pissa() {}

    /// A truncated SVD W ≈ u·diag(s)·vt, singular values descending.
    /// @param u  (M, r) left singular vectors as columns
    /// @param s  (r) singular values
    /// @param vt (r, K) right singular vectors as rows
    public record Svd(double[] u, double[] s, double[] vt) {}

    /// Initialises one targeted layer as PEFT does: a (r, K) = diag(√(S/s))·Vᵀ, b (M, r) = U·diag(√(S/s)), and
    /// **w (M, K) is overwritten** with W − s·B·A. The residual is formed from the float-rounded A and B with the
    /// products summed in double, so W_res + s·B·A reproduces W to float rounding whatever the SVD's accuracy
    /// (PEFT's remark on fast SVD). `niter` = −1 is the exact SVD, else the randomized one with niter power
    /// iterations (LLaMA-Factory's pissa_iter, default 16); rng draws its Gaussian test matrix.
    public static void init(float[] w, float[] a, float[] b, float s, int M, int K, int r, int niter, RandomGenerator rng) {
        if (!(s > 0)) throw new ConfigException("PiSSA needs a positive LoRA scaling, got " + s);
        if (a.length != r * K || b.length != M * r)
            throw new ConfigException("PiSSA: lora_A has " + a.length + " and lora_B " + b.length + " values, expected r·K = " + r * K + " and M·r = " + M * r);
        Svd d = svd(w, M, K, r, niter, rng);
        for (int i = 0; i < r; i++) {
            double f = Math.sqrt(d.s[i] / s);
            for (int k = 0; k < K; k++) a[i * K + k] = (float) (f * d.vt[i * K + k]);
            for (int j = 0; j < M; j++) b[j * r + i] = (float) (d.u[j * r + i] * f);
        }
        Parallel.range(M, i -> {
            for (int k = 0; k < K; k++) {
                double ba = 0;
                for (int j = 0; j < r; j++) ba += (double) b[i * r + j] * a[j * K + k];
                w[i * K + k] = (float) (w[i * K + k] - s * ba);
            }
        });
    }

    /// The top-r singular triplets of w (M, K).
    ///
    /// - niter = −1: exact, from the eigen-decomposition of W·Wᵀ or Wᵀ·W, whichever is smaller (n = min(M, K)):
    ///   O(M·K·n) for the Gram matrix plus O(n³) per Jacobi sweep (about 6–10 sweeps). Fine for small models and
    ///   tests; for a 4096-wide layer prefer the randomized path, as PEFT users do.
    /// - niter ≥ 0: torch `svd_lowrank(W, q = r, niter)`: Y = W·Ω with Ω (K, r) Gaussian, Q = orth(Y), niter times
    ///   Q = orth(W·orth(Wᵀ·Q)), then the exact SVD of the small Qᵀ·W (r, K). O((2·niter + 2)·M·K·r).
    ///   Accurate when the spectrum decays past σ_r (the error shrinks like (σ_{r+1}/σ_r)^(2·niter+1)).
    public static Svd svd(float[] w, int M, int K, int r, int niter, RandomGenerator rng) {
        if (w.length != M * K) throw new ConfigException("PiSSA: weight has " + w.length + " values, expected M·K = " + M + "·" + K);
        if (r < 1 || r > Math.min(M, K))
            throw new ConfigException("PiSSA rank " + r + " must be in [1, min(out, in) = " + Math.min(M, K) + "] for a (" + M + ", " + K + ") weight; lower lora_rank");
        if (niter < -1) throw new ConfigException("pissa_iter = " + niter + " must be -1 (exact SVD) or >= 0 (fast SVD iterations)");
        if (niter == -1) {
            boolean t = M > K;                 // decompose a = Wᵀ when W is tall, so the Gram matrix is min(M, K)²
            int m = t ? K : M;
            double[] eye = new double[m * m];
            for (int i = 0; i < m; i++) eye[i * m + i] = 1;
            return fromBasis(w, M, K, t, eye, m, r);
        }
        double[] omega = new double[K * r];  // (K, r)
        for (int i = 0; i < omega.length; i++) omega[i] = rng.nextGaussian();
        double[] q = mul(w, M, K, omega, r); // (M, r)
        orthonormalize(q, M, r);
        for (int it = 0; it < niter; it++) {
            double[] p = mulT(w, M, K, q, r); // (K, r)
            orthonormalize(p, K, r);
            q = mul(w, M, K, p, r);
            orthonormalize(q, M, r);
        }
        return fromBasis(w, M, K, false, q, r, r);
    }

    /// A PiSSA adapter after training, as a plain LoRA over the original W (PEFT `subtract_mutated_init`, written by
    /// `save_pretrained(path_initial_model_for_weight_conversion=...)`): W_res + s·B·A = W + s·(B·A − B0·A0)
    /// = W + s·B'·A' with A' = [A; A0] (2r, K) and B' = [B, −B0] (M, 2r). Pair with [#convertConfig], which keeps s.
    public static LoraWeights convert(LoraWeights trained, LoraWeights initial) {
        int r = trained.r(), K = trained.in(), M = trained.out();
        if (initial.r() != r || initial.in() != K || initial.out() != M)
            throw new ConfigException("PiSSA conversion: initial factors (r=" + initial.r() + ", " + initial.out() + "x" + initial.in()
                    + ") do not match the trained adapter (r=" + r + ", " + M + "x" + K + ")");
        if (trained.magnitude() != null) throw new ConfigException("PiSSA conversion of a DoRA adapter is not supported");
        float[] a = new float[2 * r * K], b = new float[M * 2 * r];
        System.arraycopy(trained.a(), 0, a, 0, r * K);
        System.arraycopy(initial.a(), 0, a, r * K, r * K);
        for (int i = 0; i < M; i++)
            for (int j = 0; j < r; j++) {
                b[i * 2 * r + j] = trained.b()[i * r + j];
                b[i * 2 * r + r + j] = -initial.b()[i * r + j];
            }
        return new LoraWeights(2 * r, K, M, a, b, null);
    }

    /// The config PEFT writes for a converted adapter: rank 2r, lora_alpha 2·alpha (√2·alpha with rsLoRA) so the
    /// scaling is unchanged, rank_pattern and alpha_pattern values doubled, init_lora_weights true.
    public static LoraConfig convertConfig(LoraConfig c) {
        if (c.useRslora() && (!c.rankPattern().isEmpty() || !c.alphaPattern().isEmpty()))
            throw new ConfigException("converting PiSSA to LoRA is not supported with rank_pattern or alpha_pattern together with use_rslora (as in PEFT)");
        Map<String, Integer> ranks = new LinkedHashMap<>();
        c.rankPattern().forEach((k, v) -> ranks.put(k, 2 * v));
        Map<String, Double> alphas = new LinkedHashMap<>();
        c.alphaPattern().forEach((k, v) -> alphas.put(k, 2 * v));
        return new LoraConfig(2 * c.r(), c.loraAlpha() * (c.useRslora() ? Math.sqrt(2) : 2), c.loraDropout(), c.targetModules(),
                c.useRslora(), c.useDora(), LoraConfig.Init.KAIMING_UNIFORM, c.bias(), c.fanInFanOut(), c.modulesToSave(),
                ranks, alphas, c.layersToTransform());
    }

    // ---------------------------------------------------------------- internals

    /// The SVD of a = W (or Wᵀ with t) restricted to the range of the orthonormal basis q (m, qc): with Z = aᵀ·Q
    /// (n, qc), ZᵀZ = E·Λ·Eᵀ gives U = Q·E, S = √Λ, V = Z·E·S⁻¹ (the SVD of Qᵀ·a = Zᵀ). Returns the top r, in W's
    /// orientation (with t, a's U and V swap roles).
    private static Svd fromBasis(float[] w, int M, int K, boolean t, double[] q, int qc, int r) {
        int m = t ? K : M, n = t ? M : K;
        double[] z = t ? mul(w, M, K, q, qc) : mulT(w, M, K, q, qc); // (n, qc)
        double[] g = new double[qc * qc];
        for (int i = 0; i < n; i++)
            for (int p = 0; p < qc; p++) {
                double zp = z[i * qc + p];
                if (zp == 0) continue;
                for (int c = p; c < qc; c++) g[p * qc + c] += zp * z[i * qc + c];
            }
        for (int p = 0; p < qc; p++) for (int c = 0; c < p; c++) g[p * qc + c] = g[c * qc + p];
        double[] e = new double[qc * qc], lam = new double[qc];
        eigen(g, e, lam, qc);
        double[] u = new double[m * r], s = new double[r], v = new double[n * r]; // u (m, r), v (n, r)
        for (int i = 0; i < r; i++) {
            s[i] = Math.sqrt(Math.max(lam[i], 0));
            double inv = s[i] > 0 ? 1 / s[i] : 0;  // σ = 0 (rank-deficient W): a zero pair, A and B rows stay 0
            for (int j = 0; j < m; j++) {
                double acc = 0;
                for (int c = 0; c < qc; c++) acc += q[j * qc + c] * e[c * qc + i];
                u[j * r + i] = acc;
            }
            for (int j = 0; j < n; j++) {
                double acc = 0;
                for (int c = 0; c < qc; c++) acc += z[j * qc + c] * e[c * qc + i];
                v[j * r + i] = acc * inv;
            }
        }
        // W = a (t false): U = u, Vᵀ = vᵀ.   W = aᵀ (t true): U = v, Vᵀ = uᵀ.
        double[] uw = t ? v : u, vw = t ? u : v;
        int cols = t ? m : n;                   // K
        double[] vt = new double[r * cols];
        for (int j = 0; j < cols; j++) for (int i = 0; i < r; i++) vt[i * cols + j] = vw[j * r + i];
        return new Svd(uw, s, vt);
    }

    /// Symmetric eigen-decomposition g = E·diag(λ)·Eᵀ by cyclic Jacobi rotations (Golub & Van Loan §8.5.3), λ
    /// descending, eigenvectors as the columns of e. g (n, n) is destroyed. O(n³) per sweep; it stops when the
    /// off-diagonal mass is below 1e-30 of the total (about double precision) or after 100 sweeps.
    static void eigen(double[] g, double[] e, double[] lam, int n) {
        java.util.Arrays.fill(e, 0, n * n, 0);
        for (int i = 0; i < n; i++) e[i * n + i] = 1;
        double total = 0;
        for (int i = 0; i < n * n; i++) total += g[i] * g[i];
        for (int sweep = 0; sweep < 100; sweep++) {
            double off = 0;
            for (int p = 0; p < n; p++) for (int q = p + 1; q < n; q++) off += 2 * g[p * n + q] * g[p * n + q];
            if (off <= 1e-30 * total) break;
            for (int p = 0; p < n; p++)
                for (int q = p + 1; q < n; q++) {
                    double apq = g[p * n + q];
                    if (apq == 0) continue;
                    // t = tan θ of the rotation that zeroes g[p][q]: the smaller root of t² + 2ζt − 1 = 0
                    double zeta = (g[q * n + q] - g[p * n + p]) / (2 * apq);
                    double t = zeta == 0 ? 1 : Math.signum(zeta) / (Math.abs(zeta) + Math.sqrt(zeta * zeta + 1));
                    double c = 1 / Math.sqrt(t * t + 1), s = t * c;
                    for (int k = 0; k < n; k++) {       // columns p, q: g ← g·J
                        double gkp = g[k * n + p], gkq = g[k * n + q];
                        g[k * n + p] = c * gkp - s * gkq;
                        g[k * n + q] = s * gkp + c * gkq;
                    }
                    for (int k = 0; k < n; k++) {       // rows p, q: g ← Jᵀ·g
                        double gpk = g[p * n + k], gqk = g[q * n + k];
                        g[p * n + k] = c * gpk - s * gqk;
                        g[q * n + k] = s * gpk + c * gqk;
                    }
                    g[p * n + q] = 0;
                    g[q * n + p] = 0;
                    for (int k = 0; k < n; k++) {       // e ← e·J
                        double ekp = e[k * n + p], ekq = e[k * n + q];
                        e[k * n + p] = c * ekp - s * ekq;
                        e[k * n + q] = s * ekp + c * ekq;
                    }
                }
        }
        Integer[] order = new Integer[n];
        for (int i = 0; i < n; i++) order[i] = i;
        java.util.Arrays.sort(order, (x, y) -> Double.compare(g[y * n + y], g[x * n + x]));
        double[] sorted = new double[n * n];
        for (int i = 0; i < n; i++) {
            lam[i] = g[order[i] * n + order[i]];
            for (int k = 0; k < n; k++) sorted[k * n + i] = e[k * n + order[i]];
        }
        System.arraycopy(sorted, 0, e, 0, n * n);
    }

    /// Orthonormalises the q columns of y (n, q) in place: modified Gram–Schmidt run twice ("twice is enough",
    /// Giraud et al. 2005), so Qᵀ·Q = I to double rounding. A column that cancels to noise (W of rank < q) becomes 0.
    static void orthonormalize(double[] y, int n, int q) {
        for (int j = 0; j < q; j++) {
            double norm0 = colNorm(y, n, q, j);
            for (int pass = 0; pass < 2; pass++)
                for (int p = 0; p < j; p++) {
                    double d = 0;
                    for (int i = 0; i < n; i++) d += y[i * q + p] * y[i * q + j];
                    for (int i = 0; i < n; i++) y[i * q + j] -= d * y[i * q + p];
                }
            double norm = colNorm(y, n, q, j);
            double f = norm > 1e-10 * norm0 ? 1 / norm : 0;
            for (int i = 0; i < n; i++) y[i * q + j] *= f;
        }
    }

    private static double colNorm(double[] y, int n, int q, int j) {
        double s = 0;
        for (int i = 0; i < n; i++) s += y[i * q + j] * y[i * q + j];
        return Math.sqrt(s);
    }

    /// W·x: w (M, K) float, x (K, q) → (M, q), one output row per task.
    private static double[] mul(float[] w, int M, int K, double[] x, int q) {
        double[] y = new double[M * q];
        Parallel.range(M, i -> {
            for (int k = 0; k < K; k++) {
                double wik = w[i * K + k];
                if (wik == 0) continue;
                for (int j = 0; j < q; j++) y[i * q + j] += wik * x[k * q + j];
            }
        });
        return y;
    }

    /// Wᵀ·x: w (M, K) float, x (M, q) → (K, q), split over fixed column ranges of W so each task owns its rows of
    /// the result (deterministic for any thread count).
    private static double[] mulT(float[] w, int M, int K, double[] x, int q) {
        double[] z = new double[K * q];
        Parallel.chunks(K, Parallel.threads(), (chunk, from, to) -> {
            for (int i = 0; i < M; i++)
                for (int k = from; k < to; k++) {
                    double wik = w[i * K + k];
                    if (wik == 0) continue;
                    for (int j = 0; j < q; j++) z[k * q + j] += wik * x[i * q + j];
                }
        });
        return z;
    }
}
