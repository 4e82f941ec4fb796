package org.peft4j.model.weights;

import org.peft4j.core.Gemm;
import org.peft4j.quant.Nf4Tensor;
import org.peft4j.quant.QuantLinear;

import java.util.Arrays;

/// A frozen 4-bit (NF4 or FP4, with or without double quantization) weight: [QuantLinear]'s tiled products over
/// an [Nf4Tensor] of shape (out, in), never holding a float copy of the whole W.
/// `out` and `in` repeat the tensor's shape, so that a forward does not copy it.
public record Nf4Weight(Nf4Tensor tensor, int out, int in) implements BaseWeight {
    public Nf4Weight {
        long[] s = tensor.shape();
        if (s.length != 2 || s[0] != out || s[1] != in || out < 1 || in < 1)
            throw new IllegalArgumentException("a 4-bit linear weight is 2-D (out, in) = (" + out + ", " + in + ") with out, in >= 1,"
                    + " got shape " + Arrays.toString(s));
    }

    /// The weight of a 2-D tensor (out, in).
    public Nf4Weight(Nf4Tensor tensor) { this(tensor, dim(tensor, 0), dim(tensor, 1)); }

    private static int dim(Nf4Tensor t, int d) {
        long[] s = t.shape();
        if (s.length != 2 || s[d] > Integer.MAX_VALUE)
            throw new IllegalArgumentException("a 4-bit linear weight is 2-D (out, in), got shape " + Arrays.toString(s));
        return (int) s[d];
    }

    @Override
    public void forward(Gemm gemm, float[] y, float[] x, float[] bias, int N, float[] scratch) {
        QuantLinear.forward(gemm, y, x, tensor, bias, scratch, N, in, out);
    }

    @Override
    public void backwardInput(Gemm gemm, float[] dx, float[] dy, int N, float[] scratch) {
        QuantLinear.backwardInput(gemm, dx, dy, tensor, scratch, N, in, out);
    }

    @Override public int scratchSize() { return QuantLinear.scratchSize(in, out); }

    /// Packed codes plus the scales: float32 absmax, or with double quantization the 8-bit codes, the nested
    /// float32 absmax, the 256-entry map and the offset.
    @Override
    public long bytes() { return tensor.storedBytes(); }

    @Override public String dtype() { return tensor.type().name(); }
    @Override public void dequantize(float[] dst) { tensor.dequantize(dst); }

    @Override public String toString() { return "Nf4Weight[" + dtype() + ", " + out + ", " + in + "]"; }
}
