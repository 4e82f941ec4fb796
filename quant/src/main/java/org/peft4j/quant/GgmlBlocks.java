package org.peft4j.quant;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;

/// ggml's quantized block formats as scalar reference code: each block's byte layout, its dequantization
/// (`dequantize_row_*`) and, for Q8_0 and Q4_0, its reference quantizer (`quantize_row_*_ref`), written from the
/// layouts in specs.md §4.2 (ggml-common.h, ggml-quants.c). These are the twins the tiled and vectorized products in
/// [GgmlTensor] are tested against. All scales are IEEE half; all integers little-endian.
public enum GgmlBlocks {
    /// 34 bytes: half d; int8 qs[32].   y = qs·d
    Q8_0(32, 34),
    /// 18 bytes: half d; uint8 qs[16] (low nibbles = elements 0..15, high nibbles = 16..31).   y = (q − 8)·d
    Q4_0(32, 18),
    /// 144 bytes: half d; half dmin; uint8 scales[12] (eight 6-bit scale/min pairs); uint8 qs[128].
    Q4_K(256, 144),
    /// 176 bytes: half d; half dmin; uint8 scales[12]; uint8 qh[32] (fifth bits); uint8 qs[128].
    Q5_K(256, 176),
    /// 210 bytes: uint8 ql[128]; uint8 qh[64]; int8 scales[16]; half d.
    Q6_K(256, 210);

    static final ValueLayout.OfShort HALF = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    /// Elements per block.
    public final int blockSize;
    /// Bytes per block.
    public final int blockBytes;

    GgmlBlocks(int blockSize, int blockBytes) { this.blockSize = blockSize; this.blockBytes = blockBytes; }

    /// The block type named as ggml names it ("Q8_0"), or null.
    public static GgmlBlocks byName(String name) {
        for (GgmlBlocks b : values()) if (b.name().equals(name)) return b;
        return null;
    }

    /// Bytes of `n` elements (a multiple of [#blockSize]).
    public long bytes(long n) {
        if (n % blockSize != 0) throw new IllegalArgumentException(n + " elements are not whole " + this + " blocks of " + blockSize);
        return n / blockSize * blockBytes;
    }

    private static float half(byte[] b, int at) { return Float.float16ToFloat((short) ((b[at] & 0xFF) | (b[at + 1] << 8))); }

    /// Dequantizes `blocks` whole blocks starting at byte `src` of `b` into `dst[off ..]` (blockSize floats each).
    public void dequantize(byte[] b, int src, float[] dst, int off, int blocks) {
        for (int k = 0; k < blocks; k++, src += blockBytes, off += blockSize) {
            switch (this) {
                case Q8_0 -> {
                    float d = half(b, src);
                    for (int j = 0; j < 32; j++) dst[off + j] = b[src + 2 + j] * d;
                }
                case Q4_0 -> {
                    float d = half(b, src);
                    for (int j = 0; j < 16; j++) {
                        int q = b[src + 2 + j] & 0xFF;
                        dst[off + j] = ((q & 0xF) - 8) * d;
                        dst[off + j + 16] = ((q >>> 4) - 8) * d;
                    }
                }
                case Q4_K -> dequantizeQ4K(b, src, dst, off);
                case Q5_K -> dequantizeQ5K(b, src, dst, off);
                case Q6_K -> dequantizeQ6K(b, src, dst, off);
            }
        }
    }

    /// Scale and min of sub-block `j` (0..7) from the 12 packed bytes at `s` (ggml `get_scale_min_k4`); result
    /// `scale | min << 8`.
    static int scaleMinK4(byte[] b, int s, int j) {
        int sc, m;
        if (j < 4) {
            sc = b[s + j] & 63;
            m = b[s + j + 4] & 63;
        } else {
            sc = (b[s + j + 4] & 0xF) | (((b[s + j - 4] & 0xFF) >>> 6) << 4);
            m = ((b[s + j + 4] & 0xFF) >>> 4) | (((b[s + j] & 0xFF) >>> 6) << 4);
        }
        return sc | m << 8;
    }

    /// `dequantize_row_q4_K`: per 64-element chunk, sub-blocks 2c (low nibbles) and 2c+1 (high nibbles) of 32 bytes.
    private static void dequantizeQ4K(byte[] b, int src, float[] y, int off) {
        float d = half(b, src), min = half(b, src + 2);
        int scales = src + 4, q = src + 16;
        for (int c = 0; c < 4; c++, q += 32, off += 64) {
            int sm1 = scaleMinK4(b, scales, 2 * c), sm2 = scaleMinK4(b, scales, 2 * c + 1);
            float d1 = d * (sm1 & 0xFF), m1 = min * (sm1 >>> 8);
            float d2 = d * (sm2 & 0xFF), m2 = min * (sm2 >>> 8);
            for (int l = 0; l < 32; l++) y[off + l] = d1 * (b[q + l] & 0xF) - m1;
            for (int l = 0; l < 32; l++) y[off + 32 + l] = d2 * ((b[q + l] & 0xFF) >>> 4) - m2;
        }
    }

    /// `dequantize_row_q5_K`: as Q4_K plus a fifth bit from qh (bit 2c for the low half, 2c+1 for the high half).
    private static void dequantizeQ5K(byte[] b, int src, float[] y, int off) {
        float d = half(b, src), min = half(b, src + 2);
        int scales = src + 4, qh = src + 16, q = src + 48;
        for (int c = 0; c < 4; c++, q += 32, off += 64) {
            int sm1 = scaleMinK4(b, scales, 2 * c), sm2 = scaleMinK4(b, scales, 2 * c + 1);
            float d1 = d * (sm1 & 0xFF), m1 = min * (sm1 >>> 8);
            float d2 = d * (sm2 & 0xFF), m2 = min * (sm2 >>> 8);
            int u1 = 1 << (2 * c), u2 = 2 << (2 * c);
            for (int l = 0; l < 32; l++) y[off + l] = d1 * ((b[q + l] & 0xF) + ((b[qh + l] & u1) != 0 ? 16 : 0)) - m1;
            for (int l = 0; l < 32; l++) y[off + 32 + l] = d2 * (((b[q + l] & 0xFF) >>> 4) + ((b[qh + l] & u2) != 0 ? 16 : 0)) - m2;
        }
    }

    /// `dequantize_row_q6_K`: two 128-element halves, each from 64 ql bytes, 32 qh bytes and 8 int8 scales.
    private static void dequantizeQ6K(byte[] b, int src, float[] y, int off) {
        float d = half(b, src + 208);
        int ql = src, qh = src + 128, sc = src + 192;
        for (int n = 0; n < 2; n++, ql += 64, qh += 32, sc += 8, off += 128) {
            for (int l = 0; l < 32; l++) {
                int is = l / 16, h = b[qh + l] & 0xFF;
                int q1 = ((b[ql + l] & 0xF) | ((h & 3) << 4)) - 32;
                int q2 = ((b[ql + l + 32] & 0xF) | (((h >>> 2) & 3) << 4)) - 32;
                int q3 = (((b[ql + l] & 0xFF) >>> 4) | (((h >>> 4) & 3) << 4)) - 32;
                int q4 = (((b[ql + l + 32] & 0xFF) >>> 4) | (((h >>> 6) & 3) << 4)) - 32;
                y[off + l] = d * b[sc + is] * q1;
                y[off + l + 32] = d * b[sc + is + 2] * q2;
                y[off + l + 64] = d * b[sc + is + 4] * q3;
                y[off + l + 96] = d * b[sc + is + 6] * q4;
            }
        }
    }

    /// Quantizes `x[off ..< off + n]` (n a multiple of the block size) into new bytes with ggml's reference
    /// quantizer: Q8_0, Q4_0 and Q4_K ([GgmlQ4K]); Q5_K and Q6_K are read, not written.
    public byte[] quantize(float[] x, int off, int n) {
        if (n % blockSize != 0) throw new IllegalArgumentException(n + " values are not whole " + this + " blocks of " + blockSize);
        byte[] out = new byte[(int) bytes(n)];
        for (int k = 0, dst = 0; k < n; k += blockSize, dst += blockBytes) {
            switch (this) {
                case Q8_0 -> quantizeQ8(x, off + k, out, dst);
                case Q4_0 -> quantizeQ4(x, off + k, out, dst);
                case Q4_K -> GgmlQ4K.quantize(x, off + k, out, dst);
                default -> throw new UnsupportedOperationException(this + " quantization is not implemented; export q8_0, q4_0 or q4_k");
            }
        }
        return out;
    }

    static void putHalf(byte[] out, int at, float v) {
        short h = Float.floatToFloat16(v);
        out[at] = (byte) h;
        out[at + 1] = (byte) (h >> 8);
    }

    /// C `roundf`: half away from zero (Java's Math.round rounds half up, wrong for negative ties).
    static int roundf(float v) { return (int) Math.copySign(Math.floor(Math.abs((double) v) + 0.5), v); }

    /// `quantize_row_q8_0_ref`: d = amax/127, q = roundf(x·(1/d)); the unrounded float d quantizes, the half is stored.
    private static void quantizeQ8(float[] x, int src, byte[] out, int dst) {
        float amax = 0;
        for (int j = 0; j < 32; j++) amax = Math.max(amax, Math.abs(x[src + j]));
        float d = amax / 127f;
        float id = d != 0 ? 1f / d : 0f;
        putHalf(out, dst, d);
        for (int j = 0; j < 32; j++) out[dst + 2 + j] = (byte) roundf(x[src + j] * id);
    }

    /// `quantize_row_q4_0_ref`: the signed value of largest magnitude (first on ties) gives d = max/−8;
    /// q = min(15, trunc(x·(1/d) + 8.5)) with the multiply-add fused (one float rounding, as gguf-py emulates).
    private static void quantizeQ4(float[] x, int src, byte[] out, int dst) {
        float amax = 0, max = 0;
        for (int j = 0; j < 32; j++) {
            float v = x[src + j];
            if (amax < Math.abs(v)) { amax = Math.abs(v); max = v; }
        }
        float d = max / -8f;
        float id = d != 0 ? 1f / d : 0f;
        putHalf(out, dst, d);
        for (int j = 0; j < 16; j++) {
            int q0 = Math.min(15, (int) Math.fma(x[src + j], id, 8.5f));
            int q1 = Math.min(15, (int) Math.fma(x[src + 16 + j], id, 8.5f));
            out[dst + 2 + j] = (byte) (q0 | q1 << 4);
        }
    }

    /// Heap copy helper for readers holding a mapped segment.
    public static byte[] copy(MemorySegment s) { return s.toArray(ValueLayout.JAVA_BYTE); }
}
