package org.peft4j.quant;

import org.junit.jupiter.api.Test;

import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.*;

/// The integer dots with rounded activations ([GgmlDots]): the Vector API kernels against their scalar twins, bit for
/// bit where every sum is an exact integer in float, to a few ulps of the row's magnitude otherwise (both sum exact
/// integer block dots and differ only in the order of the float additions over blocks); both against the product of
/// the dequantized operands in double (the dequantization being checked against ggml's C reference elsewhere); and
/// the activation quantizers' defining properties.
class GgmlDotsTest {
    static final GgmlBlocks[] TYPES = {GgmlBlocks.Q8_0, GgmlBlocks.Q4_0, GgmlBlocks.Q4_K};

    /// Lengths per type: one block, two, three, SmolLM2's 576 and 1536, and 608 (19 blocks: Q4_0's vector kernel
    /// takes two blocks a step on AVX-512, an odd count ends in a masked half step). K-quants: whole 256-blocks.
    static int[] lengths(GgmlBlocks t) { return t == GgmlBlocks.Q4_K ? new int[]{256, 512, 1536} : new int[]{32, 64, 96, 576, 608, 1536}; }

    /// `rows` weight rows of random bytes (every code, −128 for Q8_0 too) with the block's half scales set to `scale`,
    /// or random finite values in ±2 when `scale` is NaN.
    static byte[] weights(GgmlBlocks t, int rows, int K, float scale, SplittableRandom rng) {
        byte[] b = new byte[(int) t.bytes((long) rows * K)];
        rng.nextBytes(b);
        for (int at = 0; at < b.length; at += t.blockBytes)
            for (int h = 0; h < (t == GgmlBlocks.Q4_K ? 2 : 1); h++)
                GgmlBlocks.putHalf(b, at + 2 * h, Float.isNaN(scale) ? (float) rng.nextDouble(-2, 2) : scale);
        return b;
    }

    /// x with outliers (every fifth value ×10) and, from 32 on, one all-zero 32-block.
    static float[] activations(int K, SplittableRandom rng) {
        float[] x = new float[K];
        for (int i = 0; i < K; i++) x[i] = (float) (rng.nextDouble(-1, 1) * (i % 5 == 0 ? 10 : 1));
        if (K >= 64) java.util.Arrays.fill(x, 32, 64, 0f);
        return x;
    }

    /// The weight row dequantized (the scalar reference) · the activation row dequantized (d·code), in double, and
    /// the sum of the terms' magnitudes.
    static double[] dequantizedProduct(GgmlBlocks t, byte[] w, int at, int K, short[] c, int co, float[] d) {
        float[] wf = new float[K];
        t.dequantize(w, at, wf, 0, K / t.blockSize);
        int per = t == GgmlBlocks.Q4_K ? 256 : 32;
        double s = 0, mag = 0;
        for (int i = 0; i < K; i++) {
            double v = (double) wf[i] * d[i / per] * c[co + i];
            s += v;
            mag += Math.abs(v);
        }
        return new double[]{s, mag};
    }

    @Test
    void vectorDotsMatchTheScalarTwinsAndTheDequantizedProduct() {
        var rng = new SplittableRandom(21);
        for (GgmlBlocks t : TYPES)
            for (int K : lengths(t)) {
                int rows = 5, co = 3, rowBytes = (int) t.bytes(K);
                byte[] w = weights(t, rows, K, Float.NaN, rng);
                short[] c = new short[co + GgmlDots.codesPerRow(K)];
                float[] d = new float[K / 32];
                GgmlDots.quantize(t, activations(K, rng), 0, K, c, co, d, 0);
                for (int m = 0; m < rows; m++) {
                    float a = GgmlDots.dotScalar(t, w, m * rowBytes, K, c, co, d, 0), v = GgmlDots.dot(t, w, m * rowBytes, K, c, co, d, 0);
                    double[] ref = dequantizedProduct(t, w, m * rowBytes, K, c, co, d);
                    // float sums of K/32 (or K/256 and K/32) exact integer block sums: ~(K/32)·2⁻²⁴ of the magnitude
                    double tol = 1e-6 * (1 + ref[1]);
                    String at = t + " K=" + K + " row " + m + " (vector path " + GgmlDots.VECTOR + ")";
                    assertEquals(a, v, tol, at + ": scalar twin vs vector");
                    assertEquals(ref[0], a, tol, at + ": scalar twin vs the dequantized operands");
                }
            }
    }

    /// With one weight scale for every block (1, −0.75, or 2⁻²⁰, a subnormal half), activation d 1 and codes small
    /// enough that every sum is an integer below 2²⁴, the float result is exact whatever the order of additions: vector
    /// and scalar must agree bit for bit.
    @Test
    void integerSumsAreExact() {
        var rng = new SplittableRandom(22);
        for (GgmlBlocks t : TYPES)
            for (int K : lengths(t))
                for (float scale : new float[]{1f, -0.75f, 0x1p-20f}) {
                    int rows = 4, rowBytes = (int) t.bytes(K);
                    byte[] w = weights(t, rows, K, scale, rng);
                    short[] c = new short[GgmlDots.codesPerRow(K)];
                    for (int i = 0; i < K; i++) c[i] = (short) (i % 97 == 0 ? -7 : rng.nextInt(-7, 8));   // |sum| ≤ K·(63·15 + 63)·7 < 2²⁴
                    for (int s = 0; s < K / 32; s++) {
                        int sum = 0;
                        for (int j = 0; j < 32; j++) sum += c[s * 32 + j];
                        c[K + s] = (short) sum;
                    }
                    float[] d = new float[K / 32];
                    java.util.Arrays.fill(d, 1f);
                    for (int m = 0; m < rows; m++) {
                        float a = GgmlDots.dotScalar(t, w, m * rowBytes, K, c, 0, d, 0), v = GgmlDots.dot(t, w, m * rowBytes, K, c, 0, d, 0);
                        String at = t + " K=" + K + " scale " + scale + " row " + m;
                        assertEquals(Float.floatToRawIntBits(a), Float.floatToRawIntBits(v), at + ": " + a + " vs " + v);
                        assertEquals(dequantizedProduct(t, w, m * rowBytes, K, c, 0, d)[0], a, 0.0, at);
                    }
                }
    }

    /// [GgmlDots#rows] over a range of rows (not from row 0, into an offset y) writes what [GgmlDots#dot] gives row by
    /// row, and nothing outside the range: an odd and an even count of rows (Q4_0 takes rows in pairs half the range
    /// apart, an odd last one paired with itself).
    @Test
    void rowRangesMatchSingleRows() {
        var rng = new SplittableRandom(24);
        for (GgmlBlocks t : TYPES)
            for (int K : lengths(t))
                for (int m0 : new int[]{1, 2}) {
                    int rows = 7, m1 = 7, yOff = 3, rowBytes = (int) t.bytes(K);
                    byte[] w = weights(t, rows, K, Float.NaN, rng);
                    short[] c = new short[GgmlDots.codesPerRow(K)];
                    float[] d = new float[K / 32];
                    GgmlDots.quantize(t, activations(K, rng), 0, K, c, 0, d, 0);
                    float[] y = new float[yOff + rows + 1];
                    java.util.Arrays.fill(y, -1f);
                    GgmlDots.rows(t, w, rowBytes, m0, m1, K, c, 0, d, 0, y, yOff);
                    for (int i = 0; i < y.length; i++) {
                        int m = i - yOff;
                        float want = m >= m0 && m < m1 ? GgmlDots.dot(t, w, m * rowBytes, K, c, 0, d, 0) : -1f;
                        assertEquals(Float.floatToRawIntBits(want), Float.floatToRawIntBits(y[i]), t + " K=" + K + " rows [" + m0 + ", " + m1 + ") y[" + i + "]");
                    }
                }
    }

    /// The vector Q8_0 quantizer gives its scalar twin's codes, sums and scales bit for bit: random rows with outliers
    /// and an all-zero block, and rows built so that x·(127/amax) lands exactly on halves (x = k + 0.5 with amax 127:
    /// ties, rounded to even by both) and on ±127.
    @Test
    void vectorQ8_0QuantizerMatchesItsScalarTwin() {
        var rng = new SplittableRandom(25);
        for (int K : new int[]{32, 64, 576, 1536}) {
            float[][] rows = new float[3][];
            rows[0] = activations(K, rng);
            rows[1] = new float[K];
            for (int i = 0; i < K; i++) rows[1][i] = (i % 32 == 0 ? 127f : rng.nextInt(-127, 127) + 0.5f) * (i % 3 == 0 ? -1 : 1);
            rows[2] = new float[K];
            for (int i = 0; i < K; i++) rows[2][i] = (float) rng.nextDouble(-1e-3, 1e-3) * (float) Math.pow(10, rng.nextInt(-3, 4));
            for (float[] x : rows) {
                short[] cv = new short[GgmlDots.codesPerRow(K) + 2], cs = new short[GgmlDots.codesPerRow(K) + 2];
                float[] dv = new float[K / 32 + 1], ds = new float[K / 32 + 1];
                GgmlDots.quantizeQ8_0(x, 0, K, cv, 2, dv, 1);
                GgmlDots.quantizeQ8_0Scalar(x, 0, K, cs, 2, ds, 1);
                assertArrayEquals(cs, cv, "K=" + K + " codes and sums (vector path " + GgmlDots.VECTOR + ")");
                assertArrayEquals(ds, dv, "K=" + K + " scales");
            }
        }
    }

    /// Q8_K: per 256 values d = max/−127 of the signed value of largest magnitude, that value's code −127, every code
    /// in [−127, 127] within half a step of x/d, the 32-sums those of the codes; an all-zero block gives d 0, codes 0.
    /// Q8_0: d the half of amax/127, codes rint(x/amax·127).
    @Test
    void activationQuantizersKeepTheirDefinitions() {
        var rng = new SplittableRandom(23);
        int K = 768;
        float[] x = activations(K, rng);
        java.util.Arrays.fill(x, 512, 768, 0f);
        x[300] = -40f;   // the second block's extreme is negative
        short[] c = new short[GgmlDots.codesPerRow(K)];
        float[] d = new float[K / 32];
        GgmlDots.quantizeQ8_K(x, 0, K, c, 0, d, 0);
        assertEquals(0f, d[2]);
        assertEquals(-40f / -127f, d[1]);
        assertEquals(-127, c[300]);
        for (int i = 0; i < K; i++) {
            assertTrue(Math.abs(c[i]) <= 127);
            if (d[i / 256] != 0) assertEquals(x[i] / d[i / 256], c[i], 0.5 + 1e-4, "Q8_K code " + i);
            else assertEquals(0, c[i]);
        }
        for (int s = 0; s < K / 32; s++) {
            int sum = 0;
            for (int j = 0; j < 32; j++) sum += c[s * 32 + j];
            assertEquals(sum, c[K + s], "Q8_K sum " + s);
        }
        GgmlDots.quantizeQ8_0(x, 0, K, c, 0, d, 0);
        for (int b = 0; b < K / 32; b++) {
            float amax = 0;
            for (int j = 0; j < 32; j++) amax = Math.max(amax, Math.abs(x[b * 32 + j]));
            assertEquals(Float.float16ToFloat(Float.floatToFloat16(amax / 127f)), d[b], "Q8_0 d " + b);
            for (int j = 0; j < 32; j++)
                assertEquals(amax == 0 ? 0 : (int) Math.rint(x[b * 32 + j] * (127f / amax)), c[b * 32 + j], "Q8_0 code " + (b * 32 + j));
        }
    }
}
