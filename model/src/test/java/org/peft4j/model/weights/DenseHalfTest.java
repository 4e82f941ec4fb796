package org.peft4j.model.weights;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.peft4j.core.DType;
import org.peft4j.core.Gemm;
import org.peft4j.core.Parallel;
import org.peft4j.core.Peft4jException.FormatException;
import org.peft4j.core.kernels.ScalarGemm;
import org.peft4j.core.kernels.VectorGemm;
import org.peft4j.formats.safetensors.SafeTensors;
import org.peft4j.formats.safetensors.ShardedSafeTensors;
import org.peft4j.model.llama.TensorSource;
import org.peft4j.quant.QuantLinear;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.*;

/// BF16/F16 weights: the vector conversion against its scalar twin and the definitions, the tiled products against
/// a DenseF32 over the same converted values (bit for bit), and reading the 16-bit values from safetensors.
class DenseHalfTest {
    static final DType[] HALVES = {DType.BF16, DType.F16};

    /// The definitions, written here independently: BF16 is the top half of a float32; F16 is IEEE binary16.
    static float reference(DType t, short bits) {
        return t == DType.BF16 ? Float.intBitsToFloat((bits & 0xffff) << 16) : Float.float16ToFloat(bits);
    }

    static void assertSameFloat(String what, float expected, float actual) {
        // NaN payloads: hardware F16 conversion may quiet a signalling NaN; any NaN is the same value here.
        if (Float.isNaN(expected) ? !Float.isNaN(actual) : Float.floatToRawIntBits(expected) != Float.floatToRawIntBits(actual))
            fail(what + ": expected " + expected + " (0x" + Integer.toHexString(Float.floatToRawIntBits(expected)) + ") got " + actual
                    + " (0x" + Integer.toHexString(Float.floatToRawIntBits(actual)) + ")");
    }

    @Test
    void conversionIsExactOnEveryBitPattern() {
        short[] all = new short[65536];
        for (int i = 0; i < all.length; i++) all[i] = (short) i;
        for (DType t : HALVES) {
            float[] fast = new float[all.length], slow = new float[all.length];
            DenseHalf.toFloat(t, DenseHalf.segment(all), 0, fast, 0, all.length);
            DenseHalf.toFloatScalar(t, DenseHalf.segment(all), 0, slow, 0, all.length);
            for (int i = 0; i < all.length; i++) {
                String what = t + " 0x" + Integer.toHexString(i);
                assertSameFloat(what + " vector", reference(t, all[i]), fast[i]);
                assertSameFloat(what + " scalar", reference(t, all[i]), slow[i]);
            }
        }
    }

    @Test
    void vectorConversionMatchesItsScalarTwinAtEveryTail() {
        var rng = new SplittableRandom(3);
        for (DType t : HALVES)
            for (int n : new int[]{0, 1, 7, 31, 33, 4097})
                for (int off : new int[]{0, 3}) {
                    short[] src = new short[n + off];
                    for (int i = 0; i < src.length; i++) src[i] = (short) rng.nextInt();
                    float[] fast = new float[n + off + 1], slow = new float[n + off + 1];
                    Arrays.fill(fast, -7f);
                    Arrays.fill(slow, -7f);
                    var seg = RowProductsTest.seg(src, off == 3);   // at an odd address too
                    DenseHalf.toFloat(t, seg, off, fast, off + 1, n);
                    DenseHalf.toFloatScalar(t, seg, off, slow, off + 1, n);
                    for (int i = 0; i < fast.length; i++) assertSameFloat(t + " n=" + n + " off=" + off + " [" + i + "]", slow[i], fast[i]);
                    assertEquals(-7f, fast[off], "wrote before dOff");
                }
    }

    /// The tile rule: QuantLinear's, aligned to ROW_ALIGN rows once there is more than one tile.
    @Test
    void tilesFollowQuantLinearAligned() {
        assertEquals(576, DenseHalf.tileRows(1536, 576));            // SmolLM2 down_proj: one tile
        assertEquals(1536, DenseHalf.tileRows(576, 1536));           // up_proj: one tile
        assertEquals(1808, DenseHalf.tileRows(576, 49152));          // lm_head: QuantLinear's 1820, aligned down
        assertEquals(1820, QuantLinear.tileRows(576, 49152));
        assertEquals(256, DenseHalf.tileRows(11008, 4096));
        assertEquals(336, DenseHalf.tileRows(3000, 700));
        assertEquals(1168, DenseHalf.tileRows(896, 1200));
        assertEquals(336 * 3000, new DenseHalf(DType.F16, new short[700 * 3000], 700, 3000).scratchSize());
        for (int K : new int[]{1, 7, 576, 3000, 4097, 11008})
            for (int M : new int[]{1, 300, 5000, 70000}) {
                int t = DenseHalf.tileRows(K, M);
                assertTrue(t == M || t % DenseHalf.ROW_ALIGN == 0 && t >= QuantLinear.TILE_ROWS && t <= M, K + "x" + M + ": " + t);
            }
    }

    /// Forward equals DenseF32 over the converted weight bit for bit on the GEMM path, and the four-chain lane twin on
    /// the row path (N ≤ 32; DenseF32's one-chain row path within rounding), over several tiles, N = 1, 5 and 64, and
    /// 1 or 3 threads; the input gradient too when W is one tile.
    @Test
    void productsAreDenseF32OverTheConvertedWeight() {
        // (out, in). The last is Qwen2.5-0.5B's width: QuantLinear's rule gives tiles of 1170 rows, not a multiple of 4, which
        // would put the rows of the second tile in other groups of VectorGemm's one-row path; aligned, the tiles are (1168, 32).
        int[][] shapes = {{1, 5}, {37, 173}, {1200, 896}};
        int saved = Parallel.threads();
        try {
            for (int threads : new int[]{1, 3}) {
                Parallel.setThreads(threads);
                for (int[] s : shapes)
                    for (DType t : HALVES) {
                        int out = s[0], in = s[1];
                        var rng = new SplittableRandom(out * 31L + in);
                        short[] bits = new short[out * in];
                        for (int i = 0; i < bits.length; i++) bits[i] = t == DType.BF16
                                ? DType.floatToBf16((float) rng.nextGaussian()) : Float.floatToFloat16((float) rng.nextGaussian() * 0.05f);
                        DenseHalf h = new DenseHalf(t, bits, out, in);
                        float[] W = new float[out * in];
                        for (int i = 0; i < W.length; i++) W[i] = reference(t, bits[i]);
                        DenseF32 d = new DenseF32(W, out, in);
                        boolean oneTile = DenseHalf.tileRows(in, out) == out;
                        for (Gemm gemm : new Gemm[]{ScalarGemm.INSTANCE, VectorGemm.INSTANCE})
                            for (int N : new int[]{1, 5, 64}) {
                                if (gemm == ScalarGemm.INSTANCE && (threads > 1 || (long) N * out * in > 10_000_000)) continue;   // time; it has no threads
                                String what = h + " " + gemm.name() + " N=" + N + " threads=" + threads;
                                float[] x = new float[N * in], bias = new float[out], dy = new float[N * out], dx0 = new float[N * in];
                                for (float[] a : List.of(x, bias, dy, dx0)) for (int i = 0; i < a.length; i++) a[i] = (float) rng.nextGaussian();
                                float[] scratch = new float[h.scratchSize()];
                                float[] y = new float[N * out], yRef = new float[N * out];
                                h.forward(gemm, y, x, bias, N, scratch);
                                d.forward(gemm, yRef, x, bias, N, null);
                                // the row path (N <= ROW_PATH_MAX_N): four FMA chains per product for 16-bit weights, one for
                                // DenseF32's float32 weights, so the bits of the four-chain lane twin over the converted weight;
                                // the scalar reference's row path is its plain twin
                                if (N > DenseHalf.ROW_PATH_MAX_N) assertArrayEquals(yRef, y, what + " forward");
                                else if (gemm != ScalarGemm.INSTANCE) {
                                    float[] twin = new float[N * out];
                                    RowProducts.lanes(false, twin, x, W, 0, false, null, 0, bias, N, in, out, 0, out);
                                    assertArrayEquals(twin, y, what + " forward (row path) vs the four-chain lane twin");
                                    assertRowPathClose(what + " DenseF32 forward (row path, one chain)", yRef, x, W, bias, N, in, out);
                                } else assertRowPathClose(what + " forward (row path)", y, x, W, bias, N, in, out);
                                float[] dx = dx0.clone(), dxRef = dx0.clone();
                                h.backwardInput(gemm, dx, dy, N, scratch);
                                d.backwardInput(gemm, dxRef, dy, N, null);
                                if (oneTile) assertArrayEquals(dxRef, dx, what + " backwardInput");
                                else BaseWeightTest.assertDotClose(what + " backwardInput", dx, dxRef, dy, W, dx0, N, in, out, true);
                            }
                    }
            }
        } finally {
            Parallel.setThreads(saved);
        }
    }

    /// The row path (N ≤ ROW_PATH_MAX_N) against dot products in double: each y[n, m] within 4·in·2⁻²⁴ of Σ|x·w| + |b|
    /// (a float sum of `in` products in any order), and not far off a wrong row (a check that could not fail would pass
    /// any y: a shifted row must fail it).
    static void assertRowPathClose(String what, float[] y, float[] x, float[] W, float[] bias, int N, int in, int out) {
        for (int n = 0; n < N; n++)
            for (int m = 0; m < out; m++) {
                double exact = bias[m], abs = Math.abs(bias[m]);
                for (int k = 0; k < in; k++) { exact += (double) x[n * in + k] * W[m * in + k]; abs += Math.abs((double) x[n * in + k] * W[m * in + k]); }
                double bound = 4.0 * (in + 1) * 0x1p-24 * abs + Float.MIN_NORMAL;
                org.junit.jupiter.api.Assertions.assertTrue(Math.abs(y[n * out + m] - exact) <= bound,
                        what + ": y[" + n + ", " + m + "] = " + y[n * out + m] + ", exact " + exact + ", bound " + bound);
            }
    }

    @Test
    void rowPathMatchesItsScalarTwinAndCatchesAWrongRow() {
        for (DType t : HALVES) {
            int out = 300, in = 577, N = 3;
            var rng = new SplittableRandom(9);
            short[] bits = new short[out * in];
            for (int i = 0; i < bits.length; i++) bits[i] = t == DType.BF16 ? DType.floatToBf16((float) rng.nextGaussian()) : Float.floatToFloat16((float) rng.nextGaussian() * 0.05f);
            DenseHalf h = new DenseHalf(t, bits, out, in);
            float[] W = new float[out * in];
            for (int i = 0; i < W.length; i++) W[i] = reference(t, bits[i]);
            float[] x = new float[N * in], bias = new float[out];
            for (int i = 0; i < x.length; i++) x[i] = (float) rng.nextGaussian();
            float[] scratch = new float[h.scratchSize()], fast = new float[N * out], scalar = new float[N * out];
            h.forward(VectorGemm.INSTANCE, fast, x, bias, N, scratch);
            h.forward(ScalarGemm.INSTANCE, scalar, x, bias, N, scratch);
            assertRowPathClose(t + " row path, vector", fast, x, W, bias, N, in, out);
            assertRowPathClose(t + " row path, scalar twin", scalar, x, W, bias, N, in, out);
            float[] shifted = fast.clone();
            System.arraycopy(fast, 0, shifted, 1, out - 1);   // every output moved to its neighbour's place
            org.junit.jupiter.api.Assertions.assertThrows(AssertionError.class,
                    () -> assertRowPathClose("shifted", shifted, x, W, bias, N, in, out), "the bound must reject a wrong output");
        }
    }

    @Test
    void ofRoundsToNearestEven() {
        float[] w = {1f, 1f + 0x1p-8f, 1f + 0x1p-8f + 0x1p-9f, 65520f, -0f, 1e-7f};
        DenseHalf b = DenseHalf.of(DType.BF16, w, 2, 3), f = DenseHalf.of(DType.F16, w, 2, 3);
        float[] out = new float[6];
        b.dequantize(out);
        assertArrayEquals(new float[]{1f, 1f, 1f + 0x1p-7f, 65536f, -0f, Float.intBitsToFloat(0x33d70000)}, out);
        f.dequantize(out);
        assertArrayEquals(new float[]{1f, 1f + 0x1p-8f, 1f + 0x1p-8f + 0x1p-9f, Float.POSITIVE_INFINITY, -0f, 1.1920929e-7f}, out);
    }

    /// No model in ../shared/models holds BF16 or F16 (both are F32), so the file is written here: raw 16-bit
    /// patterns chosen by the test, read back through SafeTensors and ShardedSafeTensors, bit for bit.
    @Test
    void readsRawHalfValuesFromSafetensors(@TempDir Path dir) {
        int out = 5, in = 7;
        var rng = new SplittableRandom(11);
        short[] bf = new short[out * in], hf = new short[out * in];
        for (int i = 0; i < bf.length; i++) { bf[i] = (short) rng.nextInt(); hf[i] = (short) rng.nextInt(); }
        float[] f32 = new float[out * in];
        for (int i = 0; i < f32.length; i++) f32[i] = (float) rng.nextGaussian();
        SafeTensors.write(dir.resolve(ShardedSafeTensors.SINGLE), List.of(
                SafeTensors.Entry.ofBytes("w.bf16", DType.BF16, new long[]{out, in}, le(bf)),
                SafeTensors.Entry.ofBytes("w.f16", DType.F16, new long[]{out, in}, le(hf)),
                SafeTensors.Entry.ofFloats("w.f32", new long[]{out, in}, f32, DType.F32),
                SafeTensors.Entry.ofFloats("w.bf16.wide", new long[]{in, out}, f32, DType.BF16)), Map.of());
        try (SafeTensors st = SafeTensors.open(dir.resolve(ShardedSafeTensors.SINGLE));
             ShardedSafeTensors sh = ShardedSafeTensors.open(dir)) {
            for (TensorSource src : List.of(TensorSource.of(st::tensors, st::readFloats, st::bytes),
                                            TensorSource.of(sh::tensors, sh::readFloats, sh::bytes))) {
                BaseWeight b = BaseWeight.read(src, "w.bf16", out, in), h = BaseWeight.read(src, "w.f16", out, in);
                assertInstanceOf(DenseHalf.class, b);
                assertEquals("BF16", b.dtype());
                assertEquals("F16", h.dtype());
                assertArrayEquals(bf, ((DenseHalf) b).bits());
                assertArrayEquals(hf, ((DenseHalf) h).bits());
                float[] viaFloats = src.readFloats("w.f16"), deq = new float[out * in];
                h.dequantize(deq);
                assertArrayEquals(viaFloats, deq, "readFloats (formats' conversion) and DenseHalf agree");
                BaseWeight f = BaseWeight.read(src, "w.f32", out, in);
                assertArrayEquals(f32, ((DenseF32) f).data());

                var e = assertThrows(FormatException.class, () -> src.halfBytes("w.f32"));
                assertTrue(e.getMessage().contains("readFloats"), e.getMessage());
                e = assertThrows(FormatException.class, () -> BaseWeight.read(src, "w.bf16.wide", out, in));
                assertTrue(e.getMessage().contains("[7, 5]"), e.getMessage());
                e = assertThrows(FormatException.class, () -> BaseWeight.read(src, "missing", out, in));
                assertTrue(e.getMessage().contains("missing"), e.getMessage());
            }
            // halfBytes: a copy in native memory by default (writable, outliving the source), the mapped bytes
            // themselves for an in-place source (read-only, nothing copied); the same values either way
            TensorSource copying = TensorSource.of(sh::tensors, sh::readFloats, sh::bytes);
            TensorSource inPlace = TensorSource.inPlace(sh::tensors, sh::readFloats, sh::bytes);
            var copied = copying.halfBytes("w.bf16");
            var mapped = inPlace.halfBytes("w.bf16");
            assertFalse(copied.isReadOnly());
            assertTrue(mapped.isMapped() && mapped.isReadOnly());
            assertArrayEquals(bf, new DenseHalf(DType.BF16, copied, out, in).bits());
            assertArrayEquals(bf, new DenseHalf(DType.BF16, mapped, out, in).bits());
            var wrong = assertThrows(FormatException.class, () -> inPlace.halfBytes("w.f32"));
            assertTrue(wrong.getMessage().contains("readFloats"), wrong.getMessage());
            TensorSource floatsOnly = TensorSource.of(st::tensors, st::readFloats);
            var e = assertThrows(UnsupportedOperationException.class, () -> floatsOnly.halfBytes("w.bf16"));
            assertTrue(e.getMessage().contains("st::bytes"), e.getMessage());
        }
    }

    static byte[] le(short[] v) {
        ByteBuffer b = ByteBuffer.allocate(2 * v.length).order(ByteOrder.LITTLE_ENDIAN);
        for (short s : v) b.putShort(s);
        return b.array();
    }
}
