package org.peft4j.model.adapter.oft;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import org.junit.jupiter.api.Test;
import org.peft4j.core.Peft4jException.ConfigException;
import org.peft4j.testkit.Assert;

import java.io.InputStream;
import java.util.List;
import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.*;

/// OFT's rotation against numpy (`reference/oft_reference.py` → resources/oft/oft_forward.json: PEFT's Cayley-Neumann
/// rotations, the forward y = x_rot·Wᵀ + b on the rotated input, and the merged weight), the backward against central
/// differences, and PEFT's block-size resolution.
class OftRotationTest {

    static JsonNode cases() throws Exception {
        try (InputStream in = OftRotationTest.class.getResourceAsStream("/oft/oft_forward.json")) {
            assertNotNull(in, "resources/oft/oft_forward.json is missing; run python3 reference/oft_reference.py");
            return new ObjectMapper().readTree(in).get("cases");
        }
    }

    static float[] floats(JsonNode a) {
        float[] f = new float[a.size()];
        for (int i = 0; i < f.length; i++) f[i] = (float) a.get(i).asDouble();
        return f;
    }

    /// The rotations, the forward on the rotated input and the merged weight, each against numpy in float64; the
    /// float32 results agree to ~1e-7 relative (products of length ≤ 12), checked at 2e-6.
    @Test
    void matchesNumpyReference() throws Exception {
        int n = 0;
        for (JsonNode c : cases()) {
            int M = c.get("M").asInt(), K = c.get("K").asInt(), b = c.get("block_size").asInt(), N = c.get("N").asInt(), t = c.get("terms").asInt();
            int nb = K / b;
            float[] theta = floats(c.get("theta")), w = floats(c.get("w")), bias = floats(c.get("bias")), x = floats(c.get("x"));
            float[] rot = new float[nb * b * b];
            OftRotation.rotations(rot, theta, nb, b, t, new double[Math.max(t, 2) * b * b]);
            Assert.assertClose("rotations, case " + n, floats(c.get("rotations")), rot, 2e-6, 2e-6);
            float[] merged = new float[M * K];
            OftRotation.merge(merged, w, rot, M, K, b);
            Assert.assertClose("merged W·R_bdᵀ, case " + n, floats(c.get("merged")), merged, 2e-6, 2e-6);
            // y = x·W'ᵀ + b with the merged weight equals PEFT's base layer on the rotated input
            float[] y = new float[N * M];
            for (int i = 0; i < N; i++)
                for (int m = 0; m < M; m++) {
                    double s = bias[m];
                    for (int k = 0; k < K; k++) s += (double) x[i * K + k] * merged[m * K + k];
                    y[i * M + m] = (float) s;
                }
            Assert.assertClose("y on the rotated input, case " + n, floats(c.get("y")), y, 5e-6, 5e-6);
            n++;
        }
        assertEquals(4, n);
    }

    /// At theta = 0 the rotation is the identity (PEFT init_weights=True): W' = W exactly.
    @Test
    void identityAtInit() {
        int b = 4, K = 8, M = 3;
        float[] theta = new float[2 * OftRotation.elements(b)], rot = new float[2 * b * b], w = new float[M * K], out = new float[M * K];
        for (int i = 0; i < w.length; i++) w[i] = i * 0.37f - 2f;
        OftRotation.rotations(rot, theta, 2, b, 5, new double[5 * b * b]);
        OftRotation.merge(out, w, rot, M, K, b);
        assertArrayEquals(w, out);
    }

    /// dL/dtheta for L = Σ G⊙W'(theta) (any loss's gradient through W' has this form) against central differences in
    /// double precision on the same formula; the check fails for a 10% error (shown by scaling the analytic gradient).
    @Test
    void backwardMatchesFiniteDifferences() {
        for (int t : new int[] {5, 3, 2}) {
            int M = 5, K = 12, b = 4, nb = K / b, ne = OftRotation.elements(b);
            SplittableRandom r = new SplittableRandom(t);
            float[] theta = new float[nb * ne], w0 = new float[M * K], g = new float[M * K];
            for (int i = 0; i < theta.length; i++) theta[i] = (float) (r.nextGaussian() * 0.2);
            for (int i = 0; i < w0.length; i++) { w0[i] = (float) r.nextGaussian(); g[i] = (float) r.nextGaussian(); }
            float[] dTheta = new float[theta.length];
            double[] pw = new double[t * b * b], s1 = new double[b * b], s2 = new double[b * b], s3 = new double[b * b];
            OftRotation.backward(dTheta, g, w0, theta, M, K, b, t, pw, s1, s2, s3);
            double worst = 0;
            for (int i = 0; i < theta.length; i++) {
                float keep = theta[i];
                double h = 1e-3;
                theta[i] = (float) (keep + h); double lp = loss(theta, w0, g, M, K, b, t);
                theta[i] = (float) (keep - h); double lm = loss(theta, w0, g, M, K, b, t);
                theta[i] = keep;
                double num = (lp - lm) / (2 * h);
                worst = Math.max(worst, Math.abs(num - dTheta[i]) / Math.max(1e-3, Math.abs(num)));
            }
            assertTrue(worst < 2e-3, "terms " + t + ": worst relative error " + worst);
            // the same comparison rejects a gradient 10% off
            double off = 0;
            for (int i = 0; i < theta.length; i++) {
                float keep = theta[i];
                theta[i] = (float) (keep + 1e-3); double lp = loss(theta, w0, g, M, K, b, t);
                theta[i] = (float) (keep - 1e-3); double lm = loss(theta, w0, g, M, K, b, t);
                theta[i] = keep;
                double num = (lp - lm) / 2e-3;
                off = Math.max(off, Math.abs(num - 1.1 * dTheta[i]) / Math.max(1e-3, Math.abs(num)));
            }
            assertTrue(off > 2e-3, "a 10% wrong gradient passed");
        }
    }

    static double loss(float[] theta, float[] w0, float[] g, int M, int K, int b, int t) {
        int nb = K / b;
        float[] rot = new float[nb * b * b], w = new float[M * K];
        OftRotation.rotations(rot, theta, nb, b, t, new double[Math.max(t, 2) * b * b]);
        OftRotation.merge(w, w0, rot, M, K, b);
        double s = 0;
        for (int i = 0; i < w.length; i++) s += (double) g[i] * w[i];
        return s;
    }

    /// PEFT OFTLayer.update_layer / adjust_oft_parameters: a block size that does not divide the input width moves to
    /// the nearest divisor (the lower on a tie); oft_rank r gives in/r blocks; exactly one of the two must be set.
    @Test
    void blockResolutionFollowsPeft() {
        OftConfig bs = OftConfig.of(0, 32, List.of("q_proj"));
        assertArrayEquals(new int[] {2, 32}, bs.blocks(64));
        assertArrayEquals(new int[] {4, 43}, bs.blocks(172));   // divisors of 172: 4 (28 away) and 43 (11 away)
        assertArrayEquals(new int[] {1, 16}, bs.blocks(16));    // larger than the width: the width
        assertArrayEquals(new int[] {8, 8}, OftConfig.of(8, 0, List.of("q_proj")).blocks(64));
        assertEquals(4, OftConfig.adjust(12, 5));               // 4 and 6 both 1 away: the lower (5 - 4 <= 6 - 5)
        assertThrows(ConfigException.class, () -> OftConfig.of(8, 32, List.of("q_proj")));
        assertThrows(ConfigException.class, () -> OftConfig.of(0, 0, List.of("q_proj")));
        ConfigException e = assertThrows(ConfigException.class, () -> new OftConfig(0, 32, List.of("q_proj"), 0.1, 5));
        assertTrue(e.getMessage().contains("module_dropout"), e.getMessage());
    }
}
