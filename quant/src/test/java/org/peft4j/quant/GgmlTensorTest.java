package org.peft4j.quant;

import org.junit.jupiter.api.Test;

import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.*;

/// Every block type's vector dequantization ([GgmlKernels]) against its scalar twin, bit for bit (the integer dots
/// with rounded activations: GgmlDotsTest).
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
}
