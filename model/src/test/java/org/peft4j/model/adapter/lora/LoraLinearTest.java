package org.peft4j.model.adapter.lora;

import org.junit.jupiter.api.Test;
import org.peft4j.core.Gemm;
import org.peft4j.core.kernels.ScalarGemm;
import org.peft4j.testkit.GradCheck;
import org.peft4j.testkit.GradCheck.Param;

import java.util.Arrays;
import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.peft4j.testkit.Assert.assertClose;

/// LoRA / DoRA math on random small layers: forward against a double-precision reference, PEFT's invariants
/// (B = 0 is the base, merged = unmerged, unmerge inverts merge), backward against central differences, init and
/// dropout statistics. Shapes are deliberately not multiples of anything: N 5, K 12, M 7, r 3.
class LoraLinearTest {
    static final Gemm GEMM = ScalarGemm.INSTANCE;
    static final int N = 5, K = 12, M = 7, R = 3;
    static final float S = 2.5f, P = 0.3f;
    /// Float vs the double reference: each output sums ≤ K + R products of O(1) values, so float rounding is
    /// ~(K+R)·6e-8·|terms| ≈ 1e-6 at worst; 1e-5 leaves 10× margin and is far below any wrong term (O(0.1)).
    static final double FORWARD_TOL = 1e-5;
    /// Merged vs unmerged logits: the same sums in a different association ((W + sBA)x vs Wx + sB(Ax)), plus one
    /// rounding of W + sBA; O(1) values, K = 12 terms → a few 1e-7. 1e-5 as the task states, 10× above that.
    static final double MERGE_TOL = 1e-5;
    /// merge then unmerge: W + ΔW − ΔW loses at most one ulp of |W + ΔW| (≤ 2) per element = 2.4e-7.
    static final double ROUND_TRIP_TOL = 5e-7;

    final SplittableRandom rng = new SplittableRandom(42);
    final float[] x = Fixtures.uniform(rng, N * K, 1), w = Fixtures.uniform(rng, M * K, 1), bias = Fixtures.uniform(rng, M, 1);
    final float[] a = Fixtures.uniform(rng, R * K, 0.5), b = Fixtures.uniform(rng, M * R, 0.5);
    final float[] m = Fixtures.uniform(rng, M, 1);
    { for (int i = 0; i < M; i++) m[i] += 2; } // a magnitude is a norm: positive

    /// y = x·W0ᵀ + b + s·(xd·Aᵀ)·Bᵀ, all in double.
    double[] loraReference(float[] xd) {
        double[] y = Fixtures.matmulT(x, w, N, K, M);
        double[] lora = Fixtures.matmulT(Fixtures.matmulT(xd, a, N, K, R), Fixtures.toDouble(b), N, R, M);
        for (int n = 0; n < N; n++)
            for (int i = 0; i < M; i++) y[n * M + i] += bias[i] + S * lora[n * M + i];
        return y;
    }

    float[] dropped(float[] mask) {
        float[] xd = new float[N * K];
        Dropout.forward(xd, mask, x, P, new SplittableRandom(7), N * K);
        return xd;
    }

    @Test
    void forwardMatchesDoubleReferenceWithAndWithoutDropout() {
        float[] y = Fixtures.base(x, w, bias, N, K, M);
        LoraLinear.forward(GEMM, y, new float[N * R], x, a, b, S, N, K, M, R);
        assertClose("lora forward", loraReference(x), Fixtures.toDouble(y), FORWARD_TOL, FORWARD_TOL);

        float[] mask = new float[N * K], xd = dropped(mask);
        y = Fixtures.base(x, w, bias, N, K, M);
        LoraLinear.forward(GEMM, y, new float[N * R], xd, a, b, S, N, K, M, R);
        assertClose("lora forward, dropout on the adapter path only", loraReference(xd), Fixtures.toDouble(y), FORWARD_TOL, FORWARD_TOL);
    }

    @Test
    void zeroBGivesTheBaseOutputExactly() {
        float[] base = Fixtures.base(x, w, bias, N, K, M), y = base.clone();
        LoraLinear.forward(GEMM, y, new float[N * R], x, a, new float[M * R], S, N, K, M, R);
        assertArrayEquals(base, y); // y += s·h·0 adds exact zeros
    }

    @Test
    void mergedEqualsUnmergedAndUnmergeRestoresW() {
        float[] y = Fixtures.base(x, w, bias, N, K, M);
        LoraLinear.forward(GEMM, y, new float[N * R], x, a, b, S, N, K, M, R);
        float[] merged = w.clone();
        LoraLinear.merge(GEMM, merged, a, b, S, M, K, R);
        assertClose("merged vs unmerged logits", y, Fixtures.base(x, merged, bias, N, K, M), MERGE_TOL, 0);
        assertTrue(Arrays.stream(Fixtures.toDouble(merged)).sum() != Arrays.stream(Fixtures.toDouble(w)).sum(), "merge changed nothing");
        LoraLinear.unmerge(GEMM, merged, a, b, S, M, K, R);
        assertClose("unmerge(merge(W))", w, merged, ROUND_TRIP_TOL, 0);
    }

    @Test
    void loraBackwardMatchesFiniteDifferences() {
        float[] h = new float[N * R], dh = new float[N * R];
        float[] dA = new float[R * K], dB = new float[M * R], dx = new float[N * K];
        GradCheck.check("lora", () -> {
            float[] y = new float[N * M]; // the base output's gradient is the caller's: checked here is only the adapter
            LoraLinear.forward(GEMM, y, h, x, a, b, S, N, K, M, R);
            return y;
        }, dy -> LoraLinear.backward(GEMM, dx, dA, dB, dh, dy, x, h, a, b, S, N, K, M, R),
                new Param("A", a, dA), new Param("B", b, dB), new Param("x", x, dx));
    }

    /// The fast backward (dB, dh, dA on PanelGemm, split over threads) against the scalar reference, on shapes of a
    /// real model's modules (rank 16, N 512, K/M 576 and 1536 and a ragged one), for 1 and 2 threads: equal within
    /// the rounding of sums of N or M products (each |term| ≤ 1: 2·depth·2⁻²⁴ relative to the sum of |terms|, here
    /// bounded by 1e-4 absolute), and bit-identical between the thread counts.
    @Test
    void loraBackwardFastPathMatchesScalar() {
        int before = org.peft4j.core.Parallel.threads();
        try {
            for (int[] s : new int[][] {{512, 576, 1536, 16}, {512, 1536, 576, 16}, {70, 37, 45, 5}}) {
                int n = s[0], k = s[1], mm = s[2], r = s[3];
                SplittableRandom g = new SplittableRandom(n + k + mm);
                float[] xs = Fixtures.uniform(g, n * k, 1), as = Fixtures.uniform(g, r * k, 0.1), bs = Fixtures.uniform(g, mm * r, 0.1);
                float[] dy = Fixtures.uniform(g, n * mm, 0.01), hs = new float[n * r];
                LoraLinear.forward(GEMM, new float[n * mm], hs, xs, as, bs, S, n, k, mm, r);
                float[][] want = backwardWith(GEMM, xs, as, bs, dy, hs, n, k, mm, r);
                float[][] prev = null;
                for (int threads : new int[] {1, 2}) {
                    org.peft4j.core.Parallel.setThreads(threads);
                    float[][] got = backwardWith(org.peft4j.core.kernels.VectorGemm.INSTANCE, xs, as, bs, dy, hs, n, k, mm, r);
                    String[] names = {"dx", "dA", "dB"};
                    for (int i = 0; i < 3; i++) {
                        assertClose(names[i] + " " + Arrays.toString(s) + " threads " + threads, want[i], got[i], 1e-4, 1e-4);
                        if (prev != null) assertArrayEquals(prev[i], got[i], names[i] + " differs between 1 and 2 threads");
                    }
                    prev = got;
                }
            }
        } finally {
            org.peft4j.core.Parallel.setThreads(before);
        }
    }

    /// {dx, dA, dB} of one backward from dA, dB holding 0.5 (so that += is exercised) and dx zero.
    static float[][] backwardWith(Gemm g, float[] x, float[] a, float[] b, float[] dy, float[] h, int n, int k, int mm, int r) {
        float[] dx = new float[n * k], dA = new float[r * k], dB = new float[mm * r], dh = new float[n * r];
        Arrays.fill(dA, 0.5f);
        Arrays.fill(dB, 0.5f);
        LoraLinear.backward(g, dx, dA, dB, dh, dy, x, h, a, b, S, n, k, mm, r);
        return new float[][] {dx, dA, dB};
    }

    @Test
    void loraBackwardThroughDropoutMatchesFiniteDifferences() {
        float[] h = new float[N * R], dh = new float[N * R], mask = new float[N * K], xd = new float[N * K];
        float[] dA = new float[R * K], dB = new float[M * R], dx = new float[N * K], dxd = new float[N * K];
        GradCheck.check("lora + dropout", () -> {
            float[] y = new float[N * M];
            Dropout.forward(xd, mask, x, P, new SplittableRandom(7), N * K); // same seed → same mask every call
            LoraLinear.forward(GEMM, y, h, xd, a, b, S, N, K, M, R);
            return y;
        }, dy -> {
            Arrays.fill(dxd, 0f);
            LoraLinear.backward(GEMM, dxd, dA, dB, dh, dy, xd, h, a, b, S, N, K, M, R);
            Dropout.backward(dx, dxd, mask, N * K);
        }, new Param("A", a, dA), new Param("B", b, dB), new Param("x", x, dx));
    }

    @Test
    void doraForwardMatchesDoubleReferenceWithDropout() {
        float[] mask = new float[N * K], xd = dropped(mask), norm = new float[M];
        DoraLinear.weightNorm(norm, w, a, b, S, M, K, R);
        // reference: V = W0 + s·B·A in double, n = ‖V_i‖, y = x·W0ᵀ + b + (g − 1)⊙(xd·W0ᵀ) + g⊙s·(xd·Aᵀ)·Bᵀ
        double[] v = new double[M * K], nRef = new double[M];
        for (int i = 0; i < M; i++)
            for (int k = 0; k < K; k++) {
                double d = w[i * K + k];
                for (int j = 0; j < R; j++) d += (double) S * b[i * R + j] * a[j * K + k];
                v[i * K + k] = d;
                nRef[i] += d * d;
            }
        for (int i = 0; i < M; i++) nRef[i] = Math.sqrt(nRef[i]);
        assertClose("dora weight norm", nRef, Fixtures.toDouble(norm), FORWARD_TOL, FORWARD_TOL);
        double[] base = Fixtures.matmulT(x, w, N, K, M), p0 = Fixtures.matmulT(xd, w, N, K, M);
        double[] lora = Fixtures.matmulT(Fixtures.matmulT(xd, a, N, K, R), Fixtures.toDouble(b), N, R, M);
        double[] ref = new double[N * M];
        for (int n = 0; n < N; n++)
            for (int i = 0; i < M; i++) {
                double g = m[i] / nRef[i];
                ref[n * M + i] = base[n * M + i] + bias[i] + (g - 1) * p0[n * M + i] + g * S * lora[n * M + i];
            }
        float[] y = Fixtures.base(x, w, bias, N, K, M);
        DoraLinear.forward(GEMM, y, new float[N * R], new float[N * M], norm, xd, w, a, b, m, S, N, K, M, R);
        assertClose("dora forward with dropout", ref, Fixtures.toDouble(y), FORWARD_TOL, FORWARD_TOL);
    }

    @Test
    void doraWithInitialMagnitudeAndZeroBIsTheBase() {
        float[] zeroB = new float[M * R], m0 = new float[M];
        DoraLinear.weightNorm(m0, w, a, zeroB, S, M, K, R); // PEFT's init: m = ‖W0‖ per row
        float[] base = Fixtures.base(x, w, bias, N, K, M), y = base.clone();
        DoraLinear.forward(GEMM, y, new float[N * R], new float[N * M], m0.clone(), x, w, a, zeroB, m0, S, N, K, M, R);
        assertClose("dora at init", base, y, 1e-6, 0); // y − u + 1·u: exact up to one rounding of |y| ≤ 4
    }

    @Test
    void doraMergedEqualsUnmergedAndUnmergeRestoresW() {
        float[] norm = new float[M];
        DoraLinear.weightNorm(norm, w, a, b, S, M, K, R);
        float[] y = Fixtures.base(x, w, bias, N, K, M);
        DoraLinear.forward(GEMM, y, new float[N * R], new float[N * M], norm, x, w, a, b, m, S, N, K, M, R);
        float[] merged = w.clone(), factor = new float[M];
        DoraLinear.merge(GEMM, merged, factor, a, b, m, S, M, K, R);
        assertClose("dora merged vs unmerged logits", y, Fixtures.base(x, merged, bias, N, K, M), MERGE_TOL, 0);
        DoraLinear.unmerge(GEMM, merged, factor, a, b, S, M, K, R);
        assertClose("dora unmerge(merge(W))", w, merged, 2 * ROUND_TRIP_TOL, 0); // one more rounding: ·g then /g
    }

    @Test
    void doraBackwardMatchesFiniteDifferencesWithDetachedNorm() {
        float[] norm = new float[M];
        DoraLinear.weightNorm(norm, w, a, b, S, M, K, R); // held fixed: PEFT detaches the norm
        float[] h = new float[N * R], u = new float[N * M], dh = new float[N * R], du = new float[N * M];
        float[] dA = new float[R * K], dB = new float[M * R], dm = new float[M], dx = new float[N * K];
        GradCheck.check("dora", () -> {
            float[] y = new float[N * M];
            DoraLinear.forward(GEMM, y, h, u, norm, x, w, a, b, m, S, N, K, M, R);
            return y;
        }, dy -> DoraLinear.backward(GEMM, dx, dA, dB, dm, du, dh, dy, x, h, u, norm, w, a, b, m, S, N, K, M, R),
                new Param("A", a, dA), new Param("B", b, dB), new Param("m", m, dm), new Param("x", x, dx));
    }

    @Test
    void kaimingUniformInitHasPeftBoundsAndIsSeeded() {
        int k = 256, out = 16, r = 8;
        float[] a1 = new float[r * k], b1 = new float[out * r];
        Arrays.fill(b1, 1f);
        LoraLinear.init(a1, b1, LoraConfig.Init.KAIMING_UNIFORM, new SplittableRandom(1), k, out, r);
        double bound = 1 / Math.sqrt(k); // kaiming_uniform(a = √5): √(6 / (6·fan_in))
        double max = 0, sum = 0, sq = 0;
        for (float f : a1) { max = Math.max(max, Math.abs(f)); sum += f; sq += (double) f * f; }
        int n = a1.length;
        assertTrue(max <= bound && max > 0.99 * bound, "max |A| " + max + " vs bound " + bound);
        // U(−c, c): mean 0 with standard error c/√(3n); variance c²/3 with relative standard error ≈ √(0.8/n) ≈ 2%
        assertEquals(0, sum / n, 4 * bound / Math.sqrt(3.0 * n));
        assertEquals(bound * bound / 3, sq / n, 0.08 * bound * bound / 3);
        assertArrayEquals(new float[out * r], b1);
        float[] a2 = new float[r * k];
        LoraLinear.init(a2, new float[out * r], LoraConfig.Init.KAIMING_UNIFORM, new SplittableRandom(1), k, out, r);
        assertArrayEquals(a1, a2);
    }

    @Test
    void gaussianInitHasStdOneOverR() {
        int k = 256, out = 16, r = 8;
        float[] a1 = new float[r * k], b1 = new float[out * r];
        Arrays.fill(b1, 1f);
        LoraLinear.init(a1, b1, LoraConfig.Init.GAUSSIAN, new SplittableRandom(3), k, out, r);
        double sq = 0;
        for (float f : a1) sq += (double) f * f;
        double std = Math.sqrt(sq / a1.length);
        assertEquals(1.0 / r, std, 0.05 / r); // standard error of a std estimate ≈ 1/√(2n) = 1.6%; 5% ≈ 3σ
        assertArrayEquals(new float[out * r], b1);
    }

    @Test
    void noInitGivesBothMatricesLinearDefaults() {
        int k = 64, out = 16, r = 4;
        float[] a1 = new float[r * k], b1 = new float[out * r];
        LoraLinear.init(a1, b1, LoraConfig.Init.NO_INIT, new SplittableRandom(5), k, out, r);
        double maxA = 0, maxB = 0;
        for (float f : a1) maxA = Math.max(maxA, Math.abs(f));
        for (float f : b1) maxB = Math.max(maxB, Math.abs(f));
        assertTrue(maxA <= 1 / Math.sqrt(k) && maxA > 0.9 / Math.sqrt(k), "A bound 1/√in, got " + maxA);
        assertTrue(maxB <= 1 / Math.sqrt(r) && maxB > 0.9 / Math.sqrt(r), "B bound 1/√r, got " + maxB);
    }

    @Test
    void dropoutDropsAFractionPAndScalesTheRestByOneOverOneMinusP() {
        int n = 20000;
        float[] in = Fixtures.uniform(new SplittableRandom(9), n, 1), out = new float[n], mask = new float[n];
        Dropout.forward(out, mask, in, P, new SplittableRandom(11), n);
        int dropped = 0;
        for (int i = 0; i < n; i++) {
            if (mask[i] == 0) { dropped++; assertEquals(0f, out[i], 0f); } // ±0, as torch
            else assertEquals(in[i] / (1 - P), out[i], 1e-6 * Math.abs(in[i]) * 2);
        }
        assertEquals(P, dropped / (double) n, 4 * Math.sqrt(P * (1 - P) / n)); // binomial, 4σ
        float[] dx = new float[n], ones = new float[n];
        Arrays.fill(ones, 1f);
        Dropout.backward(dx, ones, mask, n);
        assertArrayEquals(mask, dx); // d(x⊙mask)/dx = mask
    }
}
