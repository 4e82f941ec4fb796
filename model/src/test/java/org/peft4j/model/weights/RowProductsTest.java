package org.peft4j.model.weights;

import org.junit.jupiter.api.Test;
import org.peft4j.core.DType;
import org.peft4j.core.Parallel;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.Arrays;
import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.*;

/// The row path against its scalar twin (random shapes, vector tails in K, remainders of the 4-row groups and of the
/// input-row pairs), and the invariants the server relies on: a row's result does not depend on the batch it is in,
/// on its place there, or on the thread count; a BF16/F16 weight gives the bits of a float32 weight over its values.
class RowProductsTest {
    static final DType[] TYPES = {DType.F32, DType.BF16, DType.F16};

    record Case(DType type, float[] w, short[] h, float[] values) {}

    static Case weight(DType t, int M, int K, SplittableRandom rng) {
        float[] v = new float[M * K];
        short[] h = t == DType.F32 ? null : new short[M * K];
        for (int i = 0; i < v.length; i++) {
            float g = (float) rng.nextGaussian() * 0.1f;
            switch (t) {
                case BF16 -> { h[i] = DType.floatToBf16(g); v[i] = Float.intBitsToFloat(h[i] << 16); }
                case F16 -> { h[i] = Float.floatToFloat16(g); v[i] = Float.float16ToFloat(h[i]); }
                default -> v[i] = g;
            }
        }
        return new Case(t, t == DType.F32 ? v : null, h, v);
    }

    static void run(Case c, float[] y, float[] x, float[] bias, int N, int K, int M) {
        if (c.type == DType.F32) RowProducts.forward(y, x, c.w, bias, N, K, M);
        else RowProducts.forward(c.type, y, x, seg(c.h, N % 2 == 1), bias, N, K, M, new float[RowProducts.scratchSize(K, M)]);
    }

    /// 16-bit values as the kernels read them: little-endian, in native memory, at an odd address when `odd` (a
    /// safetensors tensor may start at any byte of its file's mapping); null for null.
    static MemorySegment seg(short[] h, boolean odd) {
        if (h == null) return null;
        if (!odd) return DenseHalf.segment(h);
        MemorySegment s = Arena.ofAuto().allocate(2L * h.length + 1, 64).asSlice(1);
        MemorySegment.copy(h, 0, s, DenseHalf.BITS, 0, h.length);
        return s;
    }

    static float[] gaussian(SplittableRandom rng, int n) {
        float[] a = new float[n];
        for (int i = 0; i < n; i++) a[i] = (float) rng.nextGaussian();
        return a;
    }

    /// Against the scalar twin: each y within 4·(K+1)·2⁻²⁴ of Σ|x·w| + |b| (two float sums of K products in different
    /// orders), and against a shifted weight row, which must fail that bound (the check can fail).
    @Test
    void matchesItsScalarTwinOnRandomShapesAndTails() {
        var rng = new SplittableRandom(11);
        int[] Ks = {1, 7, 31, 33, 64, 577, 4097};
        int[] Ms = {1, 3, 4, 5, 37, 70};
        int[] Ns = {1, 2, 3, 8, RowProducts.MAX_ROWS};
        for (DType t : TYPES)
            for (int K : Ks)
                for (int M : Ms) {
                    int N = Ns[rng.nextInt(Ns.length)];
                    Case c = weight(t, M, K, rng);
                    float[] x = gaussian(rng, N * K), bias = rng.nextBoolean() ? gaussian(rng, M) : null;
                    float[] y = new float[N * M], ref = new float[N * M];
                    run(c, y, x, bias, N, K, M);
                    RowProducts.forwardScalar(t, ref, x, c.w, seg(c.h, false), bias, N, K, M);
                    String what = t + " N=" + N + " K=" + K + " M=" + M;
                    for (int n = 0; n < N; n++)
                        for (int m = 0; m < M; m++) {
                            double abs = bias == null ? 0 : Math.abs(bias[m]);
                            for (int k = 0; k < K; k++) abs += Math.abs((double) x[n * K + k] * c.values[m * K + k]);
                            double bound = 4.0 * (K + 1) * 0x1p-24 * abs + Float.MIN_NORMAL;
                            float got = y[n * M + m], want = ref[n * M + m];
                            assertTrue(Math.abs(got - want) <= bound, what + ": y[" + n + ", " + m + "] = " + got + ", scalar twin " + want + ", bound " + bound);
                        }
                    if (M > 1 && K > 7 && K < 1000) {   // a wrong row (m+1's weights) is far outside the bound (at K = 4097 the worst-case bound is loose)
                        float wrong = ref[1], got = y[0];
                        double abs = 0;
                        for (int k = 0; k < K; k++) abs += Math.abs((double) x[k] * c.values[k]);
                        assertFalse(Math.abs(got - wrong) <= 4.0 * (K + 1) * 0x1p-24 * abs, what + ": the bound cannot tell row 0 (" + got
                                + ") from row 1 (" + wrong + "), bound " + 4.0 * (K + 1) * 0x1p-24 * abs);
                    }
                }
    }

    /// Every row alone equals the same row inside a batch of up to MAX_ROWS, bit for bit, for 1 and 3 threads; every
    /// batch has the bits of the lane-order twin over the weights' float values (float32: one chain; BF16 in registers
    /// and through the buffer, F16: four chains), and the two chain counts do give different bits.
    @Test
    void aRowGetsTheSameBitsWhateverTheBatchThreadsAndStoredType() {
        int saved = Parallel.threads();
        var rng = new SplittableRandom(12);
        int K = 577, M = 123, N = RowProducts.MAX_ROWS;
        try {
            float[] x = gaussian(rng, N * K), bias = gaussian(rng, M);
            float[] f32 = null;
            for (DType t : TYPES) {
                Case c = weight(t == DType.F32 ? DType.BF16 : t, M, K, new SplittableRandom(5));
                Case asF32 = new Case(DType.F32, c.values, null, c.values);
                Case run = t == DType.F32 ? asF32 : c;
                float[] ref = null;
                for (int threads : new int[]{1, 3}) {
                    Parallel.setThreads(threads);
                    float[] batch = new float[N * M];
                    run(run, batch, x, bias, N, K, M);
                    if (ref == null) ref = batch;
                    else assertArrayEquals(ref, batch, t + ": the batch differs between 1 and " + threads + " threads");
                    for (int n : new int[]{0, 1, 2, N - 1}) {
                        float[] one = new float[M];
                        run(run, one, Arrays.copyOfRange(x, n * K, (n + 1) * K), bias, 1, K, M);
                        assertArrayEquals(Arrays.copyOfRange(batch, n * M, (n + 1) * M), one, t + ": row " + n + " alone vs in a batch of " + N);
                        float[] three = new float[3 * M];   // the same row in the middle of an odd batch
                        float[] x3 = new float[3 * K];
                        System.arraycopy(x, ((n + 5) % N) * K, x3, 0, K);
                        System.arraycopy(x, n * K, x3, K, K);
                        System.arraycopy(x, ((n + 7) % N) * K, x3, 2 * K, K);
                        run(run, three, x3, bias, 3, K, M);
                        assertArrayEquals(one, Arrays.copyOfRange(three, M, 2 * M), t + ": row " + n + " as row 1 of 3");
                    }
                }
                float[] twin = new float[N * M];
                RowProducts.lanes(t == DType.F32, twin, x, c.values, 0, false, null, 0, bias, N, K, M, 0, M);
                assertArrayEquals(twin, ref, t + " vs the lane-order twin over its values");
                if (t == DType.F32) f32 = ref;
                else assertFalse(Arrays.equals(f32, ref), t + ": four chains gave the bits of one (the check cannot tell them apart)");
            }
            assertNotNull(f32);
        } finally {
            Parallel.setThreads(saved);
        }
    }

    /// The cold-start twin ([org.peft4j.core.kernels.ColdStart]) gives the vector path's bits: F32 weights (one chain,
    /// and four as in the float buffer) and BF16 weights,
    /// vector tails in K, the 4-row groups and single rows, input-row pairs and a single row, with and without bias;
    /// and it is not a copy of its input (a changed weight value changes the output).
    @Test
    void theColdStartTwinGivesTheVectorBits() {
        var rng = new SplittableRandom(13);
        for (DType t : new DType[]{DType.F32, DType.BF16})
          for (boolean one : t == DType.F32 ? new boolean[]{true, false} : new boolean[]{false})
            for (int K : new int[]{1, 15, 16, 17, 64, 100, 250, 577, 1536})
                for (int rows : new int[]{1, 3, 4, 9}) {
                    int N = 1 + rng.nextInt(5), M = rows + 2, m = 1;
                    Case c = weight(t, M, K, rng);
                    float[] x = gaussian(rng, N * K), bias = rng.nextBoolean() ? gaussian(rng, M) : null;
                    float[] vec = new float[N * M], cold = new float[N * M];
                    boolean bf16 = t == DType.BF16;
                    RowProducts.span(false, one, vec, x, c.w, m * K, bf16, seg(c.h, rows % 2 == 1), m * K, bias, N, K, M, m, rows);
                    RowProducts.span(true, one, cold, x, c.w, m * K, bf16, seg(c.h, rows % 2 == 0), m * K, bias, N, K, M, m, rows);
                    String what = t + (one ? " (one chain)" : "") + " N=" + N + " K=" + K + " rows=" + rows;
                    for (int i = 0; i < vec.length; i++)
                        assertEquals(Float.floatToRawIntBits(vec[i]), Float.floatToRawIntBits(cold[i]), what + ": y[" + i + "] vector " + vec[i] + ", cold " + cold[i]);
                    float[] ref = new float[N * M];
                    RowProducts.forwardScalar(t, ref, x, c.w, seg(c.h, false), bias, N, K, M);
                    assertEquals(ref[m], cold[m], 1e-3f * (1 + Math.abs(ref[m])), what + ": against the plain scalar twin");
                    if (bf16) c.h[m * K] ^= 0x4000; else c.w[m * K] += 1f;   // the first weight of row m changes y[0, m]
                    float[] changed = new float[N * M];
                    RowProducts.span(true, one, changed, x, c.w, m * K, bf16, seg(c.h, false), m * K, bias, N, K, M, m, rows);
                    assertNotEquals(cold[m], changed[m], what + ": a changed weight must change the output");
                }
    }

    @Test
    void f16NeedsItsScratch() {
        var e = assertThrows(IllegalArgumentException.class,
                () -> RowProducts.forward(DType.F16, new float[8], new float[8], seg(new short[64], false), null, 1, 8, 8, new float[7]));
        assertTrue(e.getMessage().contains("needs 32"), e.getMessage());
    }
}
