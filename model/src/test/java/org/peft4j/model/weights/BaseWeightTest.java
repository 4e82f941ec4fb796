package org.peft4j.model.weights;

import org.junit.jupiter.api.Test;
import org.peft4j.core.DType;
import org.peft4j.core.Gemm;
import org.peft4j.core.kernels.ScalarGemm;
import org.peft4j.core.kernels.VectorGemm;
import org.peft4j.model.layers.Linear;
import org.peft4j.quant.Nf4Tensor;
import org.peft4j.quant.QuantLinear;
import org.peft4j.quant.QuantType;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.*;

/// Each kind of base weight against the control: W as float32, made independently of the code under test
/// (the test's own BF16/F16 conversion, `Nf4Tensor.dequantize` for 4-bit), then a plain [ScalarGemm].
class BaseWeightTest {
    /// {out, in}: in = 1, out not a multiple of any tile or vector, and a weight of two tiles: in = 896 gives
    /// DenseHalf tiles of 1168 rows (1168, 32) and QuantLinear tiles of 1170 (1170, 30); NF4 blocks of 64 cross rows
    /// in the 173-wide weight.
    static final int[][] SHAPES = {{1, 1}, {7, 1}, {33, 1}, {5, 17}, {37, 173}, {1200, 896}};
    /// Rows of x: one (the decode path of a GEMM) and a few.
    static final int[] NS = {1, 4};

    static float[] uniform(SplittableRandom rng, int n) {
        float[] a = new float[n];
        for (int i = 0; i < n; i++) a[i] = (float) rng.nextDouble(-1, 1);
        return a;
    }

    /// A weight of each kind over random values, with the float32 W the control multiplies.
    record Case(BaseWeight w, float[] W) {}

    static List<Case> cases(int out, int in, long seed) {
        var rng = new SplittableRandom(seed);
        float[] f = uniform(rng, out * in);
        List<Case> cs = new ArrayList<>();
        cs.add(new Case(new DenseF32(f.clone(), out, in), f.clone()));
        short[] bf = new short[f.length], hf = new short[f.length];
        float[] bfW = new float[f.length], hfW = new float[f.length];
        for (int i = 0; i < f.length; i++) {
            bf[i] = (short) (Float.floatToRawIntBits(f[i]) >>> 16);      // truncation: any bit pattern will do
            bfW[i] = Float.intBitsToFloat((bf[i] & 0xffff) << 16);
            hf[i] = Float.floatToFloat16(f[i] * 1e-3f);                   // small values: F16 subnormals appear too
            hfW[i] = Float.float16ToFloat(hf[i]);
        }
        cs.add(new Case(new DenseHalf(DType.BF16, bf, out, in), bfW));
        cs.add(new Case(new DenseHalf(DType.F16, hf, out, in), hfW));
        boolean big = (long) out * in > 100_000;   // a large weight gets one 4-bit variant (time); QuantLinearTest has the rest
        for (QuantType type : big ? new QuantType[]{QuantType.NF4} : QuantType.values())
            for (boolean dq : big ? new boolean[]{true} : new boolean[]{false, true}) {
                Nf4Tensor t = Nf4Tensor.quantize(type, f, new long[]{out, in}, 64, dq);
                float[] W = new float[f.length];
                t.dequantize(W);
                cs.add(new Case(new Nf4Weight(t), W));
            }
        return cs;
    }

    static float[] nan(int n) {
        float[] a = new float[n];
        Arrays.fill(a, Float.NaN);
        return a;
    }

    /// ScalarGemm forward: y = x·Wᵀ + b.
    static float[] forwardRef(float[] W, float[] x, float[] bias, int N, int out, int in) {
        float[] y = new float[N * out];
        ScalarGemm.INSTANCE.sgemm(false, true, N, out, in, 1f, x, 0, in, W, 0, in, 0f, y, 0, out);
        if (bias != null) for (int n = 0; n < N; n++) for (int m = 0; m < out; m++) y[n * out + m] += bias[m];
        return y;
    }

    /// ScalarGemm input gradient: dx0 + dy·W.
    static float[] backwardRef(float[] W, float[] dx0, float[] dy, int N, int out, int in) {
        float[] dx = dx0.clone();
        ScalarGemm.INSTANCE.sgemm(false, false, N, in, out, 1f, dy, 0, out, W, 0, in, 1f, dx, 0, in);
        return dx;
    }

    @Test
    void forwardAndInputGradientMatchTheScalarControl() {
        for (int[] s : SHAPES) {
            int out = s[0], in = s[1];
            List<Case> cases = cases(out, in, out + 7L * in);
            for (int N : NS) {
                var rng = new SplittableRandom(31L * out + in + N);
                float[] x = uniform(rng, N * in), bias = uniform(rng, out), dy = uniform(rng, N * out), dx0 = uniform(rng, N * in);
                for (Case c : cases) {
                    BaseWeight w = c.w();
                    assertEquals(out, w.out());
                    assertEquals(in, w.in());
                    float[] yRef = forwardRef(c.W(), x, null, N, out, in), yRefBias = forwardRef(c.W(), x, bias, N, out, in);
                    float[] dxRef = backwardRef(c.W(), dx0, dy, N, out, in);
                    // One tile: the same calls as the control. Several: the input gradient gets one partial sum over
                    // `out` per tile, so only the bound holds (forward is one dot product over `in` per element either way).
                    boolean oneTile = tiles(w) == 1;
                    for (Gemm gemm : new Gemm[]{ScalarGemm.INSTANCE, VectorGemm.INSTANCE}) {
                        String what = w + " " + gemm.name() + " N=" + N;
                        boolean scalar = gemm == ScalarGemm.INSTANCE;
                        float[] scratch = nan(w.scratchSize());   // every scratch value must be written before it is read
                        for (float[] b : new float[][]{null, bias}) {
                            float[] y = nan(N * out);              // forward overwrites y
                            w.forward(gemm, y, x, b, N, scratch);
                            float[] ref = b == null ? yRef : yRefBias;
                            // ScalarGemm sums each y element over the whole `in` in order, tiles or not: exact.
                            if (scalar) assertArrayEquals(ref, y, what + " y (bias " + (b != null) + ")");
                            else assertDotClose(what + " y", y, ref, x, c.W(), b, N, out, in, false);
                        }
                        float[] dx = dx0.clone();                  // backwardInput adds into dx
                        w.backwardInput(gemm, dx, dy, N, scratch);
                        if (scalar && oneTile) assertArrayEquals(dxRef, dx, what + " dx");
                        else assertDotClose(what + " dx", dx, dxRef, dy, c.W(), dx0, N, in, out, true);
                    }
                }
            }
        }
    }

    static int tiles(BaseWeight w) {
        int rows = switch (w) {
            case DenseF32 d -> d.out();
            case DenseHalf h -> DenseHalf.tileRows(h.in(), h.out());
            case Nf4Weight q -> QuantLinear.tileRows(q.in(), q.out());
            case GgmlWeight g -> QuantLinear.tileRows(g.in(), g.out());
        };
        return (w.out() + rows - 1) / rows;
    }

    /// |got − ref| ≤ 2·γ(len + 1)·(Σ|a·W| + |c0|) elementwise, γ(n) = n·u/(1 − n·u): two float32 summation orders of
    /// one dot product of `len` terms plus a start value c0 (bias or the old dx) can differ by this much at most
    /// (Higham, Accuracy and Stability of Numerical Algorithms, §3.1); a wrong row, tile or scale misses it by far.
    /// Forward (`nn` false): a = x (N, len) against rows of W (cols, len). Input gradient: a = dy (N, len) against
    /// columns of W (len, cols).
    static void assertDotClose(String what, float[] got, float[] ref, float[] a, float[] W, float[] c0,
                               int N, int cols, int len, boolean nn) {
        double u = Math.ulp(1f) / 2, g = 2 * (len + 1) * u / (1 - (len + 1) * u);
        for (int n = 0; n < N; n++)
            for (int j = 0; j < cols; j++) {
                double s = c0 == null ? 0 : Math.abs(nn ? c0[n * cols + j] : c0[j]);
                for (int p = 0; p < len; p++) s += Math.abs((double) a[n * len + p] * (nn ? W[p * cols + j] : W[j * len + p]));
                double diff = Math.abs((double) got[n * cols + j] - ref[n * cols + j]);
                if (!(diff <= g * s))
                    fail(what + "[" + n + ", " + j + "]: " + got[n * cols + j] + " vs control " + ref[n * cols + j] + ", diff " + diff
                            + " > bound " + g * s);
            }
    }

    @Test
    void denseF32IsLinearBitForBitAndSharesItsArray() {
        var rng = new SplittableRandom(5);
        int N = RowProducts.MAX_ROWS + 3, out = 37, in = 29;   // above the row path: Linear's GEMM call
        float[] data = uniform(rng, out * in), x = uniform(rng, N * in), bias = uniform(rng, out), dy = uniform(rng, N * out);
        DenseF32 w = BaseWeight.of(data, out, in);
        assertSame(data, w.data());
        for (Gemm gemm : new Gemm[]{ScalarGemm.INSTANCE, VectorGemm.INSTANCE}) {
            float[] y = new float[N * out], yLin = new float[N * out];
            w.forward(gemm, y, x, bias, N, null);
            Linear.forward(gemm, yLin, x, data, bias, N, in, out);
            assertArrayEquals(yLin, y);
            float[] dx = uniform(rng, N * in), dxLin = dx.clone();
            w.backwardInput(gemm, dx, dy, N, null);
            Linear.backwardInput(gemm, dxLin, dy, data, N, in, out);
            assertArrayEquals(dxLin, dx);
        }
        data[0] += 1f;   // a merge or an optimizer step writes into the array: the next forward sees it
        float[] y = new float[N * out], yLin = new float[N * out];
        w.forward(ScalarGemm.INSTANCE, y, x, null, N, null);
        Linear.forward(ScalarGemm.INSTANCE, yLin, x, data, null, N, in, out);
        assertArrayEquals(yLin, y);
        assertEquals(0, w.scratchSize());
    }

    @Test
    void dtypeBytesAndDequantize() {
        int out = 37, in = 173;
        for (Case c : cases(out, in, 9)) {
            BaseWeight w = c.w();
            float[] W = nan(out * in + 2);
            w.dequantize(W);
            assertArrayEquals(c.W(), Arrays.copyOf(W, out * in), w + " dequantize");
            assertTrue(Float.isNaN(W[out * in]), w + " dequantize wrote past out·in");
            long n = (long) out * in, blocks = (n + 63) / 64;
            switch (w) {
                case DenseF32 d -> { assertEquals("F32", d.dtype()); assertEquals(4 * n, d.bytes()); }
                case DenseHalf h -> {
                    assertEquals(h.type().name(), h.dtype());
                    assertEquals(2 * n, h.bytes());
                    assertEquals(new DenseF32(c.W(), out, in).bytes(), 2 * h.bytes(), "half the memory of float32");
                }
                case Nf4Weight q -> {
                    assertEquals(q.tensor().type().name(), q.dtype());
                    long scales = q.tensor().absmax() instanceof Nf4Tensor.Absmax.Nested
                            ? blocks + 4 * ((blocks + 255) / 256) + 4 * 256 + 4 : 4 * blocks;
                    assertEquals((n + 1) / 2 + scales, q.bytes(), w + " bytes");
                }
                case GgmlWeight g -> fail("GgmlWeightTest covers " + g);
            }
        }
        assertEquals(List.of("F32", "BF16", "F16", "NF4", "NF4", "FP4", "FP4"),
                cases(2, 64, 1).stream().map(c -> c.w().dtype()).toList());
    }

    @Test
    void rejectsBadShapesAndShortScratch() {
        assertThrows(IllegalArgumentException.class, () -> new DenseF32(new float[6], 2, 4));
        assertThrows(IllegalArgumentException.class, () -> new DenseF32(new float[0], 0, 4));
        assertThrows(IllegalArgumentException.class, () -> new DenseHalf(DType.BF16, new short[6], 2, 4));
        var e = assertThrows(IllegalArgumentException.class, () -> new DenseHalf(DType.F32, new short[8], 2, 4));
        assertTrue(e.getMessage().contains("DenseF32"), e.getMessage());
        Nf4Tensor t3 = Nf4Tensor.quantize(QuantType.NF4, new float[64], new long[]{2, 2, 16}, 64, false);
        assertThrows(IllegalArgumentException.class, () -> new Nf4Weight(t3));
        DenseHalf h = new DenseHalf(DType.F16, new short[8], 2, 4);
        e = assertThrows(IllegalArgumentException.class, () -> h.forward(ScalarGemm.INSTANCE, new float[2], new float[4], null, 1, new float[7]));
        assertTrue(h.scratchSize() >= 8, "the tile");
        assertTrue(e.getMessage().contains("scratchSize() = " + h.scratchSize()), e.getMessage());
    }
}
