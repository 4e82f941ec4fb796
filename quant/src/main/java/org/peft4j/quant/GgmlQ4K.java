package org.peft4j.quant;

/// ggml's reference Q4_K quantizer (`quantize_row_q4_K_ref`, with `make_qkx2_quants` and `nearest_int`, ggml-quants.c),
/// ported from its semantics so that a file we write holds the bytes llama.cpp's own quantizer writes: per 32-value
/// sub-block a weighted least-squares search for (scale, min) over 21 candidate inverse scales, then the 8 scales and
/// 8 mins quantized to 6 bits against the block's largest (half `d` and `dmin`), and the values requantized with the
/// rounded scales. Every float operation is the C code's, in its order and without fused multiply-adds (ggml-base is
/// compiled for baseline x86-64), so the result is bit-exact; checked against the compiled C reference
/// (GgmlBlocksVectorsTest).
final class GgmlQ4K {
    private GgmlQ4K() {}

    /// ggml `nearest_int`: round to nearest, ties to even, by adding 1.5·2²³ and reading the mantissa (|v| < 2²²).
    static int nearestInt(float v) {
        float t = v + 12582912f;
        return (Float.floatToRawIntBits(t) & 0x007fffff) - 0x00400000;
    }

    /// One 256-value block x[src ..] into out[dst ..] (144 bytes: half d, half dmin, scales[12], qs[128]).
    static void quantize(float[] x, int src, byte[] out, int dst) {
        int[] L = new int[256], laux = new int[32];
        float[] weights = new float[32], mins = new float[8], scales = new float[8], theMin = new float[1];
        float maxScale = 0, maxMin = 0;
        for (int j = 0; j < 8; j++) {
            float sumX2 = 0;
            for (int l = 0; l < 32; l++) sumX2 += x[src + 32 * j + l] * x[src + 32 * j + l];
            float avX = (float) Math.sqrt(sumX2 / 32);
            for (int l = 0; l < 32; l++) weights[l] = avX + Math.abs(x[src + 32 * j + l]);
            scales[j] = makeQkx2Quants(x, src + 32 * j, weights, L, 32 * j, theMin, laux);
            mins[j] = theMin[0];
            if (scales[j] > maxScale) maxScale = scales[j];
            if (mins[j] > maxMin) maxMin = mins[j];
        }
        float invScale = maxScale > 0 ? 63f / maxScale : 0f, invMin = maxMin > 0 ? 63f / maxMin : 0f;
        int sc = dst + 4;
        for (int j = 0; j < 12; j++) out[sc + j] = 0;
        for (int j = 0; j < 8; j++) {
            int ls = Math.min(63, nearestInt(invScale * scales[j]) & 0xFF), lm = Math.min(63, nearestInt(invMin * mins[j]) & 0xFF);
            if (j < 4) {
                out[sc + j] = (byte) ls;
                out[sc + j + 4] = (byte) lm;
            } else {
                out[sc + j + 4] = (byte) ((ls & 0xF) | ((lm & 0xF) << 4));
                out[sc + j - 4] |= (byte) ((ls >> 4) << 6);
                out[sc + j] |= (byte) ((lm >> 4) << 6);
            }
        }
        GgmlBlocks.putHalf(out, dst, maxScale / 63f);
        GgmlBlocks.putHalf(out, dst + 2, maxMin / 63f);
        float dh = Float.float16ToFloat((short) ((out[dst] & 0xFF) | (out[dst + 1] << 8)));
        float mh = Float.float16ToFloat((short) ((out[dst + 2] & 0xFF) | (out[dst + 3] << 8)));
        for (int j = 0; j < 8; j++) {
            int smk = GgmlBlocks.scaleMinK4(out, sc, j);
            float d = dh * (smk & 0xFF);
            if (d == 0) continue;   // (the sub-block keeps the levels of the search, as in C)
            float dm = mh * (smk >>> 8);
            for (int ii = 0; ii < 32; ii++) L[32 * j + ii] = Math.max(0, Math.min(15, nearestInt((x[src + 32 * j + ii] + dm) / d)));
        }
        int q = dst + 16;
        for (int j = 0; j < 256; j += 64, q += 32)
            for (int l = 0; l < 32; l++) out[q + l] = (byte) (L[j + l] | (L[j + l + 32] << 4));
    }

    /// `make_qkx2_quants(32, 15, x, weights, L, &the_min, Laux, -1, 0.1, 20, false)`: levels into L[lo ..< lo + 32],
    /// the scale returned, −min into theMin[0].
    private static float makeQkx2Quants(float[] x, int xo, float[] weights, int[] L, int lo, float[] theMin, int[] laux) {
        final int n = 32, nmax = 15, nstep = 20;
        final float rmin = -1f, rdelta = 0.1f;
        float min = x[xo], max = x[xo], sumW = weights[0], sumX = sumW * x[xo];
        for (int i = 1; i < n; i++) {
            if (x[xo + i] < min) min = x[xo + i];
            if (x[xo + i] > max) max = x[xo + i];
            float w = weights[i];
            sumW += w;
            sumX += w * x[xo + i];
        }
        if (min > 0) min = 0;
        if (max == min) {
            for (int i = 0; i < n; i++) L[lo + i] = 0;
            theMin[0] = -min;
            return 0f;
        }
        float iscale = nmax / (max - min), scale = 1 / iscale, bestError = 0;
        for (int i = 0; i < n; i++) {
            int l = nearestInt(iscale * (x[xo + i] - min));
            L[lo + i] = Math.max(0, Math.min(nmax, l));
            float diff = scale * L[lo + i] + min - x[xo + i];
            bestError += weights[i] * (diff * diff);
        }
        for (int is = 0; is <= nstep; is++) {
            iscale = (rmin + rdelta * is + nmax) / (max - min);
            float sumL = 0, sumL2 = 0, sumXl = 0;
            for (int i = 0; i < n; i++) {
                int l = Math.max(0, Math.min(nmax, nearestInt(iscale * (x[xo + i] - min))));
                laux[i] = l;
                float w = weights[i];
                sumL += w * l;
                sumL2 += w * l * l;
                sumXl += w * l * x[xo + i];
            }
            float D = sumW * sumL2 - sumL * sumL;
            if (D > 0) {
                float thisScale = (sumW * sumXl - sumX * sumL) / D, thisMin = (sumL2 * sumX - sumL * sumXl) / D;
                if (thisMin > 0) {
                    thisMin = 0;
                    thisScale = sumXl / sumL2;
                }
                float curError = 0;
                for (int i = 0; i < n; i++) {
                    float diff = thisScale * laux[i] + thisMin - x[xo + i];
                    curError += weights[i] * (diff * diff);
                }
                if (curError < bestError) {
                    for (int i = 0; i < n; i++) L[lo + i] = laux[i];
                    bestError = curError;
                    scale = thisScale;
                    min = thisMin;
                }
            }
        }
        theMin[0] = -min;
        return scale;
    }
}
