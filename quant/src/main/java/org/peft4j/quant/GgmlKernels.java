package org.peft4j.quant;

import jdk.incubator.vector.ByteVector;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.VectorSpecies;

/// The Vector API twins of [GgmlBlocks#dequantize]: whole blocks to float32, bit-identical with the scalar reference
/// (the same float operations per element: `q·d` for Q8_0/Q4_0, `d1·q − m1` as a multiply then a subtract for
/// Q4_K/Q5_K, `(d·sc)·q` for Q6_K, never fused). Every product over ggml blocks expands through here: the decode row
/// path (a few rows of W into an L1 buffer, then dotted, `RowProducts`) and the prefill/backward tiles
/// ([QuantLinear]). Bytes are loaded as many per vector as a float vector has lanes (8 on AVX2, 16 on AVX-512),
/// nibbles split with lane-wise AND/unsigned shift, widened by one byte→float conversion.
/// Reference: ggml-quants.c `dequantize_row_q8_0/q4_0/q4_K/q5_K/q6_K`.
public final class GgmlKernels {
    private GgmlKernels() {}

    static final VectorSpecies<Float> F = FloatVector.SPECIES_PREFERRED;
    static final int L = F.length();
    /// As many bytes as F has lanes.
    static final VectorSpecies<Byte> B = L == 16 ? ByteVector.SPECIES_128 : ByteVector.SPECIES_64;
    /// The vector path runs where a float vector has 8 or 16 lanes (AVX2, AVX-512); elsewhere the scalar reference.
    public static final boolean VECTOR = L == 8 || L == 16;

    private static float half(byte[] b, int at) { return Float.float16ToFloat((short) ((b[at] & 0xFF) | (b[at + 1] << 8))); }

    /// `blocks` whole blocks of `type` from byte `src` of `b` into `dst[off ..]`: the vector twin of
    /// [GgmlBlocks#dequantize] (which it calls where [#VECTOR] is false).
    public static void dequantize(GgmlBlocks type, byte[] b, int src, float[] dst, int off, int blocks) {
        if (!VECTOR) { type.dequantize(b, src, dst, off, blocks); return; }
        for (int k = 0; k < blocks; k++, src += type.blockBytes, off += type.blockSize) {
            switch (type) {
                case Q8_0 -> q8(b, src, dst, off);
                case Q4_0 -> q4(b, src, dst, off);
                case Q4_K -> q4k(b, src, dst, off);
                case Q5_K -> q5k(b, src, dst, off);
                case Q6_K -> q6k(b, src, dst, off);
            }
        }
    }

    private static FloatVector toFloat(ByteVector v) { return (FloatVector) v.convertShape(VectorOperators.B2F, F, 0); }

    private static void q8(byte[] b, int src, float[] y, int off) {
        FloatVector d = FloatVector.broadcast(F, half(b, src));
        for (int j = 0; j < 32; j += L) toFloat(ByteVector.fromArray(B, b, src + 2 + j)).mul(d).intoArray(y, off + j);
    }

    private static void q4(byte[] b, int src, float[] y, int off) {
        FloatVector d = FloatVector.broadcast(F, half(b, src));
        for (int j = 0; j < 16; j += L) {
            ByteVector q = ByteVector.fromArray(B, b, src + 2 + j);
            toFloat(q.and((byte) 0xF).sub((byte) 8)).mul(d).intoArray(y, off + j);
            toFloat(q.lanewise(VectorOperators.LSHR, 4).sub((byte) 8)).mul(d).intoArray(y, off + 16 + j);
        }
    }

    private static void q4k(byte[] b, int src, float[] y, int off) {
        float d = half(b, src), min = half(b, src + 2);
        int scales = src + 4, q = src + 16;
        for (int c = 0; c < 4; c++, q += 32, off += 64) {
            int sm1 = GgmlBlocks.scaleMinK4(b, scales, 2 * c), sm2 = GgmlBlocks.scaleMinK4(b, scales, 2 * c + 1);
            FloatVector d1 = FloatVector.broadcast(F, d * (sm1 & 0xFF)), m1 = FloatVector.broadcast(F, min * (sm1 >>> 8));
            FloatVector d2 = FloatVector.broadcast(F, d * (sm2 & 0xFF)), m2 = FloatVector.broadcast(F, min * (sm2 >>> 8));
            for (int l = 0; l < 32; l += L) {
                ByteVector v = ByteVector.fromArray(B, b, q + l);
                toFloat(v.and((byte) 0xF)).mul(d1).sub(m1).intoArray(y, off + l);
                toFloat(v.lanewise(VectorOperators.LSHR, 4)).mul(d2).sub(m2).intoArray(y, off + 32 + l);
            }
        }
    }

    private static void q5k(byte[] b, int src, float[] y, int off) {
        float d = half(b, src), min = half(b, src + 2);
        int scales = src + 4, qh = src + 16, q = src + 48;
        for (int c = 0; c < 4; c++, q += 32, off += 64) {
            int sm1 = GgmlBlocks.scaleMinK4(b, scales, 2 * c), sm2 = GgmlBlocks.scaleMinK4(b, scales, 2 * c + 1);
            FloatVector d1 = FloatVector.broadcast(F, d * (sm1 & 0xFF)), m1 = FloatVector.broadcast(F, min * (sm1 >>> 8));
            FloatVector d2 = FloatVector.broadcast(F, d * (sm2 & 0xFF)), m2 = FloatVector.broadcast(F, min * (sm2 >>> 8));
            for (int l = 0; l < 32; l += L) {
                ByteVector v = ByteVector.fromArray(B, b, q + l), h = ByteVector.fromArray(B, b, qh + l);
                // fifth bit: bit 2c of qh for the low nibbles, bit 2c+1 for the high ones, moved to bit 4
                ByteVector h1 = h.lanewise(VectorOperators.LSHR, 2 * c).and((byte) 1).lanewise(VectorOperators.LSHL, 4);
                ByteVector h2 = h.lanewise(VectorOperators.LSHR, 2 * c + 1).and((byte) 1).lanewise(VectorOperators.LSHL, 4);
                toFloat(v.and((byte) 0xF).or(h1)).mul(d1).sub(m1).intoArray(y, off + l);
                toFloat(v.lanewise(VectorOperators.LSHR, 4).or(h2)).mul(d2).sub(m2).intoArray(y, off + 32 + l);
            }
        }
    }

    private static void q6k(byte[] b, int src, float[] y, int off) {
        float d = half(b, src + 208);
        int ql = src, qh = src + 128, sc = src + 192;
        for (int n = 0; n < 2; n++, ql += 64, qh += 32, sc += 8, off += 128) {
            for (int l = 0; l < 32; l += L) {
                int is = l / 16;   // one scale per 16 elements: a vector of 8 or 16 lanes never straddles two
                ByteVector lo = ByteVector.fromArray(B, b, ql + l), hi = ByteVector.fromArray(B, b, ql + l + 32);
                ByteVector h = ByteVector.fromArray(B, b, qh + l);
                ByteVector q1 = lo.and((byte) 0xF).or(h.and((byte) 3).lanewise(VectorOperators.LSHL, 4)).sub((byte) 32);
                ByteVector q2 = hi.and((byte) 0xF).or(h.lanewise(VectorOperators.LSHR, 2).and((byte) 3).lanewise(VectorOperators.LSHL, 4)).sub((byte) 32);
                ByteVector q3 = lo.lanewise(VectorOperators.LSHR, 4).or(h.lanewise(VectorOperators.LSHR, 4).and((byte) 3).lanewise(VectorOperators.LSHL, 4)).sub((byte) 32);
                ByteVector q4 = hi.lanewise(VectorOperators.LSHR, 4).or(h.lanewise(VectorOperators.LSHR, 6).lanewise(VectorOperators.LSHL, 4)).sub((byte) 32);
                toFloat(q1).mul(d * b[sc + is]).intoArray(y, off + l);
                toFloat(q2).mul(d * b[sc + is + 2]).intoArray(y, off + l + 32);
                toFloat(q3).mul(d * b[sc + is + 4]).intoArray(y, off + l + 64);
                toFloat(q4).mul(d * b[sc + is + 6]).intoArray(y, off + l + 96);
            }
        }
    }
}
