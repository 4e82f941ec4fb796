package org.peft4j.quant;

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

    /// Whether products round the activations as llama.cpp's CPU backend does for this type (its `vec_dot_type`:
    /// Q8_0 blocks for Q8_0 and Q4_0, Q8_K for Q4_K; [GgmlDots]).
    public boolean q8Activations() { return GgmlDots.rounds(type); }

    /// Floats of scratch [#forwardQ8] needs per row of x (the activation scales).
    public int q8ScratchPerRow() { return cols / 32; }

    /// Rows of x quantized at a time: their codes stay in L2 while W streams past them.
    static final int Q8_ROWS = 64;

    /// Rows of W dotted with every x row of a chunk before the next ones (16 rows of 1536 Q8_0 values: 26 KB).
    static final int W_ROWS = 16;

    /// Per thread, the quantized codes of up to [#Q8_ROWS] x rows, grown once and reused (no allocation per token).
    private static final ThreadLocal<short[]> CODES = ThreadLocal.withInitial(() -> new short[0]);

    /// y = x·Wᵀ (+ bias) with x rounded row by row as llama.cpp rounds it ([GgmlDots#quantize]: Q8_0 blocks for
    /// Q8_0/Q4_0 weights, Q8_K for Q4_K) and integer dot products per block ([GgmlDots#dot]), llama.cpp's numerics
    /// (`ggml_vec_dot_q8_0_q8_0`, `_q4_0_q8_0`, `_q4_K_q8_K`). Each thread streams its own contiguous range of W's
    /// rows, each row dotted with every x row of the chunk while it is in cache. `scratch` holds the activation
    /// scales ([#q8ScratchPerRow] per row).
    ///   y: (N, rows)   x: (N, cols)   bias: (rows) or null
    public void forwardQ8(float[] y, float[] x, float[] bias, int N, float[] scratch) {
        int K = cols, M = rows, per = q8ScratchPerRow(), cp = GgmlDots.codesPerRow(K);
        if (!q8Activations()) throw new IllegalStateException(type + " has no Q8_0-activation product");
        int chunk = Math.min(Q8_ROWS, scratch.length / per);
        if (chunk < 1) throw new IllegalArgumentException("scratch of " + scratch.length + " floats is smaller than one row's " + per);
        short[] c = CODES.get();
        if (c.length < Math.min(chunk, N) * cp) CODES.set(c = new short[Math.min(chunk, N) * cp]);
        short[] codes = c;
        int rowBytes = (int) type.bytes(K);
        for (int n0 = 0; n0 < N; n0 += chunk) {
            int rowsX = Math.min(chunk, N - n0), base = n0;
            for (int r = 0; r < rowsX; r++) GgmlDots.quantize(type, x, (base + r) * K, K, codes, r * cp, scratch, r * per);
            Parallel.chunks(M, Math.min(Parallel.threads(), Math.max(1, (int) ((long) M * K * rowsX / 65536))), (ch, a, b) -> {
                // W_ROWS rows of W stay in L1 while every x row meets them; one x row (decode) takes the whole range
                // in one call, the kernels' setup per call (Q4_0's rearranged activation row) once
                int step = rowsX == 1 ? b - a : W_ROWS;
                for (int m0 = a; m0 < b; m0 += step)
                    for (int r = 0; r < rowsX; r++)
                        GgmlDots.rows(type, data, rowBytes, m0, Math.min(b, m0 + step), K, codes, r * cp, scratch, r * per, y, (base + r) * M);
            });
            if (bias != null)
                for (int r = 0; r < rowsX; r++)
                    for (int m = 0; m < M; m++) y[(base + r) * M + m] += bias[m];
        }
    }

    /// The whole matrix as float32.
    public void dequantize(float[] out) { dequantize(0, numel(), out, 0); }

    @Override public boolean equals(Object o) {
        return o instanceof GgmlTensor t && type == t.type && rows == t.rows && cols == t.cols && Arrays.equals(data, t.data);
    }

    @Override public int hashCode() { return Arrays.hashCode(data); }

    @Override public String toString() { return "GgmlTensor[" + type + ", " + rows + ", " + cols + "]"; }
}
