package org.peft4j.quant;

import java.lang.invoke.MethodHandles;
import java.lang.invoke.VarHandle;
import java.nio.ByteOrder;

import jdk.incubator.vector.ByteVector;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.IntVector;
import jdk.incubator.vector.ShortVector;
import jdk.incubator.vector.VectorMask;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.VectorShape;
import jdk.incubator.vector.VectorShuffle;
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
/// additions over blocks (Q4_0: also in reading a non-finite half scale as finite, [#rowsQ4_0]). Q4_0 takes the
/// activation row rearranged once per [#rows] call ([#arrangeQ4_0], a per-thread buffer), two blocks per 512-bit
/// step and two rows at a time ([#pairQ4_0]); decode reads each weight row once, so these kernels set the speed of a
/// GGUF model's tokens. Reference: ggml-quants.c `quantize_row_q8_K_ref`, ggml-cpu `quantize_row_q8_0`,
/// `ggml_vec_dot_q8_0_q8_0`, `ggml_vec_dot_q4_0_q8_0`, `ggml_vec_dot_q4_K_q8_K` (generic).
public final class GgmlDots {
    private GgmlDots() {}

    static final VectorSpecies<Float> F = FloatVector.SPECIES_PREFERRED;
    static final VectorSpecies<Integer> I = IntVector.SPECIES_PREFERRED;
    /// 16-bit lanes filling a preferred vector (32 on AVX-512: one Q8_0 block), loaded from bytes half as wide.
    static final VectorSpecies<Short> S = ShortVector.SPECIES_PREFERRED;
    static final VectorSpecies<Byte> BS = VectorSpecies.of(byte.class, VectorShape.forBitSize(S.vectorBitSize() / 2));
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

    private static final VarHandle INT_LE = MethodHandles.byteArrayViewVarHandle(int[].class, ByteOrder.LITTLE_ENDIAN);

    /// The little-endian half at b[at]. The vector kernels below write this out from the two bytes: a call left in a
    /// large kernel (C2's NodeCountInliningCutoff) saves every vector register around it; the conversion itself is an
    /// intrinsic, inlined whatever the method's size.
    private static float half(byte[] b, int at) { return Float.float16ToFloat((short) (b[at] & 0xFF | b[at + 1] << 8)); }

    /// x86 `quantize_row_q8_0` (ggml-cpu): per 32 values d = amax/127 stored as half, codes rint(x·(127/amax)).
    /// The vector path: the same products x·id, each rounded to the nearest integer (ties to even) by adding and
    /// subtracting 1.5·2²³ (exact for |x·id| ≤ 2²²; here ≤ 127), so the same codes as [#quantizeQ8_0Scalar]; the
    /// block's amax and code sum are order-free (a max, an integer sum). Once per product and activation row: 0.66 µs
    /// for 576 values in scalar code, 6 of them a SmolLM2 layer.
    public static void quantizeQ8_0(float[] x, int off, int K, short[] c, int co, float[] d, int dOff) {
        if (!VECTOR) { quantizeQ8_0Scalar(x, off, K, c, co, d, dOff); return; }
        int FL = F.length();   // 16 (AVX-512) or 8 (AVX2): two or four vectors a block, written out (no vector phis)
        for (int b = 0; b < K / 32; b++) {
            int o = off + 32 * b, q = co + 32 * b;
            FloatVector v0 = FloatVector.fromArray(F, x, o), v1 = FloatVector.fromArray(F, x, o + FL);
            FloatVector v2 = FL == 8 ? FloatVector.fromArray(F, x, o + 16) : v0, v3 = FL == 8 ? FloatVector.fromArray(F, x, o + 24) : v1;
            FloatVector m = v0.abs().max(v1.abs());
            if (FL == 8) m = m.max(v2.abs()).max(v3.abs());
            float amax = m.reduceLanes(VectorOperators.MAX);
            float id = amax != 0 ? 127f / amax : 0f;
            d[dOff + b] = Float.float16ToFloat(Float.floatToFloat16(amax / 127f));
            IntVector i0 = (IntVector) v0.mul(id).add(0x1.8p23f).sub(0x1.8p23f).convert(VectorOperators.F2I, 0);
            IntVector i1 = (IntVector) v1.mul(id).add(0x1.8p23f).sub(0x1.8p23f).convert(VectorOperators.F2I, 0);
            ((ShortVector) i0.convertShape(VectorOperators.I2S, SI, 0)).intoArray(c, q);
            ((ShortVector) i1.convertShape(VectorOperators.I2S, SI, 0)).intoArray(c, q + FL);
            IntVector sum = i0.add(i1);
            if (FL == 8) {
                IntVector i2 = (IntVector) v2.mul(id).add(0x1.8p23f).sub(0x1.8p23f).convert(VectorOperators.F2I, 0);
                IntVector i3 = (IntVector) v3.mul(id).add(0x1.8p23f).sub(0x1.8p23f).convert(VectorOperators.F2I, 0);
                ((ShortVector) i2.convertShape(VectorOperators.I2S, SI, 0)).intoArray(c, q + 16);
                ((ShortVector) i3.convertShape(VectorOperators.I2S, SI, 0)).intoArray(c, q + 24);
                sum = sum.add(i2).add(i3);
            }
            c[co + K + b] = (short) sum.reduceLanes(VectorOperators.ADD);
        }
    }

    /// Shorts as many as the preferred int vector has lanes (the vector quantizer's codes).
    static final VectorSpecies<Short> SI = VectorSpecies.of(short.class, VectorShape.forBitSize(Math.max(64, I.vectorBitSize() / 2)));

    /// The scalar twin of [#quantizeQ8_0], in the reference's order.
    public static void quantizeQ8_0Scalar(float[] x, int off, int K, short[] c, int co, float[] d, int dOff) {
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
            case Q4_0 -> {
                Arranged a = ARRANGED.get().fit(K);
                arrangeQ4_0(c, co, K, d, dOff, a);
                rowsQ4_0(w, m0 * rowBytes, rowBytes, m1 - m0, K, a, y, yOff + m0);
            }
            case Q4_K -> { for (int m = m0; m < m1; m++) y[yOff + m] = dotQ4_K(w, m * rowBytes, K, c, co, d, dOff); }
            default -> throw new IllegalArgumentException(type + " products take float activations");
        }
    }

    /// One row: [#rows] for m = the row at byte `at`.
    public static float dot(GgmlBlocks type, byte[] w, int at, int K, short[] c, int co, float[] d, int dOff) {
        if (!VECTOR) return dotScalar(type, w, at, K, c, co, d, dOff);
        return switch (type) {
            case Q8_0 -> dotQ8_0(w, at, K, c, co, d, dOff);
            case Q4_0 -> {
                Arranged a = ARRANGED.get().fit(K);
                arrangeQ4_0(c, co, K, d, dOff, a);
                float[] y = new float[1];
                rowsQ4_0(w, at, 0, 1, K, a, y, 0);
                yield y[0];
            }
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

    // The kernels widen the weight codes to 16-bit lanes and multiply them with the 16-bit activation codes; a pair
    // of adjacent products, read as one int v = hi·2¹⁶ + (lo & 0xFFFF), is added by one multiply: the top half of
    // v·65537 mod 2³² is hi + lo whenever |hi + lo| < 2¹⁵ (one vpmulld and one shift instead of four shifts and adds;
    // Q8_0: |w·x| ≤ 128·127, a pair ≤ 32512). Everything is written out in each kernel: no helper takes or returns
    // vectors, which would box them wherever the inliner gives up.

    private static float dotQ8_0(byte[] w, int at, int K, short[] c, int co, float[] d, int dOff) {
        int SL = S.length();
        FloatVector acc = FloatVector.zero(F);
        for (int b = 0; b < K / 32; b++) {   // indices linear in b (see rowsQ4_0)
            int ab = at + 34 * b;
            IntVector s = IntVector.zero(I);
            for (int j = 0; j < 32; j += SL) {
                ShortVector q = (ShortVector) ByteVector.fromArray(BS, w, ab + 2 + j).convertShape(VectorOperators.B2S, S, 0);
                IntVector v = q.mul(ShortVector.fromArray(S, c, co + b * 32 + j)).reinterpretAsInts();
                s = s.add(v.mul(65537).lanewise(VectorOperators.ASHR, 16));
            }
            float dw = Float.float16ToFloat((short) (w[ab] & 0xFF | w[ab + 1] << 8));   // half(w, ab), written out (see half)
            acc = ((FloatVector) s.convertShape(VectorOperators.I2F, F, 0)).fma(FloatVector.broadcast(F, dw * d[dOff + b]), acc);
        }
        return acc.reduceLanes(VectorOperators.ADD);
    }

    /// Q4_0 blocks one 16-bit vector holds: 2 on AVX-512 (32 lanes), 1 on AVX2 (and where the scalar twin runs).
    static final int G = Math.max(1, S.length() / 16);
    static final VectorMask<Byte> FIRST = BS.indexInRange(0, 16), SECOND = BS.indexInRange(-16, 16);
    static final VectorMask<Float> SECOND_F = F.indexInRange(-F.length() / 2, F.length() / 2);
    /// The 16-bit lanes of a group's first bytes that hold its blocks' half scales (bytes 0 and 18: lanes 0 and 9),
    /// each spread over its block's int lanes.
    static final VectorShuffle<Integer> HALF_LANES = VectorShuffle.fromOp(I, i -> VECTOR ? i / (I.length() / G) * 9 : 0);
    static final VectorSpecies<Short> S16 = ShortVector.SPECIES_256;

    /// Per thread, grown once and reused: the activation row as [#rowsQ4_0] reads it ([#arrangeQ4_0]).
    private static final class Arranged {
        short[] x = new short[0];
        float[] d = new float[0];

        Arranged fit(int K) {
            int groups = K / 32 / G + 1;
            if (x.length < 48 * G * groups) { x = new short[48 * G * groups]; d = new float[F.length() * groups]; }
            return this;
        }
    }

    private static final ThreadLocal<Arranged> ARRANGED = ThreadLocal.withInitial(Arranged::new);

    /// The activation row in [#rowsQ4_0]'s order, per group of [#G] blocks: in `x`, the G blocks' first 16 codes,
    /// their last 16, and −8·(first + last) lane by lane (the nibbles' offset 8); in `d`, each block's scale times
    /// 2¹¹² over its int lanes. A missing last block of an odd count is zeros.
    static void arrangeQ4_0(short[] c, int co, int K, float[] d, int dOff, Arranged a) {
        int nb = K / 32;
        for (int g = 0; g * G < nb; g++) {
            FloatVector v = FloatVector.broadcast(F, d[dOff + g * G]);
            if (G == 2) v = v.blend(g * G + 1 < nb ? d[dOff + g * G + 1] : 0, SECOND_F);
            v.mul(0x1p112f).intoArray(a.d, g * F.length());
        }
        for (int b = 0; b < nb; b++) {
            int o = b / G * 48 * G + b % G * 16, cb = co + b * 32;
            ShortVector lo = ShortVector.fromArray(S16, c, cb), hi = ShortVector.fromArray(S16, c, cb + 16);
            lo.intoArray(a.x, o);
            hi.intoArray(a.x, o + 16 * G);
            lo.add(hi).mul((short) -8).intoArray(a.x, o + 32 * G);
        }
        if (nb % G != 0) for (int j = 0; j < 3; j++) ShortVector.zero(S16).intoArray(a.x, nb / G * 48 * G + 16 + j * 32);
    }

    /// `rows` rows of Q4_0 blocks from byte `at`, `rowBytes` apart, into y[yOff ..]: row r together with row r + rows/2
    /// ([#pairQ4_0]); a last odd row is paired with itself (its work done twice, at most once a call). Per row: two
    /// groups of [#G] blocks (72 bytes on AVX-512) per step into two accumulators, a last group and a last odd block
    /// after. A group in 16-bit lanes: its nibble bytes (two overlapping loads blended) widened; low and high nibbles
    /// times the blocks' first and last 16 codes, plus −8·(their sum) ([#arrangeQ4_0]): |q·x + q'·x' − 8(x + x')| ≤
    /// 5842, so adjacent lanes add into 32 bits by the multiply above. The half scales are read in vector lanes too
    /// (scalar half conversions and broadcasts from general registers took a third of the time): the half's bits
    /// shifted into a float's, h·2⁻¹¹² exactly (subnormals included), times the activation's d·2¹¹² gives h·d rounded
    /// once, as the scalar twin's product. A half scale of ±∞ or NaN (no quantizer writes one) reads as a finite
    /// ±2¹⁶·(1 + m/1024): catching it cost 10%. An odd last block loads its 16 bytes masked.
    ///
    /// One Zen 5 thread, a 60 MB matrix, 576 rows a call ([GgmlDotsBench]), pairs against one row a pass: K = 576 11.9
    /// against 10.6 GB/s, K = 1536 17.8 against 14.5, K = 4096 20.1 against 9.9. The pairs are rows half the range
    /// apart, two streams each read front to back: pairs of neighbouring rows, one stream jumping a row ahead after
    /// each pair, ran at 7.7 GB/s for K = 4096 (the prefetchers lose such a stream; Q8_0 and Q4_K too, which stay one
    /// row a pass: two Q8_0 rows gained nothing over its 22-26 GB/s, memory-bound).
    private static void rowsQ4_0(byte[] w, int at, int rowBytes, int rows, int K, Arranged a, float[] y, int yOff) {
        int half = rows / 2;
        for (int r = 0; r < half; r++) pairQ4_0(w, at + r * rowBytes, at + (r + half) * rowBytes, K, a, y, yOff + r, yOff + r + half);
        if (rows % 2 != 0) pairQ4_0(w, at + (rows - 1) * rowBytes, at + (rows - 1) * rowBytes, K, a, y, yOff + rows - 1, yOff + rows - 1);
    }

    /// The rows at bytes a0 and b0 into y[ya] and y[yb]: the activation loads shared and the two rows' independent
    /// chains keep the vector units busy (one row a pass waits on its own latencies; in a probe with K = 512: 17.8 →
    /// 21.4 GB/s in L2, 17.5 → 20.4 over 28 MB; four rows a pass spilled registers and ran slower). Each row's result
    /// comes from its own chain of operations only, so the same bits in any pairing, itself included
    /// (`GgmlDotsTest.rowRangesMatchSingleRows`). A method of its own: with a one-row kernel beside it in one method, a
    /// `bench generate` decode ran the Vector API's Java fallback (C2 code without the intrinsics) and stalled for
    /// minutes.
    private static void pairQ4_0(byte[] w, int a0, int b0, int K, Arranged a, float[] y, int ya, int yb) {
        int nb = K / 32, FL = F.length(), steps = nb / (2 * G);
        short[] x = a.x;
        float[] dx = a.d;
        FloatVector acc = FloatVector.zero(F), acc1 = acc, bcc = acc, bcc1 = acc;
        // one induction variable (i, steps of 2G blocks): every index is linear in it, so C2 can take the range
        // checks of the loads out of the loop; with separate byte, code and scale counters it checked every load
        for (int i = 0; i < steps; i++) {
            int ab = a0 + 36 * G * i, bb = b0 + 36 * G * i, xi = 96 * G * i, gi = 2 * FL * i;
            ShortVector x0 = ShortVector.fromArray(S, x, xi), x1 = ShortVector.fromArray(S, x, xi + 16 * G);
            ShortVector x2 = ShortVector.fromArray(S, x, xi + 32 * G), x3 = ShortVector.fromArray(S, x, xi + 48 * G);
            ShortVector x4 = ShortVector.fromArray(S, x, xi + 64 * G), x5 = ShortVector.fromArray(S, x, xi + 80 * G);
            FloatVector d0 = FloatVector.fromArray(F, dx, gi), d1 = FloatVector.fromArray(F, dx, gi + FL);
            ByteVector q = ByteVector.fromArray(BS, w, ab + 2), q1 = ByteVector.fromArray(BS, w, ab + 18 * G + 2);
            ByteVector u = ByteVector.fromArray(BS, w, bb + 2), u1 = ByteVector.fromArray(BS, w, bb + 18 * G + 2);
            if (G == 2) {
                q = q.blend(ByteVector.fromArray(BS, w, ab + 4), SECOND);
                q1 = q1.blend(ByteVector.fromArray(BS, w, ab + 40), SECOND);
                u = u.blend(ByteVector.fromArray(BS, w, bb + 4), SECOND);
                u1 = u1.blend(ByteVector.fromArray(BS, w, bb + 40), SECOND);
            }
            IntVector h = ((IntVector) ByteVector.fromArray(BS, w, ab).reinterpretAsShorts().convertShape(VectorOperators.S2I, I, 0)).rearrange(HALF_LANES);
            IntVector h1 = ((IntVector) ByteVector.fromArray(BS, w, ab + 18 * G).reinterpretAsShorts().convertShape(VectorOperators.S2I, I, 0)).rearrange(HALF_LANES);
            IntVector k = ((IntVector) ByteVector.fromArray(BS, w, bb).reinterpretAsShorts().convertShape(VectorOperators.S2I, I, 0)).rearrange(HALF_LANES);
            IntVector k1 = ((IntVector) ByteVector.fromArray(BS, w, bb + 18 * G).reinterpretAsShorts().convertShape(VectorOperators.S2I, I, 0)).rearrange(HALF_LANES);
            FloatVector s = h.lanewise(VectorOperators.LSHL, 13).and(0x8FFFE000).reinterpretAsFloats().mul(d0);
            FloatVector s1 = h1.lanewise(VectorOperators.LSHL, 13).and(0x8FFFE000).reinterpretAsFloats().mul(d1);
            FloatVector t = k.lanewise(VectorOperators.LSHL, 13).and(0x8FFFE000).reinterpretAsFloats().mul(d0);
            FloatVector t1 = k1.lanewise(VectorOperators.LSHL, 13).and(0x8FFFE000).reinterpretAsFloats().mul(d1);
            ShortVector v = (ShortVector) q.convertShape(VectorOperators.ZERO_EXTEND_B2S, S, 0);
            ShortVector v1 = (ShortVector) q1.convertShape(VectorOperators.ZERO_EXTEND_B2S, S, 0);
            ShortVector e = (ShortVector) u.convertShape(VectorOperators.ZERO_EXTEND_B2S, S, 0);
            ShortVector e1 = (ShortVector) u1.convertShape(VectorOperators.ZERO_EXTEND_B2S, S, 0);
            IntVector p = v.and((short) 0xF).mul(x0).add(v.lanewise(VectorOperators.LSHR, 4).mul(x1)).add(x2).reinterpretAsInts();
            IntVector p1 = v1.and((short) 0xF).mul(x3).add(v1.lanewise(VectorOperators.LSHR, 4).mul(x4)).add(x5).reinterpretAsInts();
            IntVector o = e.and((short) 0xF).mul(x0).add(e.lanewise(VectorOperators.LSHR, 4).mul(x1)).add(x2).reinterpretAsInts();
            IntVector o1 = e1.and((short) 0xF).mul(x3).add(e1.lanewise(VectorOperators.LSHR, 4).mul(x4)).add(x5).reinterpretAsInts();
            acc = ((FloatVector) p.mul(65537).lanewise(VectorOperators.ASHR, 16).convert(VectorOperators.I2F, 0)).fma(s, acc);
            acc1 = ((FloatVector) p1.mul(65537).lanewise(VectorOperators.ASHR, 16).convert(VectorOperators.I2F, 0)).fma(s1, acc1);
            bcc = ((FloatVector) o.mul(65537).lanewise(VectorOperators.ASHR, 16).convert(VectorOperators.I2F, 0)).fma(t, bcc);
            bcc1 = ((FloatVector) o1.mul(65537).lanewise(VectorOperators.ASHR, 16).convert(VectorOperators.I2F, 0)).fma(t1, bcc1);
        }
        int b = 2 * G * steps, xo = 96 * G * steps, go = 2 * FL * steps, ta = a0 + 36 * G * steps, tb = b0 + 36 * G * steps;
        if (b + G <= nb) {
            ShortVector x0 = ShortVector.fromArray(S, x, xo), x1 = ShortVector.fromArray(S, x, xo + 16 * G), x2 = ShortVector.fromArray(S, x, xo + 32 * G);
            FloatVector d0 = FloatVector.fromArray(F, dx, go);
            ByteVector q = ByteVector.fromArray(BS, w, ta + 2), u = ByteVector.fromArray(BS, w, tb + 2);
            if (G == 2) {
                q = q.blend(ByteVector.fromArray(BS, w, ta + 4), SECOND);
                u = u.blend(ByteVector.fromArray(BS, w, tb + 4), SECOND);
            }
            IntVector h = ((IntVector) ByteVector.fromArray(BS, w, ta).reinterpretAsShorts().convertShape(VectorOperators.S2I, I, 0)).rearrange(HALF_LANES);
            IntVector k = ((IntVector) ByteVector.fromArray(BS, w, tb).reinterpretAsShorts().convertShape(VectorOperators.S2I, I, 0)).rearrange(HALF_LANES);
            FloatVector s = h.lanewise(VectorOperators.LSHL, 13).and(0x8FFFE000).reinterpretAsFloats().mul(d0);
            FloatVector t = k.lanewise(VectorOperators.LSHL, 13).and(0x8FFFE000).reinterpretAsFloats().mul(d0);
            ShortVector v = (ShortVector) q.convertShape(VectorOperators.ZERO_EXTEND_B2S, S, 0);
            ShortVector e = (ShortVector) u.convertShape(VectorOperators.ZERO_EXTEND_B2S, S, 0);
            IntVector p = v.and((short) 0xF).mul(x0).add(v.lanewise(VectorOperators.LSHR, 4).mul(x1)).add(x2).reinterpretAsInts();
            IntVector o = e.and((short) 0xF).mul(x0).add(e.lanewise(VectorOperators.LSHR, 4).mul(x1)).add(x2).reinterpretAsInts();
            acc = ((FloatVector) p.mul(65537).lanewise(VectorOperators.ASHR, 16).convert(VectorOperators.I2F, 0)).fma(s, acc);
            bcc = ((FloatVector) o.mul(65537).lanewise(VectorOperators.ASHR, 16).convert(VectorOperators.I2F, 0)).fma(t, bcc);
            b += G;
            ta += 18 * G;
            tb += 18 * G;
            xo += 48 * G;
            go += FL;
        }
        if (b < nb) {
            ShortVector x0 = ShortVector.fromArray(S, x, xo), x1 = ShortVector.fromArray(S, x, xo + 16 * G), x2 = ShortVector.fromArray(S, x, xo + 32 * G);
            float dl = dx[go] * 0x1p-112f;
            ShortVector v = (ShortVector) ByteVector.fromArray(BS, w, ta + 2, FIRST).convertShape(VectorOperators.ZERO_EXTEND_B2S, S, 0);
            ShortVector e = (ShortVector) ByteVector.fromArray(BS, w, tb + 2, FIRST).convertShape(VectorOperators.ZERO_EXTEND_B2S, S, 0);
            IntVector p = v.and((short) 0xF).mul(x0).add(v.lanewise(VectorOperators.LSHR, 4).mul(x1)).add(x2).reinterpretAsInts();
            IntVector o = e.and((short) 0xF).mul(x0).add(e.lanewise(VectorOperators.LSHR, 4).mul(x1)).add(x2).reinterpretAsInts();
            acc = ((FloatVector) p.mul(65537).lanewise(VectorOperators.ASHR, 16).convert(VectorOperators.I2F, 0))
                    .fma(FloatVector.broadcast(F, Float.float16ToFloat((short) (w[ta] & 0xFF | w[ta + 1] << 8)) * dl), acc);
            bcc = ((FloatVector) o.mul(65537).lanewise(VectorOperators.ASHR, 16).convert(VectorOperators.I2F, 0))
                    .fma(FloatVector.broadcast(F, Float.float16ToFloat((short) (w[tb] & 0xFF | w[tb + 1] << 8)) * dl), bcc);
        }
        y[ya] = acc.add(acc1).reduceLanes(VectorOperators.ADD);
        y[yb] = bcc.add(bcc1).reduceLanes(VectorOperators.ADD);
    }

    static final VectorSpecies<Byte> B16 = ByteVector.SPECIES_128;
    static final VectorSpecies<Short> S8 = ShortVector.SPECIES_128;
    static final VectorMask<Integer> UPPER4 = I.indexInRange(-4, I.length());

    /// Per 64-value chunk, 32 bytes: low nibbles are sub-block 2c, high nibbles 2c + 1; one 16-bit vector of 32
    /// lanes on AVX-512 (two of 16 on AVX2). Each sub-block's pair sums (the multiply above, |q·x + q'·x'| ≤ 3810)
    /// times its 6-bit scale accumulate in 32-bit lanes, converted once per 256-block. The 8 scales are unpacked from
    /// two ints of the 12 scale bytes (llama.cpp's `utmp` masks); the 8 mins in int lanes from the same bytes widened
    /// (lanes 0-3: byte j + 4 & 63; 4-7: byte j + 4 >> 4 | (byte j >> 6) << 4) times the activation's 8 sub-block
    /// sums, a float multiply-add per 256-block. One flat loop over the 128 nibble bytes (a loop per chunk nesting a
    /// loop per vector ran 10% slower). K = 1536: 11-11.5 GB/s on one Zen 5 thread (the earlier kernel: 5.9).
    private static float dotQ4_K(byte[] w, int at, int K, short[] c, int co, float[] d, int dOff) {
        int SL = S.length();
        FloatVector acc = FloatVector.zero(F), mins = acc;
        int a0 = at;
        for (int b = 0; b < K / 256; b++) {   // indices linear in b (see rowsQ4_0)
            at = a0 + 144 * b;
            IntVector lo = (IntVector) ByteVector.fromArray(B16, w, at + 4).convertShape(VectorOperators.ZERO_EXTEND_B2I, I, 0);
            IntVector mid = (IntVector) ByteVector.fromArray(B16, w, at + 8).convertShape(VectorOperators.ZERO_EXTEND_B2I, I, 0);
            IntVector m = mid.and(63).blend(mid.lanewise(VectorOperators.LSHR, 4).or(lo.lanewise(VectorOperators.LSHR, 6).lanewise(VectorOperators.LSHL, 4)), UPPER4);
            int u0 = (int) INT_LE.get(w, at + 4), u2 = (int) INT_LE.get(w, at + 12);
            long sc = (u0 & 0x3F3F3F3FL) | (long) ((u2 & 0x0F0F0F0F) | ((u0 >>> 6) & 0x03030303) << 4) << 32;
            IntVector isum = IntVector.zero(I);
            for (int j = 0, q = at + 16, x = co + b * 256; j < 128; j += SL) {
                // the codes' index 64·ch + l: 2j when a vector is one 32-byte chunk (AVX-512), linear in j, so its
                // range checks leave the loop
                int ch = j >>> 5, l = j & 31, sc1 = (int) (sc >>> 16 * ch & 0xFF), sc2 = (int) (sc >>> 16 * ch + 8 & 0xFF);
                int xc = SL == 32 ? x + 2 * j : x + 64 * ch + l;
                ShortVector v = (ShortVector) ByteVector.fromArray(BS, w, q + j).convertShape(VectorOperators.ZERO_EXTEND_B2S, S, 0);
                IntVector p1 = v.and((short) 0xF).mul(ShortVector.fromArray(S, c, xc)).reinterpretAsInts();
                IntVector p2 = v.lanewise(VectorOperators.LSHR, 4).mul(ShortVector.fromArray(S, c, xc + 32)).reinterpretAsInts();
                isum = isum.add(p1.mul(65537).lanewise(VectorOperators.ASHR, 16).mul(sc1))
                        .add(p2.mul(65537).lanewise(VectorOperators.ASHR, 16).mul(sc2));
            }
            float dx = d[dOff + b];
            float dw = Float.float16ToFloat((short) (w[at] & 0xFF | w[at + 1] << 8)), mw = Float.float16ToFloat((short) (w[at + 2] & 0xFF | w[at + 3] << 8));
            acc = ((FloatVector) isum.convert(VectorOperators.I2F, 0)).fma(FloatVector.broadcast(F, dw * dx), acc);
            IntVector sums = (IntVector) ShortVector.fromArray(S8, c, co + K + b * 8).convertShape(VectorOperators.S2I, I, 0);
            mins = ((FloatVector) m.mul(sums).convert(VectorOperators.I2F, 0)).fma(FloatVector.broadcast(F, mw * dx), mins);
        }
        return acc.sub(mins).reduceLanes(VectorOperators.ADD);
    }
}
