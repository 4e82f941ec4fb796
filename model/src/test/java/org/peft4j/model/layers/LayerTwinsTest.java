package org.peft4j.model.layers;

import org.junit.jupiter.api.Test;
import org.peft4j.core.Gemm;
import org.peft4j.core.Parallel;
import org.peft4j.core.kernels.OpenBlasGemm;
import org.peft4j.core.kernels.VectorGemm;

import java.util.List;

import java.util.SplittableRandom;

import static org.peft4j.testkit.Assert.assertClose;

/// Each fast layer kernel against its scalar twin, at sizes that leave vector tails (1, 7, 31, 33, 4097 elements, and
/// sequence lengths that cross the attention row block), on one and two threads.
class LayerTwinsTest {
    /// Fast kernels reorder float sums (vector lanes, blocked GEMM) and use the vector exp (within 1 ulp here):
    /// a few ulp of the largest term of a sum of ~100 terms.
    static final double ATOL = 2e-5, RTOL = 2e-5;
    static final int[] LENGTHS = {1, 7, 31, 33, 4097};

    static float[] rand(SplittableRandom rng, int n, double range) {
        float[] a = new float[n];
        for (int i = 0; i < n; i++) a[i] = (float) rng.nextDouble(-range, range);
        return a;
    }

    /// Scratch full of NaN: any entry read before it is written shows up in the result.
    private static float[] nanScratch(int n) {
        float[] s = new float[n];
        java.util.Arrays.fill(s, Float.NaN);
        return s;
    }

    @Test
    void attention() {
        int[][] shapes = {{1, 1, 2, 1, 8}, {1, 7, 3, 1, 16}, {2, 33, 4, 2, 8}, {1, 70, 9, 3, 64}, {2, 131, 2, 2, 7}};
        for (int threads : new int[] {1, 2}) {
            Parallel.setThreads(threads);
            for (int[] s : shapes) {
                int B = s[0], T = s[1], NH = s[2], KVH = s[3], HS = s[4];
                var rng = new SplittableRandom(T * 31L + HS);
                float[] q = rand(rng, B * T * NH * HS, 2), k = rand(rng, B * T * KVH * HS, 2), v = rand(rng, B * T * KVH * HS, 1);
                float[] dout = rand(rng, B * T * NH * HS, 1);
                float[] out1 = new float[q.length], out2 = new float[q.length];
                float[] att1 = new float[B * NH * T * T], att2 = new float[B * NH * T * T];
                java.util.Arrays.fill(att2, Float.NaN);                      // the fast path must write every entry
                Attention.forwardScalar(out1, att1, q, k, v, B, T, T, NH, KVH, HS, 0);
                Attention.forward(out2, att2, q, k, v, B, T, T, NH, KVH, HS, 0);
                String what = "B=" + B + " T=" + T + " NH=" + NH + " KVH=" + KVH + " HS=" + HS + " threads=" + threads;
                assertClose("attention out " + what, out1, out2, ATOL, RTOL);
                assertClose("attention att " + what, att1, att2, ATOL, RTOL);
                float[] dq1 = rand(rng, q.length, 1), dk1 = rand(rng, k.length, 1), dv1 = rand(rng, v.length, 1);
                float[] dq2 = dq1.clone(), dk2 = dk1.clone(), dv2 = dv1.clone();   // (backward overwrites att: pass copies)
                Attention.backwardScalar(dq1, dk1, dv1, dout, att1, q, k, v, B, T, NH, KVH, HS);
                Attention.backward(dq2, dk2, dv2, dout, att1.clone(), q, k, v, B, T, NH, KVH, HS,
                        nanScratch(Attention.backwardScratchSize(B, T, NH, HS)));
                assertClose("attention dq " + what, dq1, dq2, ATOL, RTOL);
                assertClose("attention dk " + what, dk1, dk2, ATOL, RTOL);
                assertClose("attention dv " + what, dv1, dv2, ATOL, RTOL);
                // the blocks on a given GEMM (single-threaded inside the tasks): the same numbers up to GEMM summation order
                for (Gemm g : OpenBlasGemm.available() ? List.of(VectorGemm.INSTANCE, OpenBlasGemm.INSTANCE) : List.of((Gemm) VectorGemm.INSTANCE)) {
                    float[] out3 = new float[q.length], att3 = new float[att1.length];
                    java.util.Arrays.fill(att3, Float.NaN);
                    Attention.forward(g, out3, att3, q, k, v, B, T, T, NH, KVH, HS, 0);
                    assertClose("attention out " + g.name() + " " + what, out1, out3, ATOL, RTOL);
                    assertClose("attention att " + g.name() + " " + what, att1, att3, ATOL, RTOL);
                    float[] dq3 = dq2.clone(), dk3 = dk2.clone(), dv3 = dv2.clone();
                    Attention.backward(g, dq3, dk3, dv3, dout, att1.clone(), q, k, v, B, T, NH, KVH, HS,
                            nanScratch(Attention.backwardScratchSize(B, T, NH, HS)));
                    Attention.backward(null, dq2, dk2, dv2, dout, att1.clone(), q, k, v, B, T, NH, KVH, HS,
                            nanScratch(Attention.backwardScratchSize(B, T, NH, HS)));
                    assertClose("attention dq " + g.name() + " " + what, dq2, dq3, ATOL, RTOL);
                    assertClose("attention dk " + g.name() + " " + what, dk2, dk3, ATOL, RTOL);
                    assertClose("attention dv " + g.name() + " " + what, dv2, dv3, ATOL, RTOL);
                }
            }
        }
        Parallel.setThreads(Runtime.getRuntime().availableProcessors());
    }

    /// Inference layout: T new queries at absolute positions pos0.. over a cache of capacity Tcap.
    @Test
    void attentionWithCache() {
        int B = 2, NH = 4, KVH = 2, HS = 16, Tcap = 40;
        for (int[] tp : new int[][] {{1, 0}, {1, 17}, {5, 20}, {35, 5}}) {
            int T = tp[0], pos0 = tp[1];
            var rng = new SplittableRandom(T + pos0);
            float[] q = rand(rng, B * T * NH * HS, 2), k = rand(rng, B * Tcap * KVH * HS, 2), v = rand(rng, B * Tcap * KVH * HS, 1);
            float[] out1 = new float[q.length], out2 = new float[q.length];
            float[] att1 = new float[B * NH * T * Tcap], att2 = new float[B * NH * T * Tcap];
            java.util.Arrays.fill(att2, Float.NaN);
            Attention.forwardScalar(out1, att1, q, k, v, B, T, Tcap, NH, KVH, HS, pos0);
            Attention.forward(out2, att2, q, k, v, B, T, Tcap, NH, KVH, HS, pos0);
            assertClose("attention out T=" + T + " pos0=" + pos0, out1, out2, ATOL, RTOL);
            assertClose("attention att T=" + T + " pos0=" + pos0, att1, att2, ATOL, RTOL);
        }
    }

    /// Decode over a float16 cache ([Attention#decodeHalf]: the halves converted a block of keys at a time, the value
    /// chains carried from block to block) gets the bits of [Attention#decodeHead] over the halves' float values, on 1
    /// and 3 threads, for key counts below, at and across the block size, 1 to 4 heads a group; it declines (false,
    /// nothing written) a head size it does not take and a scratch too small. So does the float32 cache's split over
    /// key blocks and heads ([Attention#decodeSplit]), called directly and through [Attention#forwardInference], on 1
    /// to 3 threads.
    @Test
    void decodeOverFloat16HalvesHasTheBitsOfDecodeByHead() {
        int saved = Parallel.threads();
        try {
            for (int threads : new int[] {1, 3})
                for (int[] c : new int[][] {{9, 3, 64}, {6, 2, 64}, {8, 4, 64}, {4, 4, 64}, {8, 2, 128}})
                    for (int pos0 : new int[] {0, 5, Attention.HALF_KEYS - 1, Attention.HALF_KEYS, 2 * Attention.HALF_KEYS + 7}) {
                        Parallel.setThreads(threads);
                        int NH = c[0], KVH = c[1], HS = c[2], Tcap = pos0 + 3, kvDim = KVH * HS;
                        var rng = new SplittableRandom(NH * 131L + pos0 + HS);
                        float[] q = rand(rng, NH * HS, 2), kf = rand(rng, Tcap * kvDim, 2), vf = rand(rng, Tcap * kvDim, 1);
                        short[] kh = new short[kf.length], vh = new short[vf.length];
                        for (int i = 0; i < kf.length; i++) {
                            kh[i] = Float.floatToFloat16(kf[i]); kf[i] = Float.float16ToFloat(kh[i]);
                            vh[i] = Float.floatToFloat16(vf[i]); vf[i] = Float.float16ToFloat(vh[i]);
                        }
                        String what = "NH=" + NH + " KVH=" + KVH + " HS=" + HS + " keys=" + (pos0 + 1) + " threads=" + threads;
                        float[] byHead = new float[q.length], half = new float[q.length];
                        java.util.Arrays.fill(half, Float.NaN);
                        for (int h = 0; h < NH; h++) Attention.decodeHead(h, byHead, nanScratch(Tcap), 0, q, kf, vf, Tcap, NH, KVH, HS, pos0);
                        org.junit.jupiter.api.Assertions.assertTrue(Attention.decodeHalf(half, q, kh, vh, Tcap, NH, KVH, HS, pos0,
                                nanScratch(Attention.halfScratchSize(Tcap, NH, KVH, HS, threads))), what);
                        org.junit.jupiter.api.Assertions.assertArrayEquals(byHead, half, "decodeHalf vs decodeHead over the halves' values, " + what);
                    }
            // the float32 cache's split over key blocks and heads (several threads, groups that do not split evenly)
            for (int threads : new int[] {1, 2, 3})
                for (int[] c : new int[][] {{9, 3, 64}, {6, 2, 64}, {8, 4, 64}, {8, 2, 128}})
                    for (int pos0 : new int[] {0, Attention.HALF_KEYS, 2 * Attention.HALF_KEYS + 7}) {
                        Parallel.setThreads(threads);
                        int NH = c[0], KVH = c[1], HS = c[2], Tcap = pos0 + 3;
                        var rng = new SplittableRandom(NH * 71L + pos0 + HS);
                        float[] q = rand(rng, NH * HS, 2), k = rand(rng, Tcap * KVH * HS, 2), v = rand(rng, Tcap * KVH * HS, 1);
                        String what = "NH=" + NH + " KVH=" + KVH + " HS=" + HS + " keys=" + (pos0 + 1) + " threads=" + threads;
                        float[] byHead = new float[q.length], split = new float[q.length], through = new float[q.length];
                        java.util.Arrays.fill(split, Float.NaN);
                        for (int h = 0; h < NH; h++) Attention.decodeHead(h, byHead, nanScratch(Tcap), 0, q, k, v, Tcap, NH, KVH, HS, pos0);
                        org.junit.jupiter.api.Assertions.assertTrue(Attention.decodeSplit(split, q, k, v, Tcap, NH, KVH, HS, pos0, nanScratch(NH * Tcap)), what);
                        org.junit.jupiter.api.Assertions.assertArrayEquals(byHead, split, "decodeSplit vs decodeHead, " + what);
                        Attention.forwardInference(null, through, q, k, v, 1, 1, Tcap, NH, KVH, HS, pos0, nanScratch(Attention.inferenceScratchSize(1, Tcap, threads)));
                        org.junit.jupiter.api.Assertions.assertArrayEquals(byHead, through, "forwardInference, " + what);
                    }
            float[] out = new float[8 * 72];
            org.junit.jupiter.api.Assertions.assertFalse(Attention.decodeHalf(out, out, new short[72 * 10], new short[72 * 10], 10, 8, 1, 72, 3,
                    new float[Attention.halfScratchSize(10, 8, 1, 72, 1)]), "head size 72");
            org.junit.jupiter.api.Assertions.assertFalse(Attention.decodeHalf(out, out, new short[64 * 10], new short[64 * 10], 10, 8, 1, 64, 3,
                    new float[Attention.halfScratchSize(10, 8, 1, 64, 1) - 1]), "scratch one float short");
            org.junit.jupiter.api.Assertions.assertArrayEquals(new float[8 * 72], out, "a declined call wrote nothing");
        } finally {
            Parallel.setThreads(saved);
        }
    }

    /// Decode by KV group ([Attention#decodeGroup], the heads of a group reading each key and value row once) and by
    /// row ([Attention#decodeRow], every head in one pass over the keys) get the bits of [Attention#decodeHead] head
    /// by head: called directly, and through [Attention#forwardInference]
    /// with scratch for a group (grouped) against scratch for one head (head by head), on 1 and 3 threads; head sizes
    /// 64 and 128 (whole blocks of four vector chunks), 72 (head by head inside the group), 1 to 4 heads a group.
    @Test
    void decodeByGroupHasTheBitsOfDecodeByHead() {
        int saved = Parallel.threads();
        try {
            for (int threads : new int[] {1, 3})
                for (int[] c : new int[][] {{6, 2, 64, 1}, {9, 3, 64, 2}, {8, 2, 128, 1}, {4, 4, 64, 2}, {6, 3, 72, 1}, {8, 4, 64, 3}}) {
                    Parallel.setThreads(threads);
                    int NH = c[0], KVH = c[1], HS = c[2], B = c[3], Tcap = 70, pos0 = 57, G = NH / KVH;
                    var rng = new SplittableRandom(NH * 31L + HS + B);
                    float[] q = rand(rng, B * NH * HS, 2), k = rand(rng, B * Tcap * KVH * HS, 2), v = rand(rng, B * Tcap * KVH * HS, 1);
                    String what = "NH=" + NH + " KVH=" + KVH + " HS=" + HS + " B=" + B + " threads=" + threads;
                    float[] byHead = new float[q.length], byGroup = new float[q.length];
                    for (int bh = 0; bh < B * NH; bh++) Attention.decodeHead(bh, byHead, nanScratch(Tcap), 0, q, k, v, Tcap, NH, KVH, HS, pos0);
                    for (int bg = 0; bg < B * KVH; bg++) Attention.decodeGroup(bg, byGroup, nanScratch(G * Tcap), 0, q, k, v, Tcap, NH, KVH, HS, pos0);
                    org.junit.jupiter.api.Assertions.assertArrayEquals(byHead, byGroup, "decodeGroup vs decodeHead, " + what);
                    if (HS % (4 * jdk.incubator.vector.FloatVector.SPECIES_PREFERRED.length()) == 0 && G <= 4) {   // every head of a row at once
                        float[] byRow = new float[q.length];
                        for (int b = 0; b < B; b++) Attention.decodeRow(b, byRow, nanScratch(NH * Tcap), 0, q, k, v, Tcap, NH, KVH, HS, pos0);
                        org.junit.jupiter.api.Assertions.assertArrayEquals(byHead, byRow, "decodeRow vs decodeHead, " + what);
                    }
                    // one stream on one thread, a cache past ROW_KEYS and room for every head: decodeRow
                    int longCap = Attention.ROW_KEYS + 3, longPos = Attention.ROW_KEYS + 1;
                    float[] kl = rand(rng, B * longCap * KVH * HS, 2), vl = rand(rng, B * longCap * KVH * HS, 1);
                    float[] longHead = new float[q.length], rowPath = new float[q.length];
                    for (int bh = 0; bh < B * NH; bh++) Attention.decodeHead(bh, longHead, nanScratch(longCap), 0, q, kl, vl, longCap, NH, KVH, HS, longPos);
                    Attention.forwardInference(null, rowPath, q, kl, vl, B, 1, longCap, NH, KVH, HS, longPos, nanScratch(threads * NH * longCap));
                    org.junit.jupiter.api.Assertions.assertArrayEquals(longHead, rowPath, "forwardInference over " + (longPos + 1) + " keys with scratch for every head, " + what);
                    float[] small = new float[q.length], large = new float[q.length];
                    Attention.forwardInference(null, small, q, k, v, B, 1, Tcap, NH, KVH, HS, pos0, nanScratch(Tcap));
                    Attention.forwardInference(null, large, q, k, v, B, 1, Tcap, NH, KVH, HS, pos0, nanScratch(threads * G * Tcap));
                    org.junit.jupiter.api.Assertions.assertArrayEquals(byHead, small, "forwardInference head by head, " + what);
                    org.junit.jupiter.api.Assertions.assertArrayEquals(byHead, large, "forwardInference by group, " + what);
                    float[] ref = new float[q.length];
                    Attention.forwardScalar(ref, null, q, k, v, B, 1, Tcap, NH, KVH, HS, pos0);
                    assertClose("decode by group vs the scalar twin, " + what, ref, byGroup, ATOL, RTOL);
                }
        } finally {
            Parallel.setThreads(saved);
        }
    }

    /// The inference forward (a probability block per thread in scratch, any length): the bits of [Attention#forward]
    /// with its full buffer for T > 1, decode (T = 1) within rounding of it and with the same bits on any split and
    /// alone or in a batch, on 1 and 3 threads, with scratch for one block only and for every thread, prompts that
    /// cross the row block, a cache with earlier positions, GQA; and the scalar twin within tolerance.
    @Test
    void attentionInferenceBlocksEqualTheFullBuffer() {
        int saved = Parallel.threads();
        try {
            int NH = 6, KVH = 2;
            for (int threads : new int[] {1, 3}) {
                Parallel.setThreads(threads);
                // head sizes 16, and for decode 72 (four vector chunks and a tail) and 8 (below a vector)
                for (int[] c : new int[][] {{1, 1, 0, 1, 16}, {2, 1, 37, 40, 16}, {2, 1, 99, 130, 72}, {2, 1, 20, 30, 8}, {1, 200, 0, 200, 16},
                                            {2, 131, 9, 150, 16}, {1, 64, 64, 130, 16}}) {
                    int B = c[0], T = c[1], pos0 = c[2], Tcap = c[3], HS = c[4];
                    var rng = new SplittableRandom(T * 7L + pos0);
                    float[] q = rand(rng, B * T * NH * HS, 2), k = rand(rng, B * Tcap * KVH * HS, 2), v = rand(rng, B * Tcap * KVH * HS, 1);
                    float[] ref = new float[q.length], scalar = new float[q.length];
                    Attention.forward(null, ref, new float[B * NH * T * Tcap], q, k, v, B, T, Tcap, NH, KVH, HS, pos0);
                    Attention.forwardScalar(scalar, null, q, k, v, B, T, Tcap, NH, KVH, HS, pos0);
                    String what = "B=" + B + " T=" + T + " pos0=" + pos0 + " Tcap=" + Tcap + " HS=" + HS + " threads=" + threads;
                    assertClose("inference attention vs scalar " + what, scalar, ref, ATOL, RTOL);
                    float[] first = null;
                    for (int blocks : new int[] {1, threads}) {
                        float[] out = new float[q.length];
                        java.util.Arrays.fill(out, Float.NaN);
                        Attention.forwardInference(null, out, q, k, v, B, T, Tcap, NH, KVH, HS, pos0,
                                nanScratch(Attention.inferenceScratchSize(T, Tcap, blocks)));
                        if (T > 1) org.junit.jupiter.api.Assertions.assertArrayEquals(ref, out, "blocks in scratch vs the full buffer, " + blocks + " block(s), " + what);
                        else {   // decode's own kernel: within rounding of the blocked path, and the same bits on any split
                            assertClose("decode attention vs the full buffer " + what, ref, out, ATOL, RTOL);
                            if (first == null) first = out;
                            else org.junit.jupiter.api.Assertions.assertArrayEquals(first, out, "decode attention, 1 vs " + blocks + " block(s), " + what);
                        }
                    }
                    if (T == 1 && B == 2) {   // row 1 alone (its own q, cache and output) gets the bits it got in the batch
                        int qd = NH * HS, kd = Tcap * KVH * HS;
                        float[] one = new float[qd];
                        Attention.forwardInference(null, one, java.util.Arrays.copyOfRange(q, qd, 2 * qd), java.util.Arrays.copyOfRange(k, kd, 2 * kd),
                                java.util.Arrays.copyOfRange(v, kd, 2 * kd), 1, 1, Tcap, NH, KVH, HS, pos0, nanScratch(Attention.inferenceScratchSize(1, Tcap, 1)));
                        org.junit.jupiter.api.Assertions.assertArrayEquals(java.util.Arrays.copyOfRange(first, qd, 2 * qd), one, "decode attention, row 1 alone vs in the batch, " + what);
                    }
                }
            }
            var e = org.junit.jupiter.api.Assertions.assertThrows(IllegalArgumentException.class, () -> Attention.forwardInference(null,
                    new float[16], new float[16], new float[16], new float[16], 1, 1, 1, 1, 1, 16, 0, new float[0]));
            org.junit.jupiter.api.Assertions.assertTrue(e.getMessage().contains("needs a block of 1"), e.getMessage());
        } finally {
            Parallel.setThreads(saved);
        }
    }

    @Test
    void swiGlu() {
        for (int threads : new int[] {1, 2}) {
            Parallel.setThreads(threads);
            for (int n : new int[] {1, 7, 31, 33, 4097, 40000}) {
                var rng = new SplittableRandom(n);
                float[] gate = rand(rng, n, 12), up = rand(rng, n, 2), dout = rand(rng, n, 1);
                float[] o1 = new float[n], o2 = new float[n];
                SwiGlu.forwardScalar(o1, gate, up, n);
                SwiGlu.forward(o2, gate, up, n);
                assertClose("swiglu out n=" + n, o1, o2, ATOL, RTOL);
                float[] dg1 = rand(rng, n, 1), du1 = rand(rng, n, 1), dg2 = dg1.clone(), du2 = du1.clone();
                SwiGlu.backwardScalar(dg1, du1, dout, gate, up, n);
                SwiGlu.backward(dg2, du2, dout, gate, up, n);
                assertClose("swiglu dgate n=" + n, dg1, dg2, ATOL, RTOL);
                assertClose("swiglu dup n=" + n, du1, du2, ATOL, RTOL);
            }
        }
        Parallel.setThreads(Runtime.getRuntime().availableProcessors());
    }

    /// The cold-start path of SwiGLU's forward (every element through the tail loop, [org.peft4j.core.kernels.ColdStart])
    /// gives the vector path's bits, saturating gates (exp over- and underflow), ±0, ±∞ and NaN included; and it
    /// computes (a changed gate changes the output).
    @Test
    void swiGluColdStartGivesTheVectorBits() {
        for (int n : new int[] {1, 15, 16, 17, 100, 4099}) {
            var rng = new SplittableRandom(n + 1);
            float[] gate = rand(rng, n, 40), up = rand(rng, n, 2);
            float[] special = {0f, -0f, 95f, -95f, Float.POSITIVE_INFINITY, Float.NEGATIVE_INFINITY, Float.NaN, 1e-30f};
            for (int i = 0; i < Math.min(n, special.length); i++) gate[(i * 7) % n] = special[i];
            float[] vec = new float[n], cold = new float[n];
            SwiGlu.forwardRange(false, vec, gate, up, 0, n);
            SwiGlu.forwardRange(true, cold, gate, up, 0, n);
            for (int i = 0; i < n; i++)
                org.junit.jupiter.api.Assertions.assertEquals(Float.floatToRawIntBits(vec[i]), Float.floatToRawIntBits(cold[i]),
                        "n=" + n + " gate " + gate[i] + ": vector " + vec[i] + ", cold " + cold[i]);
            gate[n - 1] += 1f;
            float[] changed = new float[n];
            SwiGlu.forwardRange(true, changed, gate, up, 0, n);
            org.junit.jupiter.api.Assertions.assertNotEquals(cold[n - 1], changed[n - 1], "n=" + n + ": a changed gate must change the output");
        }
    }

    /// The cold-start path of a prompt's attention blocks (scores, softmax and P·v on their scalar twins, [Attention]'s
    /// gate) gives the vector path's bits (the Java GEMM's for the scores): one and several 64-row blocks, a last
    /// block of one row (the GEMM's own path), a head as deep as one GEMM depth block, a cache with earlier positions (pos0 > 0),
    /// grouped heads, head sizes with and without a vector tail, one and three threads; and it computes (a changed
    /// value changes the output).
    @Test
    void attentionColdStartGivesTheVectorBits() {
        int saved = org.peft4j.core.Parallel.threads();
        try {
            for (int threads : new int[] {1, 3})
                for (int[] c : new int[][] {{5, 0, 64}, {70, 0, 64}, {65, 3, 64}, {9, 30, 20}, {130, 7, 8}, {3, 0, 256}}) {
                    org.peft4j.core.Parallel.setThreads(threads);
                    int T = c[0], pos0 = c[1], HS = c[2], NH = 6, KVH = 2, B = 2, Tcap = pos0 + T + 3;
                    var rng = new SplittableRandom(T * 31L + HS);
                    float[] q = rand(rng, B * T * NH * HS, 1), k = rand(rng, B * Tcap * KVH * HS, 1), v = rand(rng, B * Tcap * KVH * HS, 1);
                    float[] vec = new float[B * T * NH * HS], cold = new float[vec.length];
                    float[] scratch = new float[Attention.inferenceScratchSize(T, Tcap, threads)];
                    var gemm = org.peft4j.core.kernels.VectorGemm.INSTANCE;
                    Attention.forwardInference(false, gemm, vec, q, k, v, B, T, Tcap, NH, KVH, HS, pos0, scratch);
                    Attention.forwardInference(true, gemm, cold, q, k, v, B, T, Tcap, NH, KVH, HS, pos0, scratch);
                    String what = "T=" + T + " pos0=" + pos0 + " HS=" + HS + " threads=" + threads;
                    for (int i = 0; i < vec.length; i++)
                        org.junit.jupiter.api.Assertions.assertEquals(Float.floatToRawIntBits(vec[i]), Float.floatToRawIntBits(cold[i]),
                                what + " [" + i + "]: vector " + vec[i] + ", cold " + cold[i]);
                    v[0] += 1f;   // key 0's value: every query attends to it
                    float[] changed = new float[vec.length];
                    Attention.forwardInference(true, gemm, changed, q, k, v, B, T, Tcap, NH, KVH, HS, pos0, scratch);
                    org.junit.jupiter.api.Assertions.assertNotEquals(cold[0], changed[0], what + ": a changed value must change the output");
                }
        } finally {
            org.peft4j.core.Parallel.setThreads(saved);
        }
    }

    /// The float-exp fast path against the double-exp twin; lse to 1e-5 (see CrossEntropy.forward), probabilities
    /// to 1e-6 absolute after scaling by 1/N.
    @Test
    void crossEntropy() {
        for (int V : new int[] {1, 7, 31, 33, 4097, 49152}) {
            int N = 6;
            var rng = new SplittableRandom(V);
            float[] logits = rand(rng, N * V, 20);
            logits[3 * V] = 3000f;                                            // a huge logit: stability
            int[] targets = {0, CrossEntropy.IGNORE, V - 1, V / 2, 0, V / 3};
            double[] lse1 = new double[N], lse2 = new double[N];
            float[] l1 = new float[N], l2 = new float[N];
            double t1 = CrossEntropy.forwardScalar(l1, lse1, logits, targets, N, V);
            double t2 = CrossEntropy.forward(l2, lse2, logits, targets, N, V);
            for (int n = 0; n < N; n++)
                if (targets[n] != CrossEntropy.IGNORE && Math.abs(lse1[n] - lse2[n]) > 1e-5 * Math.max(1, Math.abs(lse1[n])))
                    throw new AssertionError("lse row " + n + " V=" + V + ": scalar " + lse1[n] + " fast " + lse2[n]);
            if (Math.abs(t1 - t2) > 1e-4) throw new AssertionError("loss V=" + V + ": scalar " + t1 + " fast " + t2);
            float[] d1 = rand(rng, N * V, 1), d2 = d1.clone();
            CrossEntropy.backwardScalar(d1, logits, lse1, targets, N, V, 1f / N);
            CrossEntropy.backward(d2, logits, lse1, targets, N, V, 1f / N);
            assertClose("ce dlogits V=" + V, d1, d2, 1e-6, 1e-5);
            float[] p1 = logits.clone(), p2 = logits.clone();                  // in place
            CrossEntropy.backwardScalar(p1, p1, lse1, targets, N, V, 1f / N);
            CrossEntropy.backward(p2, p2, lse1, targets, N, V, 1f / N);
            assertClose("ce in-place dlogits V=" + V, p1, p2, 1e-6, 1e-5);
        }
    }
}
