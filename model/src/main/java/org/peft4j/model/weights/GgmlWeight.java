package org.peft4j.model.weights;

import org.peft4j.core.Gemm;
import org.peft4j.core.kernels.ScalarGemm;
import org.peft4j.quant.GgmlTensor;
import org.peft4j.quant.QuantLinear;

/// A frozen weight held as ggml blocks (Q8_0, Q4_0, Q4_K, Q5_K, Q6_K) as a GGUF file stores it: [QuantLinear]'s
/// tiled products, each tile of rows dequantized into the scratch and multiplied by one sgemm (as [Nf4Weight]),
/// never a float copy of the whole W. The input gradient always uses the dequantized W.
/// `roundActivations`: Q8_0 and Q4_0 products round x to Q8_0 blocks first, Q4_K to Q8_K, as llama.cpp does (inference, so that
/// greedy decoding follows llama.cpp's on the same file); false for training over a GGUF base, where forward and
/// backward both use the dequantized W with float x, so the gradient is the forward's exact derivative (QLoRA's
/// numerics: bitsandbytes `MatMul4Bit` dequantizes W and keeps x in float). Reference: ggml-quants.c
/// `dequantize_row_*`, ggml-cpu `vec_dot_*`.
public record GgmlWeight(GgmlTensor tensor, boolean roundActivations) implements BaseWeight {
    public GgmlWeight {
        if (roundActivations && !tensor.q8Activations())
            throw new IllegalArgumentException(tensor.type() + " products take float activations; only Q8_0, Q4_0 (to Q8_0) and Q4_K (to Q8_K) round them");
    }

    /// The inference weight: Q8_0, Q4_0 and Q4_K round activations as llama.cpp does, Q5_K and Q6_K take float activations.
    public GgmlWeight(GgmlTensor tensor) { this(tensor, tensor.q8Activations()); }

    /// The training weight: float activations in forward, so that backward is its exact derivative.
    public static GgmlWeight training(GgmlTensor tensor) { return new GgmlWeight(tensor, false); }

    @Override public int out() { return tensor.rows(); }
    @Override public int in() { return tensor.cols(); }

    /// With `roundActivations`: x quantized to Q8_0 (Q8_K) blocks and integer block dots ([GgmlTensor#forwardQ8]).
    /// Otherwise, at most [RowProducts#MAX_ROWS] input rows (decode) take the row path (4 rows of W dequantized into
    /// an L1 buffer and dotted with every x row: W read once, never expanded), larger N the tiles (dequantized tile,
    /// one sgemm). With the scalar reference GEMM every N takes the tiles (the twin the row path is tested against).
    @Override
    public void forward(Gemm gemm, float[] y, float[] x, float[] bias, int N, float[] scratch) {
        if (roundActivations) tensor.forwardQ8(y, x, bias, N, scratch);
        else if (N <= RowProducts.MAX_ROWS && !(gemm instanceof ScalarGemm)) RowProducts.forward(tensor, y, x, bias, N, in(), out(), scratch);
        else QuantLinear.forward(gemm, y, x, tensor, bias, scratch, N, in(), out());
    }

    @Override
    public void backwardInput(Gemm gemm, float[] dx, float[] dy, int N, float[] scratch) {
        QuantLinear.backwardInput(gemm, dx, dy, tensor, scratch, N, in(), out());
    }

    @Override
    public int scratchSize() {
        int tiles = QuantLinear.scratchSize(in(), out());
        return roundActivations ? Math.max(tiles, tensor.q8ScratchPerRow()) : Math.max(tiles, RowProducts.scratchSize(in(), out()));
    }

    @Override public long bytes() { return tensor.data().length; }
    @Override public String dtype() { return tensor.type().name(); }
    @Override public void dequantize(float[] dst) { tensor.dequantize(dst); }

    @Override public String toString() { return "GgmlWeight[" + dtype() + ", " + out() + ", " + in() + "]"; }
}
