package org.peft4j.quant;

import jdk.incubator.vector.ByteVector;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.IntVector;
import jdk.incubator.vector.ShortVector;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.VectorShape;
import jdk.incubator.vector.VectorSpecies;

/// Integer dot products of ggml-block weight rows with an activation row rounded as llama.cpp's CPU backend rounds it
/// (the weight type's `vec_dot_type`): Q8_0 blocks for Q8_0 and Q4_0 weights, Q8_K blocks for Q4_K weights. The row
/// is quantized once per product ([#quantizeQ8_0], [#quantizeQ8_K]); every weight row is then dotted with it in
/// integers, a scale applied once per block (Q8_0, Q4_0) or per 256-block and 32-sub-block (Q4_K).
///
/// A quantized activation row of K values: its codes (K shorts, each in [−127, 127]) at `c[co ..]`, followed by
/// the sums of each 32 codes (K/32 shorts; Q8_K's `bsums` pairwise added), and its scales in `d[dOff ..]` (K/32
/// floats: Q8_0's half-rounded d per 32 values, or Q8_K's float d per 256 in the first K/256).
///
/// The vector kernels widen the weight codes to 16 bits, multiply with the 16-bit activation codes (|w·x| ≤ 127²,
/// exact in a short), add adjacent product pairs into 32-bit lanes and accumulate there; per block the int lanes are
/// converted once and multiplied by the block scale into a float accumulator, reduced once per row. The integer sums
/// are exact, so the vector kernels differ from their scalar twins ([#dotScalar]) only in the order of the float
/// additions over blocks. Reference: ggml-quants.c `quantize_row_q8_K_ref`, ggml-cpu `quantize_row_q8_0`,
/// `ggml_vec_dot_q8_0_q8_0`, `ggml_vec_dot_q4_0_q8_0`, `ggml_vec_dot_q4_K_q8_K` (generic).
public final class GgmlDots {
    private GgmlDots() {}

    static final VectorSpecies<Float> F = FloatVector.SPECIES_PREFERRED;
    static final VectorSpecies<Integer> I = IntVector.SPECIES_PREFERRED;
    /// 16-bit lanes filling a preferred vector (32 on AVX-512: one Q8_0 block), loaded from bytes half as wide.
    static final VectorSpecies<Short> S = ShortVector.SPECIES_PREFERRED;
    static final VectorSpecies<Byte> BS = VectorSpecies.of(byte.class, VectorShape.forBitSize(S.vectorBitSize() / 2));
    /// 16-bit lanes as many as I has (Q4_0's 16 nibble bytes per block), loaded from bytes a quarter as wide.
    static final VectorSpecies<Short> SH = VectorSpecies.of(short.class, VectorShape.forBitSize(I.vectorBitSize() / 2));
    static final VectorSpecies<Byte> BQ = VectorSpecies.of(byte.class, VectorShape.forBitSize(I.vectorBitSize() / 4));
    /// The vector path runs where a preferred vector is 256 or 512 bits (AVX2, AVX-512); elsewhere the scalar twin.
    public static final boolean VECTOR = F.length() == 8 || F.length() == 16;

    /// Whether products with `type` weights round the activations (Q8_0, Q4_0: to Q8_0 blocks; Q4_K: to Q8_K).
    public static boolean rounds(GgmlBlocks type) {
        return type == GgmlBlocks.Q8_0 || type == GgmlBlocks.Q4_0 || type == GgmlBlocks.Q4_K;
    }

    /// x[off ..< off + K] rounded as products with `weight` blocks need it ([#quantizeQ8_0] or [#quantizeQ8_K]).
    public static void quantize(GgmlBlocks weight, float[] x, int off, int K, short[] c, int co, float[] d, int dOff) {
        if (weight == GgmlBlocks.Q4_K) quantizeQ8_K(x, off, K, c, co, d, dOff);
        else quantizeQ8_0(x, off, K, c, co, d, dOff);
    }

    /// Shorts of codes and sums one activation row of K values takes.
    public static int codesPerRow(int K) { return K + K / 32; }

    private static float half(byte[] b, int at) { return Float.float16ToFloat((short) ((b[at] & 0xFF) | (b[at + 1] << 8))); }

    /// x86 `quantize_row_q8_0` (ggml-cpu): per 32 values d = amax/127 stored as half, codes rint(x·(127/amax)).
    public static void quantizeQ8_0(float[] x, int off, int K, short[] c, int co, float[] d, int dOff) {
        for (int b = 0; b < K / 32; b++) {
            float amax = 0;
            for (int j = 0; j < 32; j++) amax = Math.max(amax, Math.abs(x[off + b * 32 + j]));
            float id = amax != 0 ? 127f / amax : 0f;
            d[dOff + b] = Float.float16ToFloat(Float.floatToFloat16(amax / 127f));
            int sum = 0;
            for (int j = 0; j < 32; j++) {
                int q = (int) Math.rint(x[off + b * 32 + j] * id);
                c[co + b * 32 + j] = (short) q;
                sum += q;
            }
            c[co + K + b] = (short) sum;
        }
    }

    /// `quantize_row_q8_K_ref`: per 256 values the signed value of largest magnitude (first on ties) gives
    /// iscale = −127/max, codes min(127, nearest_int(iscale·x)), d = 1/iscale (a float, not rounded to half).
    public static void quantizeQ8_K(float[] x, int off, int K, short[] c, int co, float[] d, int dOff) {
        for (int b = 0; b < K / 256; b++) {
            int o = off + b * 256, q0 = co + b * 256;
            float max = 0, amax = 0;
            for (int j = 0; j < 256; j++) {
                float ax = Math.abs(x[o + j]);
                if (ax > amax) { amax = ax; max = x[o + j]; }
            }
            if (amax == 0) {
                d[dOff + b] = 0;
                for (int j = 0; j < 256; j++) c[q0 + j] = 0;
            } else {
                float iscale = -127f / max;
                for (int j = 0; j < 256; j++) c[q0 + j] = (short) Math.min(127, GgmlQ4K.nearestInt(iscale * x[o + j]));
                d[dOff + b] = 1 / iscale;
            }
            for (int s = 0; s < 8; s++) {
                int sum = 0;
                for (int j = 0; j < 32; j++) sum += c[q0 + s * 32 + j];
                c[co + K + b * 8 + s] = (short) sum;
            }
        }
    }

    /// y[yOff + m] = W row m · the quantized activation row, for m in [m0, m1) (rows of `rowBytes` bytes from byte 0
    /// of `w`): the vector kernel, or the scalar twin where [#VECTOR] is false. One call per range keeps the row loop
    /// inside the compiled kernel.
    public static void rows(GgmlBlocks type, byte[] w, int rowBytes, int m0, int m1, int K, short[] c, int co, float[] d, int dOff,
                            float[] y, int yOff) {
        if (!VECTOR) {
            for (int m = m0; m < m1; m++) y[yOff + m] = dotScalar(type, w, m * rowBytes, K, c, co, d, dOff);
            return;
        }
        switch (type) {
            case Q8_0 -> { for (int m = m0; m < m1; m++) y[yOff + m] = dotQ8_0(w, m * rowBytes, K, c, co, d, dOff); }
            case Q4_0 -> { for (int m = m0; m < m1; m++) y[yOff + m] = dotQ4_0(w, m * rowBytes, K, c, co, d, dOff); }
            case Q4_K -> { for (int m = m0; m < m1; m++) y[yOff + m] = dotQ4_K(w, m * rowBytes, K, c, co, d, dOff); }
            default -> throw new IllegalArgumentException(type + " products take float activations");
        }
    }

    /// One row: [#rows] for m = the row at byte `at`.
    public static float dot(GgmlBlocks type, byte[] w, int at, int K, short[] c, int co, float[] d, int dOff) {
        if (!VECTOR) return dotScalar(type, w, at, K, c, co, d, dOff);
        return switch (type) {
            case Q8_0 -> dotQ8_0(w, at, K, c, co, d, dOff);
            case Q4_0 -> dotQ4_0(w, at, K, c, co, d, dOff);
            case Q4_K -> dotQ4_K(w, at, K, c, co, d, dOff);
            default -> throw new IllegalArgumentException(type + " products take float activations");
        };
    }

    /// The scalar twin: per block the integer sum of code products, then Σ_blocks in order of (scales)·sum.
    ///   Q8_0, Q4_0: Σ_b d_w·d_x·Σ_j w_j·x_j   (Q4_0's w_j = nibble − 8)
    ///   Q4_K:       Σ_b d_x·(d_w·Σ_s sc_s·Σ_j q_j·x_j − dmin_w·Σ_s m_s·Σ_j x_j)   (s: the 8 sub-blocks of 32)
    public static float dotScalar(GgmlBlocks type, byte[] w, int at, int K, short[] c, int co, float[] d, int dOff) {
        float acc = 0;
        if (type == GgmlBlocks.Q4_K) {
            for (int b = 0; b < K / 256; b++, at += 144) {
                int isum = 0, msum = 0, q = at + 16, x = co + b * 256;
                for (int s = 0; s < 8; s++) {
                    int sm = GgmlBlocks.scaleMinK4(w, at + 4, s), sub = 0;
                    for (int l = 0; l < 32; l++) {
                        int v = w[q + (s / 2) * 32 + l] & 0xFF;
                        sub += (s % 2 == 0 ? v & 0xF : v >>> 4) * c[x + s * 32 + l];
                    }
                    isum += (sm & 0xFF) * sub;
                    msum += (sm >>> 8) * c[co + K + b * 8 + s];
                }
                acc += half(w, at) * d[dOff + b] * isum - half(w, at + 2) * d[dOff + b] * msum;
            }
            return acc;
        }
        int bb = type.blockBytes;
        for (int b = 0; b < K / 32; b++, at += bb) {
            int sum = 0, x = co + b * 32;
            if (type == GgmlBlocks.Q8_0) {
                for (int j = 0; j < 32; j++) sum += w[at + 2 + j] * c[x + j];
            } else if (type == GgmlBlocks.Q4_0) {
                for (int j = 0; j < 16; j++) {
                    int v = w[at + 2 + j] & 0xFF;
                    sum += ((v & 0xF) - 8) * c[x + j] + ((v >>> 4) - 8) * c[x + 16 + j];
                }
            } else throw new IllegalArgumentException(type + " products take float activations");
            acc += half(w, at) * d[dOff + b] * sum;
        }
        return acc;
    }

    // Adjacent 16-bit products added into 32-bit lanes: a product vector read as ints v holds two shorts per lane,
    // whose sum is (v << 16 >> 16) + (v >> 16) (written out in each kernel: no helper takes or returns vectors, which
    // would box them wherever the inliner gives up).

    private static float dotQ8_0(byte[] w, int at, int K, short[] c, int co, float[] d, int dOff) {
        int SL = S.length();
        FloatVector acc = FloatVector.zero(F);
        for (int b = 0; b < K / 32; b++, at += 34) {
            IntVector s = IntVector.zero(I);
            for (int j = 0; j < 32; j += SL) {
                ShortVector q = (ShortVector) ByteVector.fromArray(BS, w, at + 2 + j).convertShape(VectorOperators.B2S, S, 0);
                IntVector v = q.mul(ShortVector.fromArray(S, c, co + b * 32 + j)).reinterpretAsInts();
                s = s.add(v.lanewise(VectorOperators.LSHL, 16).lanewise(VectorOperators.ASHR, 16).add(v.lanewise(VectorOperators.ASHR, 16)));
            }
            acc = ((FloatVector) s.convertShape(VectorOperators.I2F, F, 0)).fma(FloatVector.broadcast(F, half(w, at) * d[dOff + b]), acc);
        }
        return acc.reduceLanes(VectorOperators.ADD);
    }

    /// Bytes j.. hold elements j.. (low nibbles) and 16 + j.. (high): both halves are multiplied and added in 16 bits
    /// (|q·x| ≤ 15·127, two of them fit), then widened to the 32-bit lanes. The nibbles' offset 8 is taken out once per
    /// block with the activation's 32-sum: Σ(q − 8)·x = Σq·x − 8·Σx.
    private static float dotQ4_0(byte[] w, int at, int K, short[] c, int co, float[] d, int dOff) {
        int IL = I.length();
        FloatVector acc = FloatVector.zero(F);
        float offset = 0;
        for (int b = 0; b < K / 32; b++, at += 18) {
            IntVector s = IntVector.zero(I);
            int x = co + b * 32;
            for (int j = 0; j < 16; j += IL) {
                ShortVector q = (ShortVector) ByteVector.fromArray(BQ, w, at + 2 + j).convertShape(VectorOperators.ZERO_EXTEND_B2S, SH, 0);
                ShortVector p = q.and((short) 0xF).mul(ShortVector.fromArray(SH, c, x + j))
                        .add(q.lanewise(VectorOperators.LSHR, 4).mul(ShortVector.fromArray(SH, c, x + 16 + j)));
                s = s.add((IntVector) p.convertShape(VectorOperators.S2I, I, 0));
            }
            float scale = half(w, at) * d[dOff + b];
            acc = ((FloatVector) s.convertShape(VectorOperators.I2F, F, 0)).fma(FloatVector.broadcast(F, scale), acc);
            offset += scale * c[co + K + b];
        }
        return acc.reduceLanes(VectorOperators.ADD) - 8 * offset;
    }

    /// Per 64-value chunk, 32 bytes: low nibbles are sub-block 2c, high nibbles 2c + 1. Each sub-block's products
    /// sum in 32-bit lanes, times its 6-bit scale; the mins meet the activation's 32-sums in a scalar integer, so
    /// per 256-block there is one conversion and one multiply-add for the scales and one float term for the mins.
    private static float dotQ4_K(byte[] w, int at, int K, short[] c, int co, float[] d, int dOff) {
        int SL = S.length();
        FloatVector acc = FloatVector.zero(F);
        float mins = 0;
        for (int b = 0; b < K / 256; b++, at += 144) {
            IntVector isum = IntVector.zero(I);
            int msum = 0, sums = co + K + b * 8;
            for (int ch = 0, q = at + 16, x = co + b * 256; ch < 4; ch++, q += 32, x += 64) {
                int sm1 = GgmlBlocks.scaleMinK4(w, at + 4, 2 * ch), sm2 = GgmlBlocks.scaleMinK4(w, at + 4, 2 * ch + 1);
                IntVector s1 = IntVector.zero(I), s2 = s1;
                for (int l = 0; l < 32; l += SL) {
                    ShortVector v = (ShortVector) ByteVector.fromArray(BS, w, q + l).convertShape(VectorOperators.ZERO_EXTEND_B2S, S, 0);
                    IntVector p1 = v.and((short) 0xF).mul(ShortVector.fromArray(S, c, x + l)).reinterpretAsInts();
                    IntVector p2 = v.lanewise(VectorOperators.LSHR, 4).mul(ShortVector.fromArray(S, c, x + 32 + l)).reinterpretAsInts();
                    s1 = s1.add(p1.lanewise(VectorOperators.LSHL, 16).lanewise(VectorOperators.ASHR, 16)).add(p1.lanewise(VectorOperators.ASHR, 16));
                    s2 = s2.add(p2.lanewise(VectorOperators.LSHL, 16).lanewise(VectorOperators.ASHR, 16)).add(p2.lanewise(VectorOperators.ASHR, 16));
                }
                isum = isum.add(s1.mul(sm1 & 0xFF)).add(s2.mul(sm2 & 0xFF));
                msum += (sm1 >>> 8) * c[sums + 2 * ch] + (sm2 >>> 8) * c[sums + 2 * ch + 1];
            }
            float dx = d[dOff + b];
            acc = ((FloatVector) isum.convertShape(VectorOperators.I2F, F, 0)).fma(FloatVector.broadcast(F, half(w, at) * dx), acc);
            mins += half(w, at + 2) * dx * msum;
        }
        return acc.reduceLanes(VectorOperators.ADD) - mins;
    }
}
