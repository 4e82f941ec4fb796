package org.peft4j.quant;

/// bitsandbytes' blockwise 8-bit quantizer over a sorted 256-entry code map (a [DynamicMap]): per block of
/// `blockSize` values, `absmax = max|v|` and each value's code is the nearest map entry to `fl32(v · fl32(1/absmax))`,
/// found by the CUDA kernel's binary search (an exact tie at a float32 midpoint goes to the even index). Used for
/// double-quantized absmax (block 256, signed map) and 8-bit Adam state (block 256). Reference: bitsandbytes
/// `csrc/kernels.cu` `dQuantize<0>`, `kQuantizeBlockwise`, `kDequantizeBlockwise`; specs.md §1.4, §1.6.
public final class Blockwise8 {
    private Blockwise8() {}

    /// The code of `x` in the ascending 256-entry `map`: a transcription of `dQuantize<0>` (non-stochastic).
    public static int quantizeValue(float[] map, float x) {
        int pivot = 127, upperPivot = 255, lowerPivot = 0;
        float lower = -1f, upper = 1f;
        float val = map[pivot];
        for (int i = 64; i > 0; i >>= 1) {
            if (x > val) { lowerPivot = pivot; lower = val; pivot += i; }
            else { upperPivot = pivot; upper = val; pivot -= i; }
            val = map[pivot];
        }
        if (upperPivot == 255) upper = map[upperPivot];
        if (lowerPivot == 0) lower = map[lowerPivot];
        if (x > val) return x > (upper + val) * 0.5f ? upperPivot : pivot;
        return x < (lower + val) * 0.5f ? lowerPivot : pivot;
    }

    /// Quantizes `x` (n) into `codes` (n) and `absmax` (ceil(n / blockSize)). NaN inputs do not raise a block's absmax
    /// (CUDA's `fmaxf`); an all-zero block gets absmax 0 and the code of NaN (0), as on the GPU.
    public static void quantize(byte[] codes, float[] absmax, float[] x, float[] map, int blockSize) {
        int n = x.length;
        checkSizes(codes.length, absmax.length, n, map, blockSize);
        for (int b = 0, from = 0; from < n; b++, from += blockSize) {
            int to = Math.min(n, from + blockSize);
            float m = 0f;
            for (int i = from; i < to; i++) { float a = Math.abs(x[i]); if (a > m) m = a; }
            absmax[b] = m;
            float inv = 1f / m;
            for (int i = from; i < to; i++) codes[i] = (byte) quantizeValue(map, x[i] * inv);
        }
    }

    /// `out[i] = fl32(map[codes[i]] · absmax[i / blockSize])`.
    public static void dequantize(float[] out, byte[] codes, float[] absmax, float[] map, int blockSize) {
        int n = codes.length;
        checkSizes(n, absmax.length, out.length, map, blockSize);
        for (int i = 0; i < n; i++) out[i] = map[codes[i] & 0xff] * absmax[i / blockSize];
    }

    private static void checkSizes(int codes, int absmax, int n, float[] map, int blockSize) {
        if (map.length != 256) throw new IllegalArgumentException("an 8-bit code map has 256 entries, got " + map.length);
        if (blockSize <= 0) throw new IllegalArgumentException("block size must be positive, got " + blockSize);
        int blocks = (int) ((n + (long) blockSize - 1) / blockSize);
        if (codes != n || absmax != blocks)
            throw new IllegalArgumentException(n + " values in blocks of " + blockSize + " need " + n + " codes and " + blocks
                    + " absmax values, got " + codes + " and " + absmax);
    }
}
