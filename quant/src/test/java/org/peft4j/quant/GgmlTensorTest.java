package org.peft4j.quant;

import org.junit.jupiter.api.Test;

import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.*;

/// The Vector API kernels against their scalar twins: the Q8_0 and Q4_0 block dots with Q8_0 activations (both sum
/// exact integer block dots; they differ only in where the float scaling rounds, per lane vs per block, so they agree
/// to a few ulps of the row's magnitude), and every block type's vector dequantization ([GgmlKernels]), bit for bit.
class GgmlTensorTest {
    /// Random blocks of `type`: random bytes with each block's half scales set to finite values in `[lo, hi)`, some
    /// blocks all-zero and some at extreme scales.
    static byte[] blocks(GgmlBlocks type, int n, SplittableRandom rng) {
        byte[] b = new byte[n * type.blockBytes];
        rng.nextBytes(b);
        int dAt = type == GgmlBlocks.Q6_K ? 208 : 0, halves = type == GgmlBlocks.Q4_K || type == GgmlBlocks.Q5_K ? 2 : 1;
        for (int k = 0; k < n; k++) {
            int at = k * type.blockBytes;
            if (k % 7 == 3) { java.util.Arrays.fill(b, at, at + type.blockBytes, (byte) 0); continue; }   // an all-zero block
            for (int h = 0; h < halves; h++) {
                float v = k % 11 == 5 ? 65504f * (h == 0 ? 1 : -1) : (float) rng.nextDouble(-2, 2);   // ±max half, or ordinary
                short d = Float.floatToFloat16(v);
                b[at + dAt + 2 * h] = (byte) d;
                b[at + dAt + 2 * h + 1] = (byte) (d >> 8);
            }
        }
        return b;
    }

    @Test
    void vectorDequantizationEqualsTheScalarTwinBitForBit() {
        var rng = new SplittableRandom(12);
        for (GgmlBlocks type : GgmlBlocks.values())
            for (int n : new int[]{1, 7, 31, 33}) {
                byte[] b = blocks(type, n + 1, rng);
                float[] want = new float[(n + 1) * type.blockSize + 3], got = new float[want.length];
                type.dequantize(b, type.blockBytes, want, 3, n);        // from the second block, at an unaligned offset
                GgmlKernels.dequantize(type, b, type.blockBytes, got, 3, n);
                for (int i = 0; i < want.length; i++)
                    assertEquals(Float.floatToRawIntBits(want[i]), Float.floatToRawIntBits(got[i]),
                            type + " x" + n + " [" + i + "]: " + want[i] + " vs " + got[i] + " (vector path " + GgmlKernels.VECTOR + ")");
            }
    }

    @Test
    void vectorQ4DotMatchesTheScalarTwin() {
        var rng = new SplittableRandom(13);
        for (int K : new int[]{32, 64, 576, 1536}) {
            int M = 9;
            GgmlTensor t = new GgmlTensor(GgmlBlocks.Q4_0, M, K, blocks(GgmlBlocks.Q4_0, M * K / 32, rng));
            float[] w = new float[M * K], x = new float[K];
            t.dequantizeScalar(0, (long) M * K, w, 0);
            for (int i = 0; i < K; i++) x[i] = (float) (rng.nextDouble(-1, 1) * (i % 5 == 0 ? 10 : 1));
            float[] s = new float[t.q8ScratchPerRow()];
            GgmlTensor.quantizeRowQ8(x, 0, K, s, 0, K);
            for (int m = 0; m < M; m++) {
                float a = t.dotQ8(m, s, 0, K), b = t.dotQ4Vector(m, s, 0, K);
                double mag = 0;
                for (int j = 0; j < K; j++) mag += Math.abs(w[m * K + j] * x[j]);
                assertEquals(a, b, 1e-6 * (1 + mag), "K=" + K + " row " + m);
            }
        }
    }

    @Test
    void vectorQ8DotMatchesTheScalarTwin() {
        var rng = new SplittableRandom(11);
        for (int K : new int[]{32, 64, 576, 1536}) {
            int M = 9;
            float[] w = new float[M * K], x = new float[K];
            for (int i = 0; i < w.length; i++) w[i] = (float) rng.nextDouble(-1, 1);
            for (int i = 0; i < K; i++) x[i] = (float) (rng.nextDouble(-1, 1) * (i % 5 == 0 ? 10 : 1));
            GgmlTensor t = GgmlTensor.quantize(GgmlBlocks.Q8_0, w, M, K);
            float[] s = new float[t.q8ScratchPerRow()];
            GgmlTensor.quantizeRowQ8(x, 0, K, s, 0, K);
            for (int m = 0; m < M; m++) {
                float a = t.dotQ8(m, s, 0, K), b = t.dotQ8Vector(m, s, 0, K);
                double mag = 0;
                for (int j = 0; j < K; j++) mag += Math.abs(w[m * K + j] * x[j]);
                assertEquals(a, b, 1e-6 * (1 + mag), "K=" + K + " row " + m + " (vector path " + GgmlTensor.VECTOR + ")");
            }
        }
    }
}
