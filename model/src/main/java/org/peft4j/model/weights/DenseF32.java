package org.peft4j.model.weights;

import org.peft4j.core.Gemm;
import org.peft4j.core.kernels.ScalarGemm;
import org.peft4j.model.layers.Linear;

/// A float32 weight over a caller's array, not copied: merges and full fine-tuning write into [#data()] and the
/// next forward sees it. The products are [Linear]'s own calls, so results are bit-identical with them, except a
/// forward of at most [RowProducts#MAX_ROWS] rows (decode), which takes the row path (W streamed once for all rows)
/// unless `gemm` is the scalar reference.
/// data: (out, in) row-major.
public record DenseF32(float[] data, int out, int in) implements BaseWeight {
    public DenseF32 {
        if (out <= 0 || in <= 0) throw new IllegalArgumentException("a weight needs out, in >= 1, got (" + out + ", " + in + ")");
        if (data.length != (long) out * in) throw new IllegalArgumentException("weight array has " + data.length
                + " floats, but a (" + out + ", " + in + ") weight has " + (long) out * in);
    }

    @Override
    public void forward(Gemm gemm, float[] y, float[] x, float[] bias, int N, float[] scratch) {
        if (N <= RowProducts.MAX_ROWS && !(gemm instanceof ScalarGemm)) RowProducts.forward(y, x, data, bias, N, in, out);
        else Linear.forward(gemm, y, x, data, bias, N, in, out);
    }

    @Override
    public void backwardInput(Gemm gemm, float[] dx, float[] dy, int N, float[] scratch) {
        Linear.backwardInput(gemm, dx, dy, data, N, in, out);
    }

    @Override public int scratchSize() { return 0; }
    @Override public long bytes() { return 4L * data.length; }
    @Override public String dtype() { return "F32"; }
    @Override public void dequantize(float[] dst) { System.arraycopy(data, 0, dst, 0, data.length); }

    @Override public String toString() { return "DenseF32[" + out + ", " + in + "]"; }
}
