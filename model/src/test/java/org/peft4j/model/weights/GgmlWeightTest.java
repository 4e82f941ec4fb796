package org.peft4j.model.weights;

import org.junit.jupiter.api.Test;
import org.peft4j.core.Gemm;
import org.peft4j.core.kernels.ScalarGemm;
import org.peft4j.core.kernels.VectorGemm;
import org.peft4j.quant.GgmlBlocks;
import org.peft4j.quant.GgmlTensor;

import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.*;

/// [GgmlWeight] against controls written here: the rounded-activation forward of Q8_0/Q4_0/Q4_K against a
/// double-precision sum over this test's own quantization of x (ggml's x86 `quantize_row_q8_0`, `quantize_row_q8_K_ref`),
/// the other K-quants' tiled forward and
/// every type's input gradient against [ScalarGemm] over the scalar twin's dequantized W.
class GgmlWeightTest {
    static final int[][] SHAPES = {{1, 256}, {7, 512}, {300, 256}, {37, 768}};

    static float[] uniform(SplittableRandom rng, int n, double scale) {
        float[] a = new float[n];
        for (int i = 0; i < n; i++) a[i] = (float) (rng.nextDouble(-1, 1) * scale);
        return a;
    }

    /// A weight of `type`: Q8_0/Q4_0 quantized from random floats, K-quants as random bytes with small finite scales.
    static GgmlTensor weight(GgmlBlocks type, int out, int in, SplittableRandom rng) {
        if (type == GgmlBlocks.Q8_0 || type == GgmlBlocks.Q4_0) return GgmlTensor.quantize(type, uniform(rng, out * in, 1), out, in);
        byte[] b = new byte[(int) type.bytes((long) out * in)];
        rng.nextBytes(b);
        int dAt = type == GgmlBlocks.Q6_K ? 208 : 0;
        for (int k = 0; k < b.length; k += type.blockBytes) {
            for (int h = 0; h < (type == GgmlBlocks.Q6_K ? 1 : 2); h++) {
                short d = Float.floatToFloat16((float) rng.nextDouble(1e-4, 1e-2));
                b[k + dAt + 2 * h] = (byte) d;
                b[k + dAt + 2 * h + 1] = (byte) (d >> 8);
            }
        }
        return new GgmlTensor(type, out, in, b);
    }

    /// This test's Q8_0 rounding of x and the product in double: Σ_b d_w·d_x·Σ_j q_w·q_x with q_w·d_w from the twin.
    static double[] q8Control(GgmlTensor t, float[] x, int N) {
        int K = t.cols(), M = t.rows(), nb = K / 32;
        float[] W = new float[M * K];
        t.dequantize(W);
        double[] y = new double[N * M];
        for (int n = 0; n < N; n++)
            for (int b = 0; b < nb; b++) {
                float amax = 0;
                for (int j = 0; j < 32; j++) amax = Math.max(amax, Math.abs(x[n * K + b * 32 + j]));
                float dx = Float.float16ToFloat(Float.floatToFloat16(amax / 127f)), id = amax == 0 ? 0 : 127f / amax;
                for (int m = 0; m < M; m++) {
                    double s = 0;
                    for (int j = 0; j < 32; j++) s += (double) W[m * K + b * 32 + j] * Math.rint(x[n * K + b * 32 + j] * id);
                    y[n * M + m] += s * dx;
                }
            }
        return y;
    }

    /// This test's Q8_K rounding of x (ggml `quantize_row_q8_K_ref`: per 256 values iscale = −127/max of the signed
    /// value of largest magnitude, codes min(127, rint(iscale·x)), d = 1/iscale) and the product in double over the
    /// twin's dequantized W.
    static double[] q8KControl(GgmlTensor t, float[] x, int N) {
        int K = t.cols(), M = t.rows();
        float[] W = new float[M * K];
        t.dequantize(W);
        double[] y = new double[N * M];
        for (int n = 0; n < N; n++)
            for (int b = 0; b < K / 256; b++) {
                int o = n * K + b * 256;
                float max = 0;
                for (int j = 0; j < 256; j++) if (Math.abs(x[o + j]) > Math.abs(max)) max = x[o + j];
                if (max == 0) continue;
                float iscale = -127f / max, dx = 1 / iscale;
                for (int m = 0; m < M; m++) {
                    double s = 0;
                    for (int j = 0; j < 256; j++) s += (double) W[m * K + b * 256 + j] * Math.min(127, Math.rint(iscale * x[o + j]));
                    y[n * M + m] += s * dx;
                }
            }
        return y;
    }

    @Test
    void q8ActivationForwardMatchesTheControl() {
        var rng = new SplittableRandom(3);
        for (GgmlBlocks type : new GgmlBlocks[]{GgmlBlocks.Q8_0, GgmlBlocks.Q4_0, GgmlBlocks.Q4_K})
            for (int[] s : SHAPES)
                for (int N : new int[]{1, 5}) {
                    GgmlWeight w = new GgmlWeight(weight(type, s[0], s[1], rng));
                    float[] x = uniform(rng, N * s[1], 2), bias = uniform(rng, s[0], 1), y = new float[N * s[0]];
                    x[0] = 0;   // an all-zero block in the first row
                    java.util.Arrays.fill(x, 0, Math.min(32, x.length), 0f);
                    w.forward(ScalarGemm.INSTANCE, y, x, bias, N, new float[w.scratchSize()]);
                    double[] ref = type == GgmlBlocks.Q4_K ? q8KControl(w.tensor(), x, N) : q8Control(w.tensor(), x, N);
                    for (int i = 0; i < y.length; i++) {
                        double want = ref[i] + bias[i % s[0]];
                        // float sums over K/32 blocks of exact integer dots: relative error ~ (K/32)·2⁻²⁴ of the magnitude
                        assertEquals(want, y[i], 1e-5 * (1 + Math.abs(want)), type + " " + s[0] + "x" + s[1] + " N=" + N + " y[" + i + "]");
                    }
                }
    }

    @Test
    void kQuantForwardAndEveryInputGradientMatchScalarGemmOnTheTwin() {
        var rng = new SplittableRandom(4);
        for (GgmlBlocks type : GgmlBlocks.values())
            for (int[] s : SHAPES) {
                int out = s[0], in = s[1], N = 3;
                GgmlWeight w = new GgmlWeight(weight(type, out, in, rng));
                float[] W = new float[out * in];
                w.dequantize(W);
                assertEquals(type.bytes((long) out * in), w.bytes());
                assertEquals(type.name(), w.dtype());
                float[] x = uniform(rng, N * in, 1), dy = uniform(rng, N * out, 1), dx0 = uniform(rng, N * in, 1);
                for (Gemm gemm : new Gemm[]{ScalarGemm.INSTANCE, VectorGemm.INSTANCE}) {
                    float[] scratch = new float[w.scratchSize()];
                    if (!w.tensor().q8Activations()) {
                        float[] y = new float[N * out], ref = new float[N * out];
                        w.forward(gemm, y, x, null, N, scratch);
                        ScalarGemm.INSTANCE.sgemm(false, true, N, out, in, 1f, x, 0, in, W, 0, in, 0f, ref, 0, out);
                        BaseWeightTest.assertDotClose(type + " y", y, ref, x, W, null, N, out, in, false);
                    }
                    float[] dx = dx0.clone(), dxRef = dx0.clone();
                    w.backwardInput(gemm, dx, dy, N, scratch);
                    ScalarGemm.INSTANCE.sgemm(false, false, N, in, out, 1f, dy, 0, out, W, 0, in, 1f, dxRef, 0, in);
                    BaseWeightTest.assertDotClose(type + " dx", dx, dxRef, dy, W, dx0, N, in, out, true);
                }
            }
    }

    /// Float-activation products of every type ([GgmlWeight#training]; K-quants always) on the row path (N ≤ 32 with
    /// a vector GEMM: 4 rows dequantized by the Vector API twins into a buffer, then dotted) and on the tiles (N = 33),
    /// against ScalarGemm over the scalar dequantization: the same sums but for the order of terms.
    @Test
    void floatActivationRowPathAndTilesMatchScalarGemmOnTheTwin() {
        var rng = new SplittableRandom(6);
        for (GgmlBlocks type : GgmlBlocks.values())
            for (int[] s : SHAPES)
                for (int N : new int[]{1, 32, 33}) {
                    int out = s[0], in = s[1];
                    GgmlWeight w = GgmlWeight.training(weight(type, out, in, rng));
                    float[] W = new float[out * in];
                    w.tensor().dequantizeScalar(0, (long) out * in, W, 0);
                    float[] x = uniform(rng, N * in, 1), bias = uniform(rng, out, 1), y = new float[N * out], ref = new float[N * out];
                    w.forward(VectorGemm.INSTANCE, y, x, bias, N, new float[w.scratchSize()]);
                    ScalarGemm.INSTANCE.sgemm(false, true, N, out, in, 1f, x, 0, in, W, 0, in, 0f, ref, 0, out);
                    for (int n = 0; n < N; n++) for (int m = 0; m < out; m++) ref[n * out + m] += bias[m];
                    BaseWeightTest.assertDotClose(type + " " + out + "x" + in + " N=" + N, y, ref, x, W, bias, N, out, in, false);
                }
    }

    @Test
    void rejectsBadShapes() {
        assertThrows(IllegalArgumentException.class, () -> new GgmlTensor(GgmlBlocks.Q8_0, 2, 48, new byte[2 * 34 * 2]));
        assertThrows(IllegalArgumentException.class, () -> new GgmlTensor(GgmlBlocks.Q8_0, 2, 32, new byte[67]));
        GgmlTensor t = GgmlTensor.quantize(GgmlBlocks.Q8_0, new float[64], 2, 32);
        assertThrows(IllegalArgumentException.class, () -> t.dequantize(16, 32, new float[32], 0));
        assertThrows(UnsupportedOperationException.class, () -> GgmlBlocks.Q5_K.quantize(new float[256], 0, 256));
    }
}
