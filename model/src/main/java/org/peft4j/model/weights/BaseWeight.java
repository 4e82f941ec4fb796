package org.peft4j.model.weights;

import org.peft4j.core.Gemm;
import org.peft4j.core.Peft4jException.FormatException;
import org.peft4j.formats.safetensors.TensorInfo;
import org.peft4j.model.llama.TensorSource;
import org.peft4j.quant.Nf4Tensor;

/// A frozen (or, for [DenseF32], trainable) linear weight W stored (out, in) row-major as nn.Linear does, in the
/// dtype it is kept in memory: float32, BF16/F16 bits converted per tile, or 4-bit NF4/FP4 dequantized per tile.
/// The layer math (y = x·Wᵀ + b, dx += dy·W) is one call whatever the kind; there is no weight gradient here
/// (a trained dense weight adds `Linear.backwardWeight` on [DenseF32#data()]). Reference: torch.nn.Linear,
/// bitsandbytes `Linear4bit`.
public sealed interface BaseWeight permits DenseF32, DenseHalf, Nf4Weight, GgmlWeight {
    /// Rows of W: the output features.
    int out();

    /// Columns of W: the input features.
    int in();

    /// y = x·Wᵀ (+ bias when not null), overwriting y.   y: (N, out)   x: (N, in)   bias: (out) or null
    /// scratch: ≥ [#scratchSize()] floats (unused for DenseF32)
    void forward(Gemm gemm, float[] y, float[] x, float[] bias, int N, float[] scratch);

    /// dx += dy·W.   dx: (N, in)   dy: (N, out)   scratch: ≥ [#scratchSize()] floats
    void backwardInput(Gemm gemm, float[] dx, float[] dy, int N, float[] scratch);

    /// Floats of scratch that [#forward] and [#backwardInput] need (0 for DenseF32).
    int scratchSize();

    /// Bytes held in memory by this weight.
    long bytes();

    /// The stored dtype's name: "F32", "BF16", "F16", "NF4" or "FP4".
    String dtype();

    /// W as float32 into `out[0 ..< out()·in()]` (out.length ≥ out()·in()).
    void dequantize(float[] out);

    /// A float32 weight over `w` (not copied).
    static DenseF32 of(float[] w, int out, int in) { return new DenseF32(w, out, in); }

    /// A 4-bit weight; `t` must be 2-D.
    static Nf4Weight of(Nf4Tensor t) { return new Nf4Weight(t); }

    /// Tensor `name` of `src` as a (out, in) weight in its stored dtype: F32 → [DenseF32], BF16/F16 → [DenseHalf]
    /// (its 16-bit values, never a whole float32 copy: [TensorSource#halfBytes], the mapping itself when the source is
    /// [TensorSource#inPlace]). Other dtypes, a missing tensor or another shape throw
    /// [FormatException].
    static BaseWeight read(TensorSource src, String name, int out, int in) {
        TensorInfo t = src.tensors().get(name);
        if (t == null) throw new FormatException("tensor '" + name + "' (shape [" + out + ", " + in + "]) is missing from the"
                + " checkpoint; the checkpoint does not match config.json");
        long[] s = t.shape();
        if (s.length != 2 || s[0] != out || s[1] != in)
            throw new FormatException("tensor '" + name + "' has shape " + t.shapeString() + ", expected [" + out + ", " + in
                    + "] from config.json; the checkpoint and config.json disagree");
        return switch (t.dtype()) {
            case F32 -> new DenseF32(src.readFloats(name), out, in);
            case BF16, F16 -> new DenseHalf(t.dtype(), src.halfBytes(name), out, in);
            default -> throw new FormatException("tensor '" + name + "' has dtype " + t.dtype() + ", which is not supported for"
                    + " a linear weight; convert the checkpoint to F32/BF16/F16");
        };
    }
}
