package org.peft4j.quant;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;
import org.peft4j.core.Peft4jException.ConfigException;
import org.peft4j.core.Peft4jException.FormatException;
import org.peft4j.core.Peft4jException.UnsupportedModelException;

import java.util.Arrays;
import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.*;

/// Quantize → dequantize error bounds on random normal weights, the 8-bit search against brute force, row tiles,
/// and the errors bad input gets.
class Nf4RoundTripTest {
    /// Worst per-element error as a fraction of the block's absmax: half the widest gap between neighbouring codes,
    /// because thresholds are the code midpoints. NF4: (c1 − c0)/2 = (1 − 0.6961928)/2; FP4: (1 − 2/3)/2.
    static final double NF4_HALF_GAP = (1 - 0.6961928009986877) / 2, FP4_HALF_GAP = (1 - 0.6666666865348816) / 2;
    /// RMSE / σ on N(0, 1) with blocks of 64: measured 0.0920 (NF4) and 0.1222 (FP4) on 2^18 samples by a numpy
    /// argmin-distance quantizer; the bounds leave ~8% for sampling noise of this test's 2^18 samples (< 0.5%).
    static final double NF4_RMSE = 0.10, FP4_RMSE = 0.13;
    /// Rounding slack: the scaled value and the product are each one float32 rounding away from exact.
    static final double ULPS = 4 * Math.ulp(1f);

    static float[] normal(int n, long seed) {
        SplittableRandom r = new SplittableRandom(seed);
        float[] x = new float[n];
        for (int i = 0; i < n; i++) {   // Box–Muller
            double u = 1 - r.nextDouble(), v = r.nextDouble();
            x[i] = (float) (Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v));
        }
        return x;
    }

    /// The streamed quantizer fills its buffer chunk by chunk; blocks are independent, so quantizing the two sides of
    /// a chunk boundary separately must give the same bytes and absmax as one call over the whole (odd-length) tensor.
    @Test
    void chunksStitchExactlyAcrossTheBufferBoundary() {
        int n = Nf4Tensor.CHUNK + 3 * 64 + 1;
        float[] x = new float[n];
        SplittableRandom r = new SplittableRandom(5);
        for (int i = 0; i < n; i++) x[i] = (float) r.nextGaussian();
        Nf4Tensor whole = Nf4Tensor.quantize(QuantType.NF4, x, new long[]{n}, 64, false);
        Nf4Tensor head = Nf4Tensor.quantize(QuantType.NF4, Arrays.copyOf(x, Nf4Tensor.CHUNK), new long[]{Nf4Tensor.CHUNK}, 64, false);
        Nf4Tensor tail = Nf4Tensor.quantize(QuantType.NF4, Arrays.copyOfRange(x, Nf4Tensor.CHUNK, n), new long[]{n - Nf4Tensor.CHUNK}, 64, false);
        byte[] w = whole.packedBytes(), h = head.packedBytes(), t = tail.packedBytes();
        assertArrayEquals(h, Arrays.copyOf(w, h.length), "first chunk");
        assertArrayEquals(t, Arrays.copyOfRange(w, h.length, w.length), "second chunk, with the odd padding nibble");
        float[] a = whole.absmaxValues(), ah = head.absmaxValues(), at = tail.absmaxValues();
        assertArrayEquals(ah, Arrays.copyOf(a, ah.length));
        assertArrayEquals(at, Arrays.copyOfRange(a, ah.length, a.length));
        assertTrue(whole.packed().isNative(), "quantized codes live in a native arena");
        assertEquals(w.length, whole.offHeapBytes());
        // a Source that is not an array sees the elements in order, in whole blocks
        long[] next = {0};
        Nf4Tensor streamed = Nf4Tensor.quantize(QuantType.NF4, new long[]{n}, 64, false, (from, dst, count) -> {
            assertEquals(next[0], from, "chunks arrive in order");
            assertTrue(count == n - from || count % 64 == 0, "whole blocks");
            System.arraycopy(x, (int) from, dst, 0, count);
            next[0] += count;
        });
        assertArrayEquals(w, streamed.packedBytes());
    }

    @ParameterizedTest
    @EnumSource(QuantType.class)
    void perElementErrorIsWithinHalfTheWidestCodeGap(QuantType type) {
        double halfGap = type == QuantType.NF4 ? NF4_HALF_GAP : FP4_HALF_GAP;
        for (int bs : Nf4Tensor.BLOCK_SIZES) for (int n : new int[]{1, 63, 65, bs + 1, 4097}) {
            float[] x = normal(n, bs * 31L + n);
            Nf4Tensor q = Nf4Tensor.quantize(type, x, new long[]{n}, bs, false);
            float[] y = new float[n], absmax = q.absmaxValues();
            q.dequantize(y);
            for (int b = 0; b < absmax.length; b++) {
                double m = 0;
                for (int i = b * bs; i < Math.min(n, b * bs + bs); i++) m = Math.max(m, Math.abs(x[i]));
                assertEquals(m, absmax[b], 0, "absmax of block " + b);
            }
            for (int i = 0; i < n; i++) {
                double m = absmax[i / bs];
                if (Math.abs(x[i] - y[i]) > (halfGap + ULPS) * m)
                    fail(type + " bs " + bs + " n " + n + " [" + i + "]: x " + x[i] + " → " + y[i] + ", error " + Math.abs(x[i] - y[i]) + " > " + halfGap + "·" + m);
            }
        }
    }

    @Test
    void rmseOnNormalWeightsAndNf4BeatsFp4() {
        float[] x = normal(1 << 18, 7);
        double[] rmse = new double[2];
        for (QuantType t : QuantType.values()) {
            float[] y = new float[x.length];
            Nf4Tensor.quantize(t, x, new long[]{64, 4096}, 64, false).dequantize(y);
            double s = 0;
            for (int i = 0; i < x.length; i++) s += (x[i] - y[i]) * (double) (x[i] - y[i]);
            rmse[t.ordinal()] = Math.sqrt(s / x.length);
        }
        assertTrue(rmse[0] < NF4_RMSE, "NF4 RMSE " + rmse[0]);
        assertTrue(rmse[1] < FP4_RMSE, "FP4 RMSE " + rmse[1]);
        assertTrue(rmse[0] < rmse[1], "NF4 is the better code for normal data: " + Arrays.toString(rmse));
    }

    /// With double quantization the error grows by at most the absmax error, itself at most half the widest gap of
    /// the signed dynamic map (computed from the map) times the nested absmax.
    @Test
    void doubleQuantErrorBound() {
        float[] x = normal(300 * 64 + 17, 11);
        Nf4Tensor plain = Nf4Tensor.quantize(QuantType.NF4, x, new long[]{x.length}, 64, false);
        Nf4Tensor dq = Nf4Tensor.quantize(QuantType.NF4, x, new long[]{x.length}, 64, true);
        var nested = (Nf4Tensor.Absmax.Nested) dq.absmax();
        assertEquals(2, nested.nestedAbsmax().length, "302 blocks → nested blocks of 256 + 46");
        float[] map = DynamicMap.signed();
        double gap8 = 0;
        for (int i = 1; i < 256; i++) gap8 = Math.max(gap8, (map[i] - map[i - 1]) / 2.0);
        assertTrue(gap8 < 0.0071, "8-bit half gap " + gap8);
        float[] a = plain.absmaxValues(), a2 = dq.absmaxValues();
        for (int b = 0; b < a.length; b++) {
            double bound = (gap8 + ULPS) * nested.nestedAbsmax()[b / 256] + Math.ulp(a[b]);
            assertTrue(Math.abs(a[b] - a2[b]) <= bound, "absmax'[" + b + "] " + a2[b] + " vs " + a[b]);
        }
        float[] y = new float[x.length];
        dq.dequantize(y);
        for (int i = 0; i < x.length; i++) {
            int b = i / 64;
            double bound = (NF4_HALF_GAP + ULPS) * a[b] + Math.abs(a[b] - a2[b]) + ULPS * a2[b];
            assertTrue(Math.abs(x[i] - y[i]) <= bound, "[" + i + "] " + x[i] + " → " + y[i]);
        }
    }

    /// The CUDA binary search equals a brute-force nearest code, with exact midpoint ties going to the even index.
    @Test
    void eightBitSearchIsNearestWithTiesToEven() {
        for (float[] map : new float[][]{DynamicMap.signed(), DynamicMap.unsigned()}) {
            SplittableRandom r = new SplittableRandom(3);
            for (int t = 0; t < 20000; t++) {
                float x = (float) (r.nextDouble() * 2.2 - 1.1);
                check(map, x);
            }
            for (int i = 0; i + 1 < 256; i++) {
                float mid = (map[i] + map[i + 1]) * 0.5f;
                check(map, mid);
                check(map, Math.nextUp(mid));
                check(map, Math.nextDown(mid));
                check(map, map[i]);
            }
        }
    }

    /// `x` lies in the cell of the returned code, bounded by the kernel's float32 midpoints; on a midpoint the index is
    /// even; and the code is the brute-force nearest one (distances in double) unless x is that close to a midpoint.
    private static void check(float[] map, float x) {
        int got = Blockwise8.quantizeValue(map, x);
        float midBelow = got > 0 ? (map[got - 1] + map[got]) * 0.5f : Float.NEGATIVE_INFINITY;
        float midAbove = got < 255 ? (map[got] + map[got + 1]) * 0.5f : Float.POSITIVE_INFINITY;
        assertTrue(x >= midBelow && x <= midAbove, "x " + x + " outside the cell of code " + got);
        if (x == midBelow || x == midAbove) { assertEquals(0, got % 2, "tie at " + x + " goes to the even index"); return; }
        int best = 0;
        for (int i = 1; i < 256; i++) if (Math.abs((double) x - map[i]) < Math.abs((double) x - map[best])) best = i;
        if (best != got) assertEquals(Math.abs((double) x - map[best]), Math.abs((double) x - map[got]), 2 * Math.ulp(x),
                "x " + x + ": search gives " + got + ", nearest is " + best);
    }

    @Test
    void eightBitRoundTrip() {
        float[] x = normal(1000, 5), y = new float[1000];
        byte[] codes = new byte[1000];
        float[] absmax = new float[4], map = DynamicMap.signed();
        Blockwise8.quantize(codes, absmax, x, map, 256);
        Blockwise8.dequantize(y, codes, absmax, map, 256);
        for (int i = 0; i < x.length; i++) assertEquals(x[i], y[i], 0.0071 * absmax[i / 256], "[" + i + "]");
        assertThrows(IllegalArgumentException.class, () -> Blockwise8.quantize(codes, new float[3], x, map, 256));
    }

    /// Rows of a (7, 100) weight with blocks of 64 cross block boundaries; tiles equal slices of the full result.
    @Test
    void dequantizeRowsEqualsSlicesOfTheWhole() {
        float[] x = normal(700, 9), all = new float[700];
        Nf4Tensor q = Nf4Tensor.quantize(QuantType.NF4, x, new long[]{7, 100}, 64, true);
        q.dequantize(all);
        for (int from = 0; from < 7; from++) for (int to = from; to <= 7; to++) {
            float[] tile = new float[(to - from) * 100];
            q.dequantizeRows(from, to, tile);
            assertArrayEquals(Arrays.copyOfRange(all, from * 100, to * 100), tile, "rows " + from + ".." + to);
        }
        assertThrows(IndexOutOfBoundsException.class, () -> q.dequantizeRows(6, 8, new float[200]));
        assertThrows(IndexOutOfBoundsException.class, () -> q.dequantizeRows(0, 2, new float[199]));
    }

    @Test
    void allZeroBlockFollowsCuda() {
        float[] x = new float[130];
        x[129] = 0.5f;
        Nf4Tensor q = Nf4Tensor.quantize(QuantType.NF4, x, new long[]{130}, 64, false);
        for (int i = 0; i < 128; i++) assertEquals(0, q.code(i), "0 · inf = NaN → code 0");
        float[] y = new float[130];
        q.dequantize(y);
        assertEquals(Float.floatToRawIntBits(-0f), Float.floatToRawIntBits(y[0]), "-1.0 · 0 = -0.0");
        assertEquals(7, q.code(128));
        assertEquals(15, q.code(129));
    }

    @Test
    void badInputGetsClearErrors() {
        Nf4Tensor q = Nf4Tensor.quantize(QuantType.NF4, normal(256, 1), new long[]{2, 128}, 64, false);
        var e = assertThrows(FormatException.class, () -> new Nf4Tensor(QuantType.NF4, new long[]{2, 128}, 64, q.packedBytes(),
                new Nf4Tensor.Absmax.Plain(new float[3])));
        assertTrue(e.getMessage().contains("absmax has 3 values") && e.getMessage().contains("4 blocks"), e.getMessage());
        e = assertThrows(FormatException.class, () -> new Nf4Tensor(QuantType.NF4, new long[]{2, 128}, 64, new byte[127],
                q.absmax()));
        assertTrue(e.getMessage().contains("127 bytes"), e.getMessage());
        e = assertThrows(FormatException.class, () -> new Nf4Tensor.Absmax.Nested(new byte[300], new float[1], DynamicMap.signed(), 0f, 256));
        assertTrue(e.getMessage().contains("nested_absmax has 1"), e.getMessage());
        assertThrows(FormatException.class, () -> new Nf4Tensor.Absmax.Nested(new byte[3], new float[1], new float[16], 0f, 256));
        var u = assertThrows(UnsupportedModelException.class, () -> QuantType.of("int4"));
        assertTrue(u.getMessage().contains("'int4'") && u.getMessage().contains("nf4"), u.getMessage());
        assertEquals(QuantType.FP4, QuantType.of("FP4"));
        var c = assertThrows(ConfigException.class, () -> Nf4Tensor.quantize(QuantType.NF4, new float[48], new long[]{48}, 48, false));
        assertTrue(c.getMessage().contains("48") && c.getMessage().contains("64"), c.getMessage());
        assertThrows(IllegalArgumentException.class, () -> Nf4Tensor.quantize(QuantType.NF4, new float[48], new long[]{4, 13}, 64, false));
    }
}
