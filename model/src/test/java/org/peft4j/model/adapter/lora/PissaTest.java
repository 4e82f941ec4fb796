package org.peft4j.model.adapter.lora;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import org.junit.jupiter.api.Test;
import org.peft4j.core.Peft4jException.ConfigException;

import java.io.IOException;
import java.io.InputStream;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.*;
import static org.peft4j.testkit.Assert.assertClose;

/// PiSSA against numpy (`reference/pissa_reference.py` → resources/lora/pissa_svd.json: singular values and the
/// rank-r residual of float32 matrices with a planted spectrum, one tall and one wide), plus PEFT's invariants:
/// W_res + s·B·A = W, the rows of A orthogonal with ‖A_i‖² = σ_i/s, and the fast SVD within a stated tolerance of
/// the exact one.
class PissaTest {
    /// Singular values from our double-precision Jacobi vs LAPACK on the same float32 input: both are backward stable
    /// (error ~ 1e-16·σ_max); going through the Gram matrix squares the condition, so σ_i ≥ 0.07 keeps a relative error
    /// ≲ 1e-16·(8/0.07)² ≈ 1e-12. 1e-9 is loose by three orders and catches any real error.
    static final double SIGMA_TOL = 1e-9;
    /// The residual is rounded to float (|W| ≲ 2.5, ulp/2 ≈ 1.2e-7), after A and B were rounded to float (each
    /// product term off by ~1e-7 relative, r terms): 1e-6 absolute.
    static final double RESIDUAL_TOL = 1e-6;
    /// Fast SVD, 16 iterations, gap σ_{r+1}/σ_r ≤ 0.5/1.73: subspace error ~ 0.29^33 ≈ 1e-18, so it equals the exact
    /// path to double rounding; 1e-9 relative on σ leaves room for the Gram step, as above.
    static final double FAST_TOL = 1e-9;

    record Case(int M, int K, int r, float[] w, double[] sigma, double[] residual) {}

    static List<Case> cases() throws IOException {
        try (InputStream in = PissaTest.class.getResourceAsStream("/lora/pissa_svd.json")) {
            assertNotNull(in, "resources/lora/pissa_svd.json is missing; run python3 reference/pissa_reference.py");
            JsonNode root = new ObjectMapper().readTree(in);
            return java.util.stream.StreamSupport.stream(root.get("cases").spliterator(), false).map(c -> {
                float[] w = new float[c.get("w").size()];
                for (int i = 0; i < w.length; i++) w[i] = (float) c.get("w").get(i).asDouble();
                return new Case(c.get("M").asInt(), c.get("K").asInt(), c.get("r").asInt(), w,
                        doubles(c.get("singular_values")), doubles(c.get("residual")));
            }).toList();
        }
    }

    static double[] doubles(JsonNode a) {
        double[] d = new double[a.size()];
        for (int i = 0; i < d.length; i++) d[i] = a.get(i).asDouble();
        return d;
    }

    @Test
    void exactSingularValuesMatchNumpy() throws IOException {
        for (Case c : cases()) {
            int n = Math.min(c.M, c.K);
            Pissa.Svd d = Pissa.svd(c.w, c.M, c.K, n, -1, new SplittableRandom(1));
            assertClose(c.M + "x" + c.K + " singular values", c.sigma, d.s(), SIGMA_TOL * c.sigma[0], SIGMA_TOL);
            // and U·S·Vᵀ is W itself at full rank
            double[] us = new double[c.M * n];
            for (int i = 0; i < c.M; i++) for (int j = 0; j < n; j++) us[i * n + j] = d.u()[i * n + j] * d.s()[j];
            double[] vtT = new double[c.K * n];
            for (int j = 0; j < n; j++) for (int k = 0; k < c.K; k++) vtT[k * n + j] = d.vt()[j * c.K + k];
            assertClose(c.M + "x" + c.K + " U·S·Vᵀ", Fixtures.toDouble(c.w), Fixtures.matmulT(us, vtT, c.M, n, c.K), 1e-12, 0);
        }
    }

    @Test
    void initGivesNumpysResidualAndReconstructsW() throws IOException {
        for (Case c : cases())
            for (int niter : new int[]{-1, 16}) {
                float s = 2.5f;
                float[] w = c.w.clone(), a = new float[c.r * c.K], b = new float[c.M * c.r];
                Pissa.init(w, a, b, s, c.M, c.K, c.r, niter, new SplittableRandom(3));
                String what = c.M + "x" + c.K + " niter " + niter;
                assertClose(what + " residual vs numpy", c.residual, Fixtures.toDouble(w), RESIDUAL_TOL, 0);
                // W_res + s·B·A = W: the adapted layer equals the base layer at step 0
                double[] ba = Fixtures.matmulT(b, transpose(a, c.r, c.K), c.M, c.r, c.K);
                double[] rebuilt = new double[c.M * c.K];
                for (int i = 0; i < rebuilt.length; i++) rebuilt[i] = w[i] + s * ba[i];
                assertClose(what + " W_res + s·B·A vs W", Fixtures.toDouble(c.w), rebuilt, 4e-7, 0);
                // A·Aᵀ = diag(σ/s) and Bᵀ·B = diag(σ/s): orthogonal, scaled factors (float-rounded: 1e-6 relative)
                double[] aat = Fixtures.matmulT(a, a, c.r, c.K, c.r);
                double[] btb = Fixtures.matmulT(transpose(b, c.M, c.r), transpose(b, c.M, c.r), c.r, c.M, c.r);
                double[] expect = new double[c.r * c.r];
                for (int i = 0; i < c.r; i++) expect[i * c.r + i] = c.sigma[i] / s;
                assertClose(what + " A·Aᵀ", expect, aat, 1e-6 * expect[0], 0);
                assertClose(what + " Bᵀ·B", expect, btb, 1e-6 * expect[0], 0);
            }
    }

    @Test
    void fastSvdAgreesWithExact() throws IOException {
        for (Case c : cases()) {
            Pissa.Svd exact = Pissa.svd(c.w, c.M, c.K, c.r, -1, new SplittableRandom(0));
            Pissa.Svd fast = Pissa.svd(c.w, c.M, c.K, c.r, 16, new SplittableRandom(9));
            assertClose(c.M + "x" + c.K + " fast vs exact σ", exact.s(), fast.s(), 0, FAST_TOL);
            // singular vectors agree up to sign
            for (int i = 0; i < c.r; i++) {
                double dot = 0;
                for (int k = 0; k < c.K; k++) dot += exact.vt()[i * c.K + k] * fast.vt()[i * c.K + k];
                assertEquals(1, Math.abs(dot), 1e-9, "|v_" + i + "·v'_" + i + "|");
            }
        }
        // With no power iteration (niter 0) the range finder alone is off, but residual + s·B·A still rebuilds W.
        Case c = cases().getFirst();
        float[] w = c.w.clone(), a = new float[c.r * c.K], b = new float[c.M * c.r];
        Pissa.init(w, a, b, 1f, c.M, c.K, c.r, 0, new SplittableRandom(5));
        double[] ba = Fixtures.matmulT(b, transpose(a, c.r, c.K), c.M, c.r, c.K);
        for (int i = 0; i < w.length; i++) assertEquals(c.w[i], w[i] + ba[i], 4e-7, "W at " + i);
    }

    @Test
    void rankDeficientWeightGivesZeroPairs() {
        int M = 6, K = 5, r = 3;
        float[] w = new float[M * K];   // rank 1: W = x·yᵀ
        for (int i = 0; i < M; i++) for (int k = 0; k < K; k++) w[i * K + k] = (i + 1) * (k - 2f);
        for (int niter : new int[]{-1, 4}) {
            float[] res = w.clone(), a = new float[r * K], b = new float[M * r];
            Pissa.init(res, a, b, 2f, M, K, r, niter, new SplittableRandom(2));
            for (float x : a) assertTrue(Float.isFinite(x));
            for (float x : res) assertEquals(0, x, 1e-5, "rank-1 W leaves a zero residual (niter " + niter + ")");
        }
    }

    @Test
    void conversionToPlainLoraKeepsTheDelta() {
        SplittableRandom rng = new SplittableRandom(4);
        int M = 7, K = 5, r = 2;
        LoraWeights a0 = new LoraWeights(r, K, M, Fixtures.uniform(rng, r * K, 1), Fixtures.uniform(rng, M * r, 1), null);
        LoraWeights a1 = new LoraWeights(r, K, M, Fixtures.uniform(rng, r * K, 1), Fixtures.uniform(rng, M * r, 1), null);
        LoraWeights conv = Pissa.convert(a1, a0);
        assertEquals(2 * r, conv.r());
        // B'·A' = B·A − B0·A0
        double[] expect = Fixtures.matmulT(a1.b(), transpose(a1.a(), r, K), M, r, K);
        double[] init = Fixtures.matmulT(a0.b(), transpose(a0.a(), r, K), M, r, K);
        for (int i = 0; i < expect.length; i++) expect[i] -= init[i];
        assertClose("B'·A'", expect, Fixtures.matmulT(conv.b(), transpose(conv.a(), 2 * r, K), M, 2 * r, K), 1e-12, 0);

        LoraConfig lc = new LoraConfig(8, 16, 0, List.of("q_proj"), false, false, LoraConfig.Init.PISSA,
                "none", false, null, Map.of("q_proj", 4), Map.of(), null, 16);
        assertEquals("pissa_niter_16", lc.initPeftValue());
        LoraConfig cc = Pissa.convertConfig(lc);
        assertEquals(16, cc.r());
        assertEquals(Boolean.TRUE, cc.initPeftValue());
        assertEquals(lc.scaling(), cc.scaling(), 0);
        assertEquals(lc.scaling("model.layers.0.self_attn.q_proj"), cc.scaling("model.layers.0.self_attn.q_proj"), 0);
        LoraConfig rs = new LoraConfig(8, 16, 0, List.of("q_proj"), true, false, LoraConfig.Init.PISSA,
                "none", false, null, Map.of(), Map.of(), null, -1);
        assertEquals("pissa", rs.initPeftValue());
        assertEquals(rs.scaling(), Pissa.convertConfig(rs).scaling(), 1e-12);
    }

    @Test
    void badArgumentsAreClearErrors() {
        float[] w = new float[12];
        var e = assertThrows(ConfigException.class, () -> Pissa.init(w, new float[20], new float[15], 1f, 3, 4, 5, -1, new SplittableRandom(1)));
        assertTrue(e.getMessage().contains("rank 5"), e.getMessage());
        e = assertThrows(ConfigException.class, () -> Pissa.svd(w, 3, 4, 2, -2, new SplittableRandom(1)));
        assertTrue(e.getMessage().contains("pissa_iter"), e.getMessage());
        e = assertThrows(ConfigException.class, () -> LoraLinear.init(new float[8], new float[6], LoraConfig.Init.PISSA, new SplittableRandom(1), 4, 3, 2));
        assertTrue(e.getMessage().contains("Pissa.init"), e.getMessage());
    }

    static float[] transpose(float[] x, int rows, int cols) {
        float[] t = new float[rows * cols];
        for (int i = 0; i < rows; i++) for (int j = 0; j < cols; j++) t[j * rows + i] = x[i * cols + j];
        return t;
    }
}
