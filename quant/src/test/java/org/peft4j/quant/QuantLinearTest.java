package org.peft4j.quant;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;
import org.peft4j.core.Gemm;
import org.peft4j.core.Gemms;

import static org.junit.jupiter.api.Assertions.*;

/// The tiled quantized linear against its control: dequantize the whole weight, then a dense sgemm. And the fast
/// dequantizer (pair table) against the per-element definition `code[q(i)] · absmax'[i / blockSize]`.
class QuantLinearTest {
    static float[] normal(int n, long seed) { return Nf4RoundTripTest.normal(n, seed); }

    @Test
    void fastDequantizeIsBitExactWithTheDefinitionOnEveryRange() {
        for (QuantType type : QuantType.values())
            for (boolean dq : new boolean[]{false, true}) {
                int n = 173 * 7;   // odd rows: tiles start at odd elements, blocks of 64 cross rows
                Nf4Tensor w = Nf4Tensor.quantize(type, normal(n, 3), new long[]{7, 173}, 64, dq);
                float[] code = type.code(), ref = new float[n];
                for (int i = 0; i < n; i++) ref[i] = code[w.code(i)] * w.absmax().get(i / 64);
                for (int[] r : new int[][]{{0, n}, {1, n}, {0, n - 1}, {63, 64}, {64, 65}, {5, 6}, {173, 346}, {1, 2}, {100, 100}}) {
                    float[] out = new float[n + 3];
                    w.dequantize(r[0], r[1], out, 3);
                    for (int i = r[0]; i < r[1]; i++)
                        if (Float.floatToRawIntBits(out[3 + i - r[0]]) != Float.floatToRawIntBits(ref[i]))
                            fail(type + " dq=" + dq + " range " + r[0] + ".." + r[1] + " [" + i + "]: " + out[3 + i - r[0]] + " != " + ref[i]);
                }
            }
    }

    /// N=5 rows; (M, K) = (37, 173): one partial tile, odd rows; (600, 4500): 3 tiles (256, 256, 88), parallel dequant.
    @ParameterizedTest
    @ValueSource(strings = {"scalar", "java", "auto"})
    void forwardAndInputGradientMatchDequantizeThenDense(String mode) {
        Gemm gemm = Gemms.get(mode);
        for (int[] d : new int[][]{{5, 173, 37}, {5, 4500, 600}}) {
            int N = d[0], K = d[1], M = d[2];
            Nf4Tensor w = Nf4Tensor.quantize(QuantType.NF4, normal(M * K, K), new long[]{M, K}, 64, true);
            float[] W = new float[M * K];
            w.dequantize(W);
            float[] x = normal(N * K, 11), bias = normal(M, 12), dy = normal(N * M, 13), dx0 = normal(N * K, 14);
            float[] scratch = new float[QuantLinear.scratchSize(K, M)];
            assertEquals(Math.min(M, Math.max(QuantLinear.TILE_ROWS, QuantLinear.TILE_FLOATS / K)) * K, scratch.length);

            float[] y = new float[N * M], yRef = new float[N * M];
            java.util.Arrays.fill(y, Float.NaN);   // forward overwrites: beta = 0
            QuantLinear.forward(gemm, y, x, w, bias, scratch, N, K, M);
            gemm.sgemm(false, true, N, M, K, 1f, x, 0, K, W, 0, K, 0f, yRef, 0, M);
            for (int n = 0; n < N; n++) for (int m = 0; m < M; m++) yRef[n * M + m] += bias[m];
            // Each y element is one dot product over K in both paths; a tile changes only which columns a call
            // computes, so a kernel that blocks over K the same way gives identical bits. Allow reassociation anyway.
            assertClose("y", y, yRef, x, W, N, M, K, false);

            float[] dx = dx0.clone(), dxRef = dx0.clone();
            QuantLinear.backwardInput(gemm, dx, dy, w, scratch, N, K, M);
            gemm.sgemm(false, false, N, K, M, 1f, dy, 0, M, W, 0, K, 1f, dxRef, 0, K);
            assertClose("dx", dx, dxRef, dy, W, N, K, M, true);
        }
    }

    /// |got − ref| ≤ 2·γ(len + 1)·(Σ|a·b| + |c0|) per element, γ(n) = n·u/(1 − n·u): the standard float32 bound for
    /// two summation orders of the same dot product (Higham, Accuracy and Stability, §3.1), computed in double.
    /// For the forward, a: (N, len) rows against W rows; for the input gradient, dy (N, len) against W columns.
    static void assertClose(String what, float[] got, float[] ref, float[] a, float[] W, int N, int cols, int len, boolean nn) {
        double u = Math.ulp(1f) / 2, g = 2 * (len + 1) * u / (1 - (len + 1) * u);
        for (int n = 0; n < N; n++)
            for (int j = 0; j < cols; j++) {
                double s = Math.abs(ref[n * cols + j]);
                for (int p = 0; p < len; p++) s += Math.abs(a[n * len + p] * (nn ? W[p * cols + j] : W[j * len + p]));
                double diff = Math.abs(got[n * cols + j] - ref[n * cols + j]);
                if (!(diff <= g * s))
                    fail(what + "[" + n + ", " + j + "]: " + got[n * cols + j] + " vs " + ref[n * cols + j] + ", diff " + diff + " > bound " + g * s);
            }
    }

    @Test
    void rejectsWrongShapeOrShortScratch() {
        Nf4Tensor w = Nf4Tensor.quantize(QuantType.NF4, normal(64 * 8, 1), new long[]{8, 64}, 64, false);
        float[] y = new float[8], x = new float[64];
        var e = assertThrows(IllegalArgumentException.class, () -> QuantLinear.forward(Gemms.get("scalar"), y, x, w, null, new float[64 * 8], 1, 32, 16));
        assertTrue(e.getMessage().contains("[8, 64]"), e.getMessage());
        e = assertThrows(IllegalArgumentException.class, () -> QuantLinear.forward(Gemms.get("scalar"), y, x, w, null, new float[64], 1, 64, 8));
        assertTrue(e.getMessage().contains("scratchSize"), e.getMessage());
    }
}
