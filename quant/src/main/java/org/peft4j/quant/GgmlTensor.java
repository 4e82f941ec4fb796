package org.peft4j.quant;

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
        type.dequantize(data, Math.toIntExact(from / bs * type.blockBytes), out, outOff, (int) ((to - from) / bs));
    }

    /// The whole matrix as float32.
    public void dequantize(float[] out) { dequantize(0, numel(), out, 0); }

    @Override public boolean equals(Object o) {
        return o instanceof GgmlTensor t && type == t.type && rows == t.rows && cols == t.cols && Arrays.equals(data, t.data);
    }

    @Override public int hashCode() { return Arrays.hashCode(data); }

    @Override public String toString() { return "GgmlTensor[" + type + ", " + rows + ", " + cols + "]"; }
}
