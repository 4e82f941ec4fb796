package org.peft4j.model.weights;

import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.IntVector;
import jdk.incubator.vector.ShortVector;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.VectorShape;
import jdk.incubator.vector.VectorSpecies;
import org.peft4j.core.DType;
import org.peft4j.core.Parallel;
import org.peft4j.core.kernels.ColdStart;
import org.peft4j.core.kernels.VectorOps;

/// The row path of a linear layer: y[n, m] = x[n]·W[m] (+ b[m]) for few input rows (decode of one stream, or of a
/// batch of streams in the server), where a GEMM's packing costs more than the product. Decode is memory-bound, so
/// W is streamed once per call: the output rows are split into one contiguous range per thread, and each group of
/// 4 weight rows is read (BF16: converted in registers, fused with the dot; F16: converted into a 4-row L1 buffer)
/// and dotted with every input row while it is in cache, 2 input rows at a time (8 accumulators).
///
/// Every y[n, m] is the same sequence of operations whatever N, the row's place in the batch, the tiling and the
/// thread count: one vector accumulator over K in order (`acc = fma(w, x, acc)`), its lanes added in index order
/// ([VectorOps#sumLanes]), plus the scalar tail. So a stream decoded alone or in any batch gets the same bits, and a
/// BF16 weight gives the bits of a float32 weight holding the converted values. [#forwardScalar] is the scalar twin.
public final class RowProducts {
    private RowProducts() {}

    /// Forwards of at most this many input rows take the row path ([DenseF32], [DenseHalf]); larger N (prefill,
    /// training) take the GEMM. At 32 rows the 4×2 register tile still reads its operands from L1/L2 at about the
    /// machine's FMA rate, and the path never stalls on a native library's thread hand-off.
    public static final int MAX_ROWS = 32;

    private static final VectorSpecies<Float> F = FloatVector.SPECIES_PREFERRED;
    private static final VectorSpecies<Integer> I = IntVector.SPECIES_PREFERRED;
    private static final VectorSpecies<Short> H = VectorSpecies.of(short.class, VectorShape.forBitSize(F.vectorBitSize() / 2));
    private static final int L = F.length();
    /// Weight rows per group.
    private static final int G = 4;

    /// y = x·Wᵀ (+ bias) for a float32 W.   y: (N, M)   x: (N, K)   w: (M, K)   bias: (M) or null
    public static void forward(float[] y, float[] x, float[] w, float[] bias, int N, int K, int M) {
        boolean cold = GATE.cold();
        Parallel.chunks(M, chunks(M), (c, a, b) -> span(cold, y, x, w, a * K, false, null, 0, bias, N, K, M, a, b - a));
    }

    /// y = x·Wᵀ (+ bias) for a 16-bit W (`type` BF16 or F16).   w: (M, K) bits.   scratch: ≥ [#scratchSize] floats (F16 only)
    public static void forward(DType type, float[] y, float[] x, short[] w, float[] bias, int N, int K, int M, float[] scratch) {
        boolean cold = GATE.cold();
        if (type == DType.BF16) {
            Parallel.chunks(M, chunks(M), (c, a, b) -> span(cold, y, x, null, 0, true, w, a * K, bias, N, K, M, a, b - a));
            return;
        }
        // F16: C2 converts with the hardware instruction in a vectorized loop; the group is converted into a per-chunk buffer
        int chunks = Math.max(1, Math.min(chunks(M), scratch.length / (G * K)));
        if (scratch.length < Math.min(G, M) * K)
            throw new IllegalArgumentException("row-path scratch holds " + scratch.length + " floats, needs " + Math.min(G, M) * K);
        Parallel.chunks(M, chunks, (c, a, b) -> {
            int buf = c * G * K, m = a;
            for (; m + G <= b; m += G) {
                DenseHalf.toFloat(type, w, m * K, scratch, buf, G * K);
                span(cold, y, x, scratch, buf, false, null, 0, bias, N, K, M, m, G);
            }
            for (; m < b; m++) {
                DenseHalf.toFloat(type, w, m * K, scratch, buf, K);
                span(cold, y, x, scratch, buf, false, null, 0, bias, N, K, M, m, 1);
            }
        });
    }

    /// y = x·Wᵀ (+ bias) for a block-quantized W (ggml blocks, [org.peft4j.quant.GgmlTensor]): each group of 4 weight
    /// rows is dequantized into a per-chunk L1 buffer (the Vector API twins in [org.peft4j.quant.GgmlKernels]) and dotted
    /// there with every input row, so W is read once, in its blocks, and never expanded beyond 4 rows. The sums are
    /// those of the float32 path over the dequantized rows (the same bits for any N, batch place and thread count).
    /// w: (M, K) whole rows of blocks.   scratch: ≥ [#scratchSize] floats
    public static void forward(org.peft4j.quant.QuantLinear.Weight w, float[] y, float[] x, float[] bias, int N, int K, int M, float[] scratch) {
        int chunks = Math.max(1, Math.min(chunks(M), scratch.length / (G * K)));
        if (scratch.length < Math.min(G, M) * K)
            throw new IllegalArgumentException("row-path scratch holds " + scratch.length + " floats, needs " + Math.min(G, M) * K);
        boolean cold = GATE.cold();
        Parallel.chunks(M, chunks, (c, a, b) -> {
            int buf = c * G * K, m = a;
            for (; m + G <= b; m += G) {
                w.dequantize((long) m * K, (long) (m + G) * K, scratch, buf);
                span(cold, y, x, scratch, buf, false, null, 0, bias, N, K, M, m, G);
            }
            for (; m < b; m++) {
                w.dequantize((long) m * K, (long) (m + 1) * K, scratch, buf);
                span(cold, y, x, scratch, buf, false, null, 0, bias, N, K, M, m, 1);
            }
        });
    }

    /// Rows m .. m+rows-1 of W (the first at `wo` in `w`, or at `ho` in BF16 bits `h`) against every input row: the
    /// vector groups, or their lane-order scalar twin while the start is cold ([ColdStart]), which gives the same bits.
    static void span(boolean cold, float[] y, float[] x, float[] w, int wo, boolean bf16, short[] h, int ho, float[] bias,
                     int N, int K, int M, int m, int rows) {
        if (cold) { lanes(y, x, w, wo, bf16, h, ho, bias, N, K, M, m, rows); return; }
        int r = 0;
        for (; r + G <= rows; r += G) group4(y, x, w, wo + r * K, bf16, h, ho + r * K, bias, N, K, M, m + r);
        for (; r < rows; r++) group1(y, x, w, wo + r * K, bf16, h, ho + r * K, bias, N, K, M, m + r);
    }

    /// The vector path on a small problem (F32 and BF16, a 4-row group and a single row, an input-row pair and a single
    /// input row), for [ColdStart]'s warm-up: 30·L multiply-adds per dtype, a fraction of a microsecond once compiled
    /// (small, so that the garbage the uncompiled vector code makes stays small too).
    private static final ColdStart.Gate GATE = ColdStart.gate("row-products", new Runnable() {
        static final int K = 2 * L, M = 5, N = 3;
        final float[] x = new float[N * K], w = new float[M * K], y = new float[N * M];
        final short[] h = new short[M * K];
        public void run() {
            span(false, y, x, w, 0, false, null, 0, null, N, K, M, 0, M);
            span(false, y, x, null, 0, true, h, 0, null, N, K, M, 0, M);
        }
    }, 3_000);

    /// Floats of scratch the F16 and block-quantized paths need: a 4-row buffer per thread (BF16 converts in registers).
    public static int scratchSize(int K, int M) { return Math.min(G, M) * K * Math.max(1, Parallel.threads()); }

    /// One range per thread, none shorter than 16 rows (a handful of rows is not worth a hand-off).
    private static int chunks(int M) { return Math.max(1, Math.min(Parallel.threads(), M / 16)); }

    /// Weight row m from float32 `w` at `wo` (+ r·K for row m + r), or from BF16 bits `h` at `ho`.
    private static FloatVector wv(float[] w, int wo, boolean bf16, short[] h, int ho, int i) {
        if (!bf16) return FloatVector.fromArray(F, w, wo + i);
        return ((IntVector) ShortVector.fromArray(H, h, ho + i).convertShape(VectorOperators.S2I, I, 0))
                .lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats();
    }

    private static float ws(float[] w, int wo, boolean bf16, short[] h, int ho, int i) {
        return bf16 ? Float.intBitsToFloat(h[ho + i] << 16) : w[wo + i];
    }

    /// Rows m .. m+3 of W against every input row, two input rows at a time.
    private static void group4(float[] y, float[] x, float[] w, int wo, boolean bf16, short[] h, int ho, float[] bias,
                               int N, int K, int M, int m) {
        int n = 0, up = K - L, tail = F.loopBound(K);
        for (; n + 2 <= N; n += 2) {
            int x0 = n * K, x1 = x0 + K;
            FloatVector a00 = FloatVector.zero(F), a01 = a00, a10 = a00, a11 = a00, a20 = a00, a21 = a00, a30 = a00, a31 = a00;
            for (int i = 0; i <= up; i += L) {
                FloatVector v0 = FloatVector.fromArray(F, x, x0 + i), v1 = FloatVector.fromArray(F, x, x1 + i);
                FloatVector w0 = wv(w, wo, bf16, h, ho, i), w1 = wv(w, wo + K, bf16, h, ho + K, i);
                FloatVector w2 = wv(w, wo + 2 * K, bf16, h, ho + 2 * K, i), w3 = wv(w, wo + 3 * K, bf16, h, ho + 3 * K, i);
                a00 = w0.fma(v0, a00); a01 = w0.fma(v1, a01);
                a10 = w1.fma(v0, a10); a11 = w1.fma(v1, a11);
                a20 = w2.fma(v0, a20); a21 = w2.fma(v1, a21);
                a30 = w3.fma(v0, a30); a31 = w3.fma(v1, a31);
            }
            int y0 = n * M + m, y1 = y0 + M;
            y[y0] = finish(a00, x, x0, w, wo, bf16, h, ho, tail, K, bias, m);
            y[y1] = finish(a01, x, x1, w, wo, bf16, h, ho, tail, K, bias, m);
            y[y0 + 1] = finish(a10, x, x0, w, wo + K, bf16, h, ho + K, tail, K, bias, m + 1);
            y[y1 + 1] = finish(a11, x, x1, w, wo + K, bf16, h, ho + K, tail, K, bias, m + 1);
            y[y0 + 2] = finish(a20, x, x0, w, wo + 2 * K, bf16, h, ho + 2 * K, tail, K, bias, m + 2);
            y[y1 + 2] = finish(a21, x, x1, w, wo + 2 * K, bf16, h, ho + 2 * K, tail, K, bias, m + 2);
            y[y0 + 3] = finish(a30, x, x0, w, wo + 3 * K, bf16, h, ho + 3 * K, tail, K, bias, m + 3);
            y[y1 + 3] = finish(a31, x, x1, w, wo + 3 * K, bf16, h, ho + 3 * K, tail, K, bias, m + 3);
        }
        for (; n < N; n++) {
            int x0 = n * K;
            FloatVector a0 = FloatVector.zero(F), a1 = a0, a2 = a0, a3 = a0;
            for (int i = 0; i <= up; i += L) {
                FloatVector v0 = FloatVector.fromArray(F, x, x0 + i);
                a0 = wv(w, wo, bf16, h, ho, i).fma(v0, a0);
                a1 = wv(w, wo + K, bf16, h, ho + K, i).fma(v0, a1);
                a2 = wv(w, wo + 2 * K, bf16, h, ho + 2 * K, i).fma(v0, a2);
                a3 = wv(w, wo + 3 * K, bf16, h, ho + 3 * K, i).fma(v0, a3);
            }
            int y0 = n * M + m;
            y[y0] = finish(a0, x, x0, w, wo, bf16, h, ho, tail, K, bias, m);
            y[y0 + 1] = finish(a1, x, x0, w, wo + K, bf16, h, ho + K, tail, K, bias, m + 1);
            y[y0 + 2] = finish(a2, x, x0, w, wo + 2 * K, bf16, h, ho + 2 * K, tail, K, bias, m + 2);
            y[y0 + 3] = finish(a3, x, x0, w, wo + 3 * K, bf16, h, ho + 3 * K, tail, K, bias, m + 3);
        }
    }

    /// Row m of W against every input row.
    private static void group1(float[] y, float[] x, float[] w, int wo, boolean bf16, short[] h, int ho, float[] bias,
                               int N, int K, int M, int m) {
        int up = K - L, tail = F.loopBound(K);
        for (int n = 0; n < N; n++) {
            int x0 = n * K;
            FloatVector a = FloatVector.zero(F);
            for (int i = 0; i <= up; i += L) a = wv(w, wo, bf16, h, ho, i).fma(FloatVector.fromArray(F, x, x0 + i), a);
            y[n * M + m] = finish(a, x, x0, w, wo, bf16, h, ho, tail, K, bias, m);
        }
    }

    /// The accumulator's lanes in index order, plus the scalar tail [tail, K) and the bias.
    private static float finish(FloatVector acc, float[] x, int xo, float[] w, int wo, boolean bf16, short[] h, int ho,
                                int tail, int K, float[] bias, int m) {
        float t = 0f;
        for (int i = tail; i < K; i++) t = Math.fma(ws(w, wo, bf16, h, ho, i), x[xo + i], t);
        float d = VectorOps.sumLanes(acc) + t;
        return bias == null ? d : d + bias[m];
    }

    /// The lane-order scalar twin of [#group4] and [#group1] (the bits of the vector path): for each input row and
    /// weight row, lane j's chain acc_j = fma(w[i], x[i], acc_j) over i ≡ j (mod L) below the vector bound, the chains
    /// added in lane order (as [VectorOps#sumLanes]), then the scalar tail and the bias, as [#finish]. Four weight rows
    /// at a time share the loads of x and give four independent chains.
    static void lanes(float[] y, float[] x, float[] w, int wo, boolean bf16, short[] h, int ho, float[] bias,
                      int N, int K, int M, int m, int rows) {
        int tail = F.loopBound(K);
        for (int n = 0; n < N; n++) {
            int x0 = n * K, r = 0;
            for (; r + G <= rows; r += G) {
                int w0 = wo + r * K, h0 = ho + r * K;
                float s0 = 0f, s1 = 0f, s2 = 0f, s3 = 0f;
                for (int j = 0; j < L; j++) {
                    float a0 = 0f, a1 = 0f, a2 = 0f, a3 = 0f;
                    for (int i = j; i < tail; i += L) {
                        float v = x[x0 + i];
                        a0 = Math.fma(ws(w, w0, bf16, h, h0, i), v, a0);
                        a1 = Math.fma(ws(w, w0 + K, bf16, h, h0 + K, i), v, a1);
                        a2 = Math.fma(ws(w, w0 + 2 * K, bf16, h, h0 + 2 * K, i), v, a2);
                        a3 = Math.fma(ws(w, w0 + 3 * K, bf16, h, h0 + 3 * K, i), v, a3);
                    }
                    s0 += a0; s1 += a1; s2 += a2; s3 += a3;
                }
                int y0 = n * M + m + r;
                y[y0] = lanesFinish(s0, x, x0, w, w0, bf16, h, h0, tail, K, bias, m + r);
                y[y0 + 1] = lanesFinish(s1, x, x0, w, w0 + K, bf16, h, h0 + K, tail, K, bias, m + r + 1);
                y[y0 + 2] = lanesFinish(s2, x, x0, w, w0 + 2 * K, bf16, h, h0 + 2 * K, tail, K, bias, m + r + 2);
                y[y0 + 3] = lanesFinish(s3, x, x0, w, w0 + 3 * K, bf16, h, h0 + 3 * K, tail, K, bias, m + r + 3);
            }
            for (; r < rows; r++) {
                int w0 = wo + r * K, h0 = ho + r * K;
                float s = 0f;
                for (int j = 0; j < L; j++) {
                    float a = 0f;
                    for (int i = j; i < tail; i += L) a = Math.fma(ws(w, w0, bf16, h, h0, i), x[x0 + i], a);
                    s += a;
                }
                y[n * M + m + r] = lanesFinish(s, x, x0, w, w0, bf16, h, h0, tail, K, bias, m + r);
            }
        }
    }

    /// [#finish] after the lanes' sum `s`.
    private static float lanesFinish(float s, float[] x, int xo, float[] w, int wo, boolean bf16, short[] h, int ho,
                                     int tail, int K, float[] bias, int m) {
        float t = 0f;
        for (int i = tail; i < K; i++) t = Math.fma(ws(w, wo, bf16, h, ho, i), x[xo + i], t);
        float d = s + t;
        return bias == null ? d : d + bias[m];
    }

    /// The scalar twin: plain dot products in index order, W as float32 (`w`) or 16-bit bits (`h` of `type`, w null).
    public static void forwardScalar(DType type, float[] y, float[] x, float[] w, short[] h, float[] bias, int N, int K, int M) {
        for (int n = 0; n < N; n++)
            for (int m = 0; m < M; m++) {
                float s = 0f;
                for (int i = 0; i < K; i++) {
                    float wi = w != null ? w[m * K + i]
                            : type == DType.BF16 ? Float.intBitsToFloat(h[m * K + i] << 16) : Float.float16ToFloat(h[m * K + i]);
                    s += wi * x[n * K + i];
                }
                y[n * M + m] = bias == null ? s : s + bias[m];
            }
    }
}
