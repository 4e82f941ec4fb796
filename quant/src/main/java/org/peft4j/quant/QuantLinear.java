package org.peft4j.quant;

import org.peft4j.core.Gemm;
import org.peft4j.core.Parallel;

import java.util.Arrays;

/// A frozen 4-bit linear layer, QLoRA's base: y = x·Wᵀ + b and dx += dy·W with W = dequantize(w) (specs.md §1.3),
/// never holding a float copy of the whole W. W is dequantized in tiles of [#TILE_ROWS] rows into a caller-planned
/// `scratch` and each tile goes through one sgemm, so parallelism and speed come from the [Gemm]. There is no weight
/// gradient: the base stays frozen. Reference: bitsandbytes `Linear4bit.forward` / `MatMul4Bit.backward`.
public final class QuantLinear {
    private QuantLinear() {}

    /// A frozen quantized (M, K) weight that can expand a range of its row-major elements to float32: an NF4/FP4
    /// [Nf4Tensor] or a ggml-block [GgmlTensor]. Ranges passed here always start and end on row boundaries.
    public interface Weight {
        long[] shape();

        /// Elements [from, to) of W (row-major) into out[outOff ..].
        void dequantize(long from, long to, float[] out, int outOff);
    }

    /// At least this many rows of W are dequantized per sgemm, so that the tile's sgemm runs at full speed
    /// (256 × 11008 floats = 11 MB for Llama-2-7B's down_proj).
    public static final int TILE_ROWS = 256;

    /// Tiles grow up to this many floats (4 MiB) when rows are short: fewer, wider sgemm calls matter on small models
    /// (SmolLM2's 576-wide weights fit one tile), and the scratch stays a few MB on any model.
    public static final int TILE_FLOATS = 1 << 20;

    /// Rows per tile for a (M, K) weight.
    public static int tileRows(int K, int M) { return Math.max(1, Math.min(M, Math.max(TILE_ROWS, TILE_FLOATS / K))); }

    /// Floats of `scratch` that [#forward] and [#backwardInput] need for a (M, K) weight.
    public static int scratchSize(int K, int M) { return Math.multiplyExact(tileRows(K, M), K); }

    /// y = x·Wᵀ + b.   y: (N, M)   x: (N, K)   w: (M, K) quantized   bias: (M) or null   scratch: ≥ scratchSize(K, M)
    public static void forward(Gemm gemm, float[] y, float[] x, Weight w, float[] bias, float[] scratch, int N, int K, int M) {
        check(w, scratch, K, M);
        int tile = tileRows(K, M);
        for (int r = 0; r < M; r += tile) {
            int rows = Math.min(tile, M - r);
            dequantizeTile(w, r, rows, K, scratch);
            gemm.sgemm(false, true, N, rows, K, 1f, x, 0, K, scratch, 0, K, 0f, y, r, M);   // y[:, r:r+rows] = x·Wtileᵀ
        }
        if (bias != null)
            for (int n = 0; n < N; n++)
                for (int m = 0; m < M; m++) y[n * M + m] += bias[m];
    }

    /// dx += dy·W, tile by tile: dx += dy[:, r:r+rows]·W[r:r+rows, :].   dx: (N, K)   dy: (N, M)   w: (M, K) quantized
    public static void backwardInput(Gemm gemm, float[] dx, float[] dy, Weight w, float[] scratch, int N, int K, int M) {
        check(w, scratch, K, M);
        int tile = tileRows(K, M);
        for (int r = 0; r < M; r += tile) {
            int rows = Math.min(tile, M - r);
            dequantizeTile(w, r, rows, K, scratch);
            gemm.sgemm(false, false, N, K, rows, 1f, dy, r, M, scratch, 0, K, 1f, dx, 0, K);
        }
    }

    /// Rows [r, r + rows) of W into scratch, split over the pool in whole rows (so that block formats never split a
    /// block, and the result does not depend on the thread count).
    private static void dequantizeTile(Weight w, int r, int rows, int K, float[] scratch) {
        long from = (long) r * K;
        int n = rows * K;
        int chunks = Math.min(rows, Math.min(Parallel.threads(), Math.max(1, n / 65536)));
        if (chunks <= 1) { w.dequantize(from, from + n, scratch, 0); return; }
        Parallel.chunks(rows, chunks, (c, a, b) -> w.dequantize(from + (long) a * K, from + (long) b * K, scratch, a * K));
    }

    private static void check(Weight w, float[] scratch, int K, int M) {
        long[] s = w.shape();
        if (s.length != 2 || s[0] != M || s[1] != K)
            throw new IllegalArgumentException("quantized weight has shape " + Arrays.toString(s) + ", but the layer is (" + M + ", " + K + ")");
        if (scratch.length < scratchSize(K, M))
            throw new IllegalArgumentException("scratch holds " + scratch.length + " floats; a (" + M + ", " + K
                    + ") quantized linear needs QuantLinear.scratchSize = " + scratchSize(K, M));
    }
}
