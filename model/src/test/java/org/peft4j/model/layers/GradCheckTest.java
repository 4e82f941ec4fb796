package org.peft4j.model.layers;

import org.junit.jupiter.api.Test;
import org.peft4j.core.Gemm;
import org.peft4j.core.kernels.ScalarGemm;
import org.peft4j.testkit.GradCheck;
import org.peft4j.testkit.GradCheck.Param;

import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/// One finite-difference line per layer op with a backward, a composite that chains five of them, and proof that
/// GradCheck rejects a wrong backward. Tolerances are GradCheck's (see its constants).
class GradCheckTest {
    static final Gemm GEMM = ScalarGemm.INSTANCE;

    static float[] rand(SplittableRandom rng, int n, double range) {
        float[] a = new float[n];
        for (int i = 0; i < n; i++) a[i] = (float) rng.nextDouble(-range, range);
        return a;
    }

    /// The worst element of a passing check, printed so the margin under GradCheck.TOLERANCE stays visible.
    static void log(GradCheck.Worst w) { System.out.println("gradcheck worst " + w); }

    static void add(float[] dst, float[] src) { for (int i = 0; i < dst.length; i++) dst[i] += src[i]; }

    @Test
    void embedding() {
        var rng = new SplittableRandom(1);
        int V = 7, C = 5, N = 6;
        int[] tokens = {3, 0, 3, 6, 1, 3};                       // token 3 repeats: its gradient rows must add
        float[] wte = rand(rng, V * C, 1), dwte = new float[V * C], out = new float[N * C];
        log(GradCheck.check("Embedding",
                () -> { Embedding.forward(out, tokens, wte, N, C); return out; },
                dout -> Embedding.backward(dwte, dout, tokens, N, C),
                new Param("wte", wte, dwte)));
    }

    @Test
    void rmsNorm() {
        var rng = new SplittableRandom(2);
        int N = 3, C = 8;
        float[] x = rand(rng, N * C, 2), w = rand(rng, C, 1.5), y = new float[N * C], rstd = new float[N];
        float[] dx = new float[N * C], dw = new float[C];
        log(GradCheck.check("RmsNorm",
                () -> { RmsNorm.forward(y, rstd, x, w, N, C, 1e-5f); return y; },
                dout -> RmsNorm.backward(dx, dw, dout, x, w, rstd, N, C),
                new Param("x", x, dx), new Param("w", w, dw)));
    }

    @Test
    void rope() {
        var rng = new SplittableRandom(3);
        int B = 2, T = 3, NH = 2, HS = 8, pos0 = 2;
        float[] cos = new float[(pos0 + T) * HS / 2], sin = new float[(pos0 + T) * HS / 2];
        Rope.tables(cos, sin, Rope.invFreq(HS, 10000), pos0 + T);
        float[] x = rand(rng, B * T * NH * HS, 1), y = new float[x.length], dx = new float[x.length], tmp = new float[x.length];
        log(GradCheck.check("Rope",
                () -> { System.arraycopy(x, 0, y, 0, x.length); Rope.forward(y, cos, sin, B, T, NH, HS, pos0); return y; },
                dout -> { System.arraycopy(dout, 0, tmp, 0, x.length); Rope.backward(tmp, cos, sin, B, T, NH, HS, pos0); add(dx, tmp); },
                new Param("x", x, dx)));
    }

    @Test
    void attentionGqa() {
        var rng = new SplittableRandom(4);
        int B = 2, T = 4, NH = 4, KVH = 2, HS = 4;
        float[] q = rand(rng, B * T * NH * HS, 2), k = rand(rng, B * T * KVH * HS, 2), v = rand(rng, B * T * KVH * HS, 1);
        float[] out = new float[q.length], att = new float[B * NH * T * T];
        float[] dq = new float[q.length], dk = new float[k.length], dv = new float[v.length];
        log(GradCheck.check("Attention",
                () -> { Attention.forward(out, att, q, k, v, B, T, T, NH, KVH, HS, 0); return out; },
                dout -> Attention.backward(dq, dk, dv, dout, att, q, k, v, B, T, NH, KVH, HS),
                new Param("q", q, dq), new Param("k", k, dk), new Param("v", v, dv)));
    }

    /// LongLoRA's S²-Attn on the blocked kernels, with k and v expanded per query head (NH 4, KVH 1).
    @Test
    void shiftedAttention() {
        var rng = new SplittableRandom(15);
        int B = 1, T = 16, NH = 4, KVH = 1, HS = 4;
        float[] q = rand(rng, B * T * NH * HS, 2), k = rand(rng, B * T * KVH * HS, 2), v = rand(rng, B * T * KVH * HS, 1);
        int[] n = ShiftedAttention.scratchSizes(B, T, NH, KVH, HS);
        float[] out = new float[q.length], att = new float[B * NH * T * T / ShiftedAttention.GROUPS];
        float[] qs = new float[n[0]], ys = new float[n[0]], ks = new float[n[1]], vs = new float[n[1]];
        float[] dqs = new float[n[0]], dks = new float[n[1]], dvs = new float[n[1]], scratch = new float[Attention.backwardScratchSize(B, T, NH, HS)];
        float[] dq = new float[q.length], dk = new float[k.length], dv = new float[v.length];
        log(GradCheck.check("ShiftedAttention",
                () -> { ShiftedAttention.forward(null, out, att, q, k, v, qs, ks, vs, ys, B, T, NH, KVH, HS); return out; },
                dout -> ShiftedAttention.backward(null, dq, dk, dv, dout, att, q, k, v, qs, ks, vs, ys, dqs, dks, dvs, scratch, B, T, NH, KVH, HS),
                new Param("q", q, dq), new Param("k", k, dk), new Param("v", v, dv)));
    }

    @Test
    void swiGlu() {
        var rng = new SplittableRandom(5);
        int n = 24;
        float[] gate = rand(rng, n, 4), up = rand(rng, n, 2), out = new float[n], dgate = new float[n], dup = new float[n];
        log(GradCheck.check("SwiGlu",
                () -> { SwiGlu.forward(out, gate, up, n); return out; },
                dout -> SwiGlu.backward(dgate, dup, dout, gate, up, n),
                new Param("gate", gate, dgate), new Param("up", up, dup)));
    }

    @Test
    void linear() {
        var rng = new SplittableRandom(6);
        int N = 3, K = 5, M = 4;
        float[] x = rand(rng, N * K, 1), w = rand(rng, M * K, 1), b = rand(rng, M, 1), y = new float[N * M];
        float[] dx = new float[x.length], dw = new float[w.length], db = new float[M];
        log(GradCheck.check("Linear",
                () -> { Linear.forward(GEMM, y, x, w, b, N, K, M); return y; },
                dout -> { Linear.backwardInput(GEMM, dx, dout, w, N, K, M); Linear.backwardWeight(GEMM, dw, db, dout, x, N, K, M); },
                new Param("x", x, dx), new Param("w", w, dw), new Param("bias", b, db)));
    }

    @Test
    void crossEntropyWithIgnoredTargets() {
        var rng = new SplittableRandom(7);
        int N = 6, V = 7;
        int[] targets = {2, CrossEntropy.IGNORE, 0, 6, CrossEntropy.IGNORE, 2};
        float scale = 1f / 4;                                     // mean over the 4 non-ignored targets
        double[] lse = new double[N];
        float[] logits = rand(rng, N * V, 3), dlogits = new float[N * V];
        log(GradCheck.checkScalar("CrossEntropy",
                () -> scale * CrossEntropy.forward(null, lse, logits, targets, N, V),
                () -> CrossEntropy.backward(dlogits, logits, lse, targets, N, V, scale),
                new Param("logits", logits, dlogits)));
    }

    /// x → RmsNorm → (gate, up) Linear → SwiGlu → Linear → CE: each backward line mirrors a forward line, and x's
    /// RmsNorm output feeds two Linears, so their input gradients must add.
    @Test
    void compositeMlpToLoss() {
        var rng = new SplittableRandom(8);
        int N = 4, C = 6, H = 5, V = 7;
        int[] targets = {1, 4, CrossEntropy.IGNORE, 6};
        float scale = 1f / 3;
        float[] x = rand(rng, N * C, 1), wn = rand(rng, C, 1.5), wg = rand(rng, H * C, 1), wu = rand(rng, H * C, 1), wd = rand(rng, V * H, 1);
        float[] h = new float[N * C], rstd = new float[N], g = new float[N * H], u = new float[N * H], a = new float[N * H];
        float[] logits = new float[N * V];
        double[] lse = new double[N];
        float[] dx = new float[x.length], dwn = new float[C], dwg = new float[wg.length], dwu = new float[wu.length], dwd = new float[wd.length];
        float[] dh = new float[h.length], dg = new float[g.length], du = new float[u.length], da = new float[a.length], dlogits = new float[logits.length];
        log(GradCheck.checkScalar("RmsNorm→Linear→SwiGlu→Linear→CrossEntropy",
                () -> {
                    RmsNorm.forward(h, rstd, x, wn, N, C, 1e-6f);
                    Linear.forward(GEMM, g, h, wg, null, N, C, H);
                    Linear.forward(GEMM, u, h, wu, null, N, C, H);
                    SwiGlu.forward(a, g, u, N * H);
                    Linear.forward(GEMM, logits, a, wd, null, N, H, V);
                    return scale * CrossEntropy.forward(null, lse, logits, targets, N, V);
                },
                () -> {
                    java.util.Arrays.fill(dlogits, 0f); java.util.Arrays.fill(da, 0f); java.util.Arrays.fill(dg, 0f);
                    java.util.Arrays.fill(du, 0f); java.util.Arrays.fill(dh, 0f);
                    CrossEntropy.backward(dlogits, logits, lse, targets, N, V, scale);
                    Linear.backwardInput(GEMM, da, dlogits, wd, N, H, V);
                    Linear.backwardWeight(GEMM, dwd, null, dlogits, a, N, H, V);
                    SwiGlu.backward(dg, du, da, g, u, N * H);
                    Linear.backwardInput(GEMM, dh, du, wu, N, C, H);
                    Linear.backwardWeight(GEMM, dwu, null, du, h, N, C, H);
                    Linear.backwardInput(GEMM, dh, dg, wg, N, C, H);
                    Linear.backwardWeight(GEMM, dwg, null, dg, h, N, C, H);
                    RmsNorm.backward(dx, dwn, dh, x, wn, rstd, N, C);
                },
                new Param("x", x, dx), new Param("normWeight", wn, dwn), new Param("gateProj", wg, dwg),
                new Param("upProj", wu, dwu), new Param("downProj", wd, dwd)));
    }

    /// A SwiGLU backward that forgets the σ'(g) term must be rejected: the check can fail.
    @Test
    void wrongBackwardIsCaught() {
        var rng = new SplittableRandom(9);
        int n = 24;
        float[] gate = rand(rng, n, 4), up = rand(rng, n, 2), out = new float[n], dgate = new float[n], dup = new float[n];
        AssertionError e = assertThrows(AssertionError.class, () -> GradCheck.check("SwiGlu (wrong)",
                () -> { SwiGlu.forward(out, gate, up, n); return out; },
                dout -> {
                    for (int i = 0; i < n; i++) {
                        float sig = 1f / (1f + (float) Math.exp(-gate[i]));
                        dup[i] += dout[i] * gate[i] * sig;
                        dgate[i] += dout[i] * up[i] * sig;                // missing (1 + g(1 − σ))
                    }
                },
                new Param("gate", gate, dgate), new Param("up", up, dup)));
        assertTrue(e.getMessage().contains("gate["), e.getMessage());
    }
}
