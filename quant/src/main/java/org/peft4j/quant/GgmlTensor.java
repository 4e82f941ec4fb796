package org.peft4j.quant;

import jdk.incubator.vector.ByteVector;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.VectorSpecies;
import org.peft4j.core.Parallel;

import java.util.Arrays;

/// A 2-D (rows, cols) weight held as ggml blocks ([GgmlBlocks]), row-major: each row is cols / blockSize whole
/// blocks, as in a GGUF file (ne = [cols, rows]). Dequantized range by range for [QuantLinear]'s tiled products.
public record GgmlTensor(GgmlBlocks type, int rows, int cols, byte[] data) implements QuantLinear.Weight {
    public GgmlTensor {
        if (rows < 1 || cols < 1 || cols % type.blockSize != 0)
            throw new IllegalArgumentException("a " + type + " weight needs rows, cols >= 1 and cols a multiple of " + type.blockSize
                    + ", got (" + rows + ", " + cols + ")");
        if (data.length != type.bytes((long) rows * cols))
            throw new IllegalArgumentException(type + " (" + rows + ", " + cols + ") needs " + type.bytes((long) rows * cols)
                    + " bytes, got " + data.length);
    }

    /// Quantizes a (rows, cols) float matrix with ggml's reference quantizer (Q8_0 or Q4_0).
    public static GgmlTensor quantize(GgmlBlocks type, float[] w, int rows, int cols) {
        return new GgmlTensor(type, rows, cols, type.quantize(w, 0, Math.multiplyExact(rows, cols)));
    }

    @Override public long[] shape() { return new long[]{rows, cols}; }

    public long numel() { return (long) rows * cols; }

    /// Elements [from, to) into out[outOff ..]; from and to must be multiples of the block size.
    @Override
    public void dequantize(long from, long to, float[] out, int outOff) {
        int bs = type.blockSize;
        if (from % bs != 0 || to % bs != 0 || from < 0 || to > numel() || from > to)
            throw new IllegalArgumentException("range [" + from + ", " + to + ") of a " + type + " weight must be whole blocks of "
                    + bs + " inside [0, " + numel() + ")");
        GgmlKernels.dequantize(type, data, Math.toIntExact(from / bs * type.blockBytes), out, outOff, (int) ((to - from) / bs));
    }

    /// The scalar twin of [#dequantize(long, long, float[], int)] ([GgmlBlocks#dequantize]).
    public void dequantizeScalar(long from, long to, float[] out, int outOff) {
        int bs = type.blockSize;
        type.dequantize(data, Math.toIntExact(from / bs * type.blockBytes), out, outOff, (int) ((to - from) / bs));
    }

    /// Whether products quantize the activations to Q8_0 blocks as llama.cpp's CPU backend does for this type
    /// (`vec_dot_type` Q8_0 for Q8_0 and Q4_0).
    public boolean q8Activations() { return type == GgmlBlocks.Q8_0 || type == GgmlBlocks.Q4_0; }

    /// Floats of scratch [#forwardQ8] needs for at least one row of x.
    public int q8ScratchPerRow() { return cols + cols / 32; }

    /// y = x·Wᵀ (+ bias) with x quantized row by row to Q8_0 blocks first, llama.cpp's numerics for Q8_0/Q4_0
    /// weights (`ggml_vec_dot_q8_0_q8_0`, `ggml_vec_dot_q4_0_q8_0`): per block, the integer dot of the codes times
    /// d_w·d_x, summed over blocks in float. x's blocks follow ggml's x86 `quantize_row_q8_0`: d = amax/127 stored as
    /// half, codes rint(x·127/amax). The integer dot of 32 codes is exact in float (|Σ| ≤ 32·127² < 2²⁴), so it is
    /// computed on floats. `scratch` holds the quantized rows (K codes + K/32 scales per row), in chunks of rows.
    ///   y: (N, rows)   x: (N, cols)   bias: (rows) or null
    public void forwardQ8(float[] y, float[] x, float[] bias, int N, float[] scratch) {
        int K = cols, M = rows, per = q8ScratchPerRow(), nb = K / 32;
        if (!q8Activations()) throw new IllegalStateException(type + " has no Q8_0-activation product");
        int chunk = scratch.length / per;
        if (chunk < 1) throw new IllegalArgumentException("scratch of " + scratch.length + " floats is smaller than one row's " + per);
        for (int n0 = 0; n0 < N; n0 += chunk) {
            int rowsX = Math.min(chunk, N - n0), base = n0;
            for (int r = 0; r < rowsX; r++) quantizeRowQ8(x, (base + r) * K, K, scratch, r * K, rowsX * K + r * nb);
            Parallel.chunks(M, Math.min(Parallel.threads(), Math.max(1, (int) ((long) M * K * rowsX / 65536))), (c, a, b) -> {
                for (int m = a; m < b; m++)
                    for (int r = 0; r < rowsX; r++) {
                        float acc = !VECTOR ? dotQ8(m, scratch, r * K, rowsX * K + r * nb)
                                : type == GgmlBlocks.Q8_0 ? dotQ8Vector(m, scratch, r * K, rowsX * K + r * nb)
                                : dotQ4Vector(m, scratch, r * K, rowsX * K + r * nb);
                        y[(base + r) * M + m] = bias == null ? acc : acc + bias[m];
                    }
            });
        }
    }

    /// x[off ..< off + K] to codes q[qOff ..] (as floats) and per-block half-rounded scales d[dOff ..].
    static void quantizeRowQ8(float[] x, int off, int K, float[] q, int qOff, int dOff) {
        for (int b = 0; b < K / 32; b++) {
            float amax = 0;
            for (int j = 0; j < 32; j++) amax = Math.max(amax, Math.abs(x[off + b * 32 + j]));
            float d = amax / 127f, id = amax != 0 ? 127f / amax : 0f;
            q[dOff + b] = Float.float16ToFloat(Float.floatToFloat16(d));
            for (int j = 0; j < 32; j++) q[qOff + b * 32 + j] = (float) Math.rint(x[off + b * 32 + j] * id);
        }
    }

    static final VectorSpecies<Float> F = FloatVector.SPECIES_PREFERRED;
    /// Bytes loaded per float vector: as many as it has lanes (8 → 64-bit, 16 → 128-bit).
    static final VectorSpecies<Byte> B = F.length() == 16 ? ByteVector.SPECIES_128 : ByteVector.SPECIES_64;
    /// The Vector API path runs where a float vector has 8 or 16 lanes (AVX2, AVX-512); elsewhere the scalar twin.
    static final boolean VECTOR = F.length() == 8 || F.length() == 16;

    /// [#dotQ8] for Q8_0 on the Vector API: per block, lane-wise products of the codes (each lane an exact integer
    /// partial sum), scaled by d_w·d_x lane-wise into one accumulator, reduced once per row.
    float dotQ8Vector(int m, float[] s, int qOff, int dOff) {
        int nb = cols / 32, bb = type.blockBytes, L = F.length();
        int at = m * nb * bb;
        FloatVector acc = FloatVector.zero(F);
        for (int b = 0; b < nb; b++, at += bb) {
            float scale = Float.float16ToFloat((short) ((data[at] & 0xFF) | (data[at + 1] << 8))) * s[dOff + b];
            FloatVector blk = FloatVector.zero(F);
            for (int j = 0; j < 32; j += L) {
                FloatVector w = (FloatVector) ByteVector.fromArray(B, data, at + 2 + j).convertShape(VectorOperators.B2F, F, 0);
                blk = w.fma(FloatVector.fromArray(F, s, qOff + b * 32 + j), blk);
            }
            acc = blk.fma(FloatVector.broadcast(F, scale), acc);
        }
        return acc.reduceLanes(VectorOperators.ADD);
    }

    /// [#dotQ8] for Q4_0 on the Vector API: the low nibbles of bytes j.. are elements j.., the high nibbles elements
    /// 16 + j..; each (q − 8) is exact in float, so per block the lane sums are exact integers as in [#dotQ8Vector].
    float dotQ4Vector(int m, float[] s, int qOff, int dOff) {
        int nb = cols / 32, bb = type.blockBytes, L = F.length();
        int at = m * nb * bb;
        FloatVector acc = FloatVector.zero(F);
        for (int b = 0; b < nb; b++, at += bb) {
            float scale = Float.float16ToFloat((short) ((data[at] & 0xFF) | (data[at + 1] << 8))) * s[dOff + b];
            FloatVector blk = FloatVector.zero(F);
            int q = qOff + b * 32;
            for (int j = 0; j < 16; j += L) {
                ByteVector v = ByteVector.fromArray(B, data, at + 2 + j);
                FloatVector lo = (FloatVector) v.and((byte) 0xF).sub((byte) 8).convertShape(VectorOperators.B2F, F, 0);
                FloatVector hi = (FloatVector) v.lanewise(VectorOperators.LSHR, 4).sub((byte) 8).convertShape(VectorOperators.B2F, F, 0);
                blk = lo.fma(FloatVector.fromArray(F, s, q + j), blk);
                blk = hi.fma(FloatVector.fromArray(F, s, q + 16 + j), blk);
            }
            acc = blk.fma(FloatVector.broadcast(F, scale), acc);
        }
        return acc.reduceLanes(VectorOperators.ADD);
    }

    /// Row m of W against one quantized x row: Σ_blocks (d_w·d_x) · Σ_j q_w·q_x (the scalar twin).
    float dotQ8(int m, float[] s, int qOff, int dOff) {
        int nb = cols / 32, bb = type.blockBytes;
        int at = m * nb * bb;
        float acc = 0;
        for (int b = 0; b < nb; b++, at += bb) {
            float dw = Float.float16ToFloat((short) ((data[at] & 0xFF) | (data[at + 1] << 8)));
            float sum = 0;
            int q = qOff + b * 32;
            if (type == GgmlBlocks.Q8_0) {
                for (int j = 0; j < 32; j++) sum += data[at + 2 + j] * s[q + j];
            } else {
                for (int j = 0; j < 16; j++) {
                    int v = data[at + 2 + j] & 0xFF;
                    sum += ((v & 0xF) - 8) * s[q + j] + ((v >>> 4) - 8) * s[q + j + 16];
                }
            }
            acc += dw * s[dOff + b] * sum;
        }
        return acc;
    }

    /// The whole matrix as float32.
    public void dequantize(float[] out) { dequantize(0, numel(), out, 0); }

    @Override public boolean equals(Object o) {
        return o instanceof GgmlTensor t && type == t.type && rows == t.rows && cols == t.cols && Arrays.equals(data, t.data);
    }

    @Override public int hashCode() { return Arrays.hashCode(data); }

    @Override public String toString() { return "GgmlTensor[" + type + ", " + rows + ", " + cols + "]"; }
}
