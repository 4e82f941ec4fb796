package org.peft4j.model.weights;

import org.peft4j.core.Gemm;
import org.peft4j.quant.GgmlTensor;
import org.peft4j.quant.QuantLinear;

/// A frozen weight held as ggml blocks (Q8_0, Q4_0, Q4_K, Q5_K, Q6_K) as a GGUF file stores it: [QuantLinear]'s
/// tiled products, each tile of rows dequantized into the scratch and multiplied by one sgemm (as [Nf4Weight]),
/// never a float copy of the whole W. The input gradient always uses the dequantized W (training's straight-through
/// view of the activation rounding in the forward). Reference: ggml-quants.c `dequantize_row_*`, ggml-cpu `vec_dot_*`.
public record GgmlWeight(GgmlTensor tensor) implements BaseWeight {
    @Override public int out() { return tensor.rows(); }
    @Override public int in() { return tensor.cols(); }

    /// Q8_0 and Q4_0 quantize x to Q8_0 blocks and take integer block dots, as llama.cpp does
    /// ([GgmlTensor#forwardQ8]), so that greedy decoding follows llama.cpp's on the same file; K-quants go through
    /// dequantized tiles and one sgemm per tile.
    @Override
    public void forward(Gemm gemm, float[] y, float[] x, float[] bias, int N, float[] scratch) {
        if (tensor.q8Activations()) tensor.forwardQ8(y, x, bias, N, scratch);
        else QuantLinear.forward(gemm, y, x, tensor, bias, scratch, N, in(), out());
    }

    @Override
    public void backwardInput(Gemm gemm, float[] dx, float[] dy, int N, float[] scratch) {
        QuantLinear.backwardInput(gemm, dx, dy, tensor, scratch, N, in(), out());
    }

    @Override public int scratchSize() { return Math.max(QuantLinear.scratchSize(in(), out()), tensor.q8ScratchPerRow()); }
    @Override public long bytes() { return tensor.data().length; }
    @Override public String dtype() { return tensor.type().name(); }
    @Override public void dequantize(float[] dst) { tensor.dequantize(dst); }

    @Override public String toString() { return "GgmlWeight[" + dtype() + ", " + out() + ", " + in() + "]"; }
}
