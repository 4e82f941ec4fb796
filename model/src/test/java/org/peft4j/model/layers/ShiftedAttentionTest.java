package org.peft4j.model.layers;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import org.junit.jupiter.api.Test;
import org.peft4j.core.Parallel;
import org.peft4j.core.Peft4jException.ConfigException;
import org.peft4j.testkit.Assert;

import java.io.InputStream;
import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.peft4j.testkit.Assert.assertClose;

/// LongLoRA's S²-Attn ([ShiftedAttention]) against numpy (`reference/shift_attn_reference.py` →
/// resources/layers/shift_attn.json: LongLoRA's roll / reshape / per-group causal softmax / roll back, float64, and
/// gradients by central differences), its fast path against its scalar twin (its finite-difference line is in GradCheckTest).
class ShiftedAttentionTest {
    /// float32 attention over ≤ 6 keys of 4-wide heads against float64: a few ulp of values of order 1.
    static final double NUMPY_ATOL = 2e-5, NUMPY_RTOL = 2e-5;
    /// Fast (blocked GEMMs, vector exp) against scalar loops: as LayerTwinsTest's attention.
    static final double TWIN_ATOL = 2e-5, TWIN_RTOL = 2e-5;

    static JsonNode cases() throws Exception {
        try (InputStream in = ShiftedAttentionTest.class.getResourceAsStream("/layers/shift_attn.json")) {
            assertNotNull(in, "resources/layers/shift_attn.json is missing; run python3 reference/shift_attn_reference.py");
            return new ObjectMapper().readTree(in).get("cases");
        }
    }

    static float[] floats(JsonNode a) {
        float[] f = new float[a.size()];
        for (int i = 0; i < f.length; i++) f[i] = (float) a.get(i).asDouble();
        return f;
    }

    static float[] rand(SplittableRandom rng, int n, double range) {
        float[] a = new float[n];
        for (int i = 0; i < n; i++) a[i] = (float) rng.nextDouble(-range, range);
        return a;
    }

    /// Runs the fast forward and backward; returns {out, dq, dk, dv}.
    static float[][] fast(float[] q, float[] k, float[] v, float[] dout, int B, int T, int NH, int KVH, int HS) {
        int[] n = ShiftedAttention.scratchSizes(B, T, NH, KVH, HS);
        float[] out = new float[q.length], att = new float[B * NH * T * (T / ShiftedAttention.GROUPS)];
        float[] qs = new float[n[0]], ys = new float[n[0]], ks = new float[n[1]], vs = new float[n[1]];
        ShiftedAttention.forward(null, out, att, q, k, v, qs, ks, vs, ys, B, T, NH, KVH, HS);
        float[] dq = new float[q.length], dk = new float[k.length], dv = new float[v.length];
        java.util.Arrays.fill(qs, Float.NaN);   // the scratch is rolled again in backward: stale values must not matter
        ShiftedAttention.backward(null, dq, dk, dv, dout, att, q, k, v, qs, ks, vs, ys, new float[n[0]], new float[n[1]], new float[n[1]],
                new float[Attention.backwardScratchSize(B, T, NH, HS)], B, T, NH, KVH, HS);
        return new float[][] {out, dq, dk, dv};
    }

    static float[][] scalar(float[] q, float[] k, float[] v, float[] dout, int B, int T, int NH, int KVH, int HS) {
        float[] out = new float[q.length], att = new float[B * NH * T * T];
        ShiftedAttention.forwardScalar(out, att, q, k, v, B, T, NH, KVH, HS);
        float[] dq = new float[q.length], dk = new float[k.length], dv = new float[v.length];
        ShiftedAttention.backwardScalar(dq, dk, dv, dout, att, q, k, v, B, T, NH, KVH, HS);
        return new float[][] {out, dq, dk, dv};
    }

    /// Both paths against LongLoRA's semantics in numpy: outputs and the gradients of Σ out·W; and the numpy
    /// full-causal output of the same inputs equals [Attention] (the reference's own unshifted path) while S² differs
    /// from it (the masks are not the causal one).
    @Test
    void matchesLongLoraReference() throws Exception {
        int n = 0;
        String[] names = {"out", "dq", "dk", "dv"};
        for (JsonNode c : cases()) {
            int B = c.get("B").asInt(), T = c.get("T").asInt(), NH = c.get("NH").asInt(), KVH = c.get("KVH").asInt(), HS = c.get("HS").asInt();
            float[] q = floats(c.get("q")), k = floats(c.get("k")), v = floats(c.get("v")), dout = floats(c.get("dout"));
            float[][] want = {floats(c.get("out")), floats(c.get("dq")), floats(c.get("dk")), floats(c.get("dv"))};
            float[][] f = fast(q, k, v, dout, B, T, NH, KVH, HS), s = scalar(q, k, v, dout, B, T, NH, KVH, HS);
            for (int i = 0; i < 4; i++) {
                assertClose(c.get("name").asText() + " fast " + names[i], want[i], f[i], NUMPY_ATOL, NUMPY_RTOL);
                assertClose(c.get("name").asText() + " scalar " + names[i], want[i], s[i], NUMPY_ATOL, NUMPY_RTOL);
            }
            float[] full = new float[q.length], fullWant = floats(c.get("full_causal_out"));
            Attention.forwardScalar(full, new float[B * NH * T * T], q, k, v, B, T, T, NH, KVH, HS, 0);
            assertClose(c.get("name").asText() + " numpy full causal vs Attention", fullWant, full, NUMPY_ATOL, NUMPY_RTOL);
            assertTrue(Assert.maxAbsDiff(fullWant, f[0]) > 0.05, c.get("name").asText() + ": S² must differ from full attention");
            n++;
        }
        assertEquals(3, n);
    }

    /// The fast path (rolls + blocked [Attention] on B·4 groups) against the scalar masked loops: groups longer than
    /// the row block (g = 66), odd head sizes, GQA with and without expansion, one and three threads.
    @Test
    void fastMatchesScalarTwin() {
        int saved = Parallel.threads();
        try {
            int[][] shapes = {{1, 8, 2, 1, 4}, {2, 40, 4, 2, 7}, {1, 48, 6, 2, 8}, {1, 48, 6, 3, 8}, {1, 264, 2, 1, 8}};
            for (int threads : new int[] {1, 3}) {
                Parallel.setThreads(threads);
                for (int[] sh : shapes) {
                    int B = sh[0], T = sh[1], NH = sh[2], KVH = sh[3], HS = sh[4];
                    var rng = new SplittableRandom(T * 13L + NH);
                    float[] q = rand(rng, B * T * NH * HS, 2), k = rand(rng, B * T * KVH * HS, 2), v = rand(rng, B * T * KVH * HS, 1);
                    float[] dout = rand(rng, q.length, 1);
                    float[][] f = fast(q, k, v, dout, B, T, NH, KVH, HS), s = scalar(q, k, v, dout, B, T, NH, KVH, HS);
                    String what = "B=" + B + " T=" + T + " NH=" + NH + " KVH=" + KVH + " HS=" + HS + " threads=" + threads;
                    assertClose("S2 out " + what, s[0], f[0], TWIN_ATOL, TWIN_RTOL);
                    assertClose("S2 dq " + what, s[1], f[1], TWIN_ATOL, TWIN_RTOL);
                    assertClose("S2 dk " + what, s[2], f[2], TWIN_ATOL, TWIN_RTOL);
                    assertClose("S2 dv " + what, s[3], f[3], TWIN_ATOL, TWIN_RTOL);
                }
            }
        } finally {
            Parallel.setThreads(saved);
        }
    }

    @Test
    void refusesLengthsItCannotSplit() {
        for (int T : new int[] {4, 12, 17, 30}) {
            var e = assertThrows(ConfigException.class, () -> ShiftedAttention.check(T));
            assertTrue(e.getMessage().contains("multiple of 8"), e.getMessage());
        }
        ShiftedAttention.check(8);
        ShiftedAttention.check(1024);
    }
}
