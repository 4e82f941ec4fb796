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

import java.lang.foreign.MemorySegment;
import java.nio.ByteOrder;

/// The row path of a linear layer: y[n, m] = x[n]·W[m] (+ b[m]) for few input rows (decode of one stream, or of a
/// batch of streams in the server), where a GEMM's packing costs more than the product. Decode is memory-bound, so
/// W is streamed once per call, at the machine's read bandwidth: the output rows are split into one contiguous range
/// per thread, and each weight row is read once, front to back (BF16: converted in registers, fused with the dot;
/// F16 and ggml blocks: converted into a 4-row L1 buffer first), and dotted with every input row while it is in L1,
/// two input rows at a time. One weight stream at a time: on Zen 5, two or four interleaved row streams read at half
/// the bandwidth of one (measured: 11-17 GB/s against 24-34).
///
/// Every y[n, m] is the same sequence of operations whatever N, the row's place in the batch, the split and the
/// thread count. A float32 weight held as such: one vector accumulator over the whole vector chunks of K
/// (`acc = fma(w, x, acc)` in order). A BF16 weight, and every row converted into the float buffer (F16, BF16 in a
/// batch, ggml blocks): four accumulators (vector chunk c of the first 4·⌊K/4L⌋·L floats into accumulator c mod 4,
/// the remaining whole chunks into accumulator 0), combined as (a0 + a1) + (a2 + a3), because one FMA chain's latency
/// caps a BF16 row at about 24 GB/s; while one chain reads float32 rows 10-15% faster than four. Then the lanes added
/// as a fixed tree of halves ([VectorOps#sumHalves]), the scalar tail and the bias. So a stream decoded alone or in
/// any batch gets the same bits, and a BF16 weight gives the same bits in registers and through the buffer.
/// [#lanes] is the lane-order scalar twin of these bits, [#forwardScalar] the plain scalar twin.
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
        if (F32_GATE.cold()) {   // the twin in its own call sites: the vector path's profile never sees it
            Parallel.chunks(M, chunks(M), (c, a, b) -> lanes(true, y, x, w, a * K, false, null, 0, bias, N, K, M, a, b - a));
            return;
        }
        Parallel.chunks(M, chunks(M), (c, a, b) -> span(false, true, y, x, w, a * K, false, null, 0, bias, N, K, M, a, b - a));
    }

    /// y = x·Wᵀ (+ bias) for a 16-bit W (`type` BF16 or F16).   w: (M, K) bits.   scratch: ≥ [#scratchSize] floats
    /// (F16, and BF16 from [#BATCH] input rows; BF16 without it converts in registers)
    public static void forward(DType type, float[] y, float[] x, MemorySegment w, float[] bias, int N, int K, int M, float[] scratch) {
        boolean registers = type == DType.BF16 && (N < BATCH || scratch == null || scratch.length < Math.min(G, M) * K);
        boolean cold = (registers ? BF16_GATE : GATE).cold();
        // BF16 in registers: below a batch, and while the start is cold (the buffer's Vector API conversion is slow
        // until C2 compiles it; the register path's twin is not)
        if (type == DType.BF16 && cold) {
            Parallel.chunks(M, chunks(M), (c, a, b) -> lanes(false, y, x, null, 0, true, w, a * K, bias, N, K, M, a, b - a));
            return;
        }
        if (registers) {
            Parallel.chunks(M, chunks(M), (c, a, b) -> span(false, false, y, x, null, 0, true, w, a * K, bias, N, K, M, a, b - a));
            return;
        }
        // F16 (C2 converts with the hardware instruction in a vectorized loop), and BF16 for a batch, whose products
        // outweigh the conversion: each group of rows is converted into a per-chunk buffer, then the float32 kernels
        int chunks = Math.max(1, Math.min(chunks(M), scratch.length / (G * K)));
        if (scratch.length < Math.min(G, M) * K)
            throw new IllegalArgumentException("row-path scratch holds " + scratch.length + " floats, needs " + Math.min(G, M) * K);
        Parallel.chunks(M, chunks, (c, a, b) -> {
            int buf = c * G * K, m = a;
            for (; m + G <= b; m += G) {
                DenseHalf.toFloat(type, w, m * K, scratch, buf, G * K);
                span(cold, false, y, x, scratch, buf, false, null, 0, bias, N, K, M, m, G);
            }
            for (; m < b; m++) {
                DenseHalf.toFloat(type, w, m * K, scratch, buf, K);
                span(cold, false, y, x, scratch, buf, false, null, 0, bias, N, K, M, m, 1);
            }
        });
    }

    /// From this many input rows a product is compute-bound: BF16 rows are converted once into a buffer for all of
    /// them, and (AVX-512) two weight rows share each input load.
    private static final int BATCH = 4;

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
                span(cold, false, y, x, scratch, buf, false, null, 0, bias, N, K, M, m, G);
            }
            for (; m < b; m++) {
                w.dequantize((long) m * K, (long) (m + 1) * K, scratch, buf);
                span(cold, false, y, x, scratch, buf, false, null, 0, bias, N, K, M, m, 1);
            }
        });
    }

    /// Rows m .. m+rows-1 of W (the first at `wo` in `w`, or at `ho` in BF16 bits `h`) against every input row: the
    /// vector kernels, or their lane-order scalar twin while the start is cold ([ColdStart]), which gives the same bits.
    /// `one`: a float32 weight held as such, whose kernels keep one FMA chain per product; the others (BF16 in
    /// registers, and every row converted into a float buffer) keep four.
    static void span(boolean cold, boolean one, float[] y, float[] x, float[] w, int wo, boolean bf16, MemorySegment h, int ho, float[] bias,
                     int N, int K, int M, int m, int rows) {
        if (cold) { lanes(one, y, x, w, wo, bf16, h, ho, bias, N, K, M, m, rows); return; }
        // one method per dtype, one call per product: C2 compiles each to a bare load-FMA stream (a shared method with a
        // dtype flag, or the single-row loop written inline in a loop over input rows, measured 1.3-1.6x slower)
        if (N == 1) {
            if (one) for (int r = 0; r < rows; r++) y[m + r] = chainF32(x, 0, w, wo + r * K, bias, K, m + r);
            else if (bf16) for (int r = 0; r < rows; r++) y[m + r] = oneBf16(x, 0, h, ho + r * K, bias, K, m + r);
            else for (int r = 0; r < rows; r++) y[m + r] = oneF32(x, 0, w, wo + r * K, bias, K, m + r);
            return;
        }
        int r = 0;
        if (N >= BATCH && WIDE && !bf16) {   // compute-bound: 2 weight rows × 2 input rows share their loads
            if (one) for (; r + 2 <= rows; r += 2) chainPairF32(y, x, w, wo + r * K, bias, N, K, M, m + r);
            else for (; r + 2 <= rows; r += 2) pairF32(y, x, w, wo + r * K, bias, N, K, M, m + r);
        }
        if (one) for (; r < rows; r++) chainRowF32(y, x, w, wo + r * K, bias, N, K, M, m + r);
        else if (bf16) for (; r < rows; r++) rowBf16(y, x, h, ho + r * K, bias, N, K, M, m + r);
        else for (; r < rows; r++) rowF32(y, x, w, wo + r * K, bias, N, K, M, m + r);
    }

    /// Float32 weight row m (at `wo`) against the input row at `x0` with one FMA chain over the whole vector chunks:
    /// a float32 row streams at 27-30 GB/s against 24-26 with four chains (one Zen 5 thread, SmolLM2's matrices),
    /// where BF16 needs four (one chain is latency-bound at about 24 GB/s of BF16, 12 G weights/s).
    private static float chainF32(float[] x, int x0, float[] w, int wo, float[] bias, int K, int m) {
        FloatVector a = FloatVector.zero(F);
        int i = 0;
        for (; i + L <= K; i += L) a = FloatVector.fromArray(F, w, wo + i).fma(FloatVector.fromArray(F, x, x0 + i), a);
        return finish(a, x, x0, w, wo, false, null, 0, i, K, bias, m);
    }

    /// [#chainF32] for every input row, two at a time (the weight loads shared); a last odd row as [#chainF32].
    private static void chainRowF32(float[] y, float[] x, float[] w, int wo, float[] bias, int N, int K, int M, int m) {
        int n = 0;
        for (; n + 2 <= N; n += 2) {
            int x0 = n * K, x1 = x0 + K, i = 0;
            FloatVector a = FloatVector.zero(F), b = a;
            for (; i + L <= K; i += L) {
                FloatVector wi = FloatVector.fromArray(F, w, wo + i);
                a = wi.fma(FloatVector.fromArray(F, x, x0 + i), a);
                b = wi.fma(FloatVector.fromArray(F, x, x1 + i), b);
            }
            y[n * M + m] = finish(a, x, x0, w, wo, false, null, 0, i, K, bias, m);
            y[(n + 1) * M + m] = finish(b, x, x1, w, wo, false, null, 0, i, K, bias, m);
        }
        if (n < N) y[n * M + m] = chainF32(x, n * K, w, wo, bias, K, m);
    }

    /// [#chainF32] for weight rows m, m+1 against every input row, two at a time: each weight and input vector loaded
    /// once for two products (four chains); a last odd input row as [#chainF32].
    private static void chainPairF32(float[] y, float[] x, float[] w, int wo, float[] bias, int N, int K, int M, int m) {
        int n = 0, vo = wo + K;
        for (; n + 2 <= N; n += 2) {
            int x0 = n * K, x1 = x0 + K, i = 0;
            FloatVector a = FloatVector.zero(F), b = a, c = a, d = a;
            for (; i + L <= K; i += L) {
                FloatVector x00 = FloatVector.fromArray(F, x, x0 + i), x10 = FloatVector.fromArray(F, x, x1 + i);
                FloatVector w0 = FloatVector.fromArray(F, w, wo + i), v0 = FloatVector.fromArray(F, w, vo + i);
                a = w0.fma(x00, a); b = w0.fma(x10, b); c = v0.fma(x00, c); d = v0.fma(x10, d);
            }
            y[n * M + m] = finish(a, x, x0, w, wo, false, null, 0, i, K, bias, m);
            y[(n + 1) * M + m] = finish(b, x, x1, w, wo, false, null, 0, i, K, bias, m);
            y[n * M + m + 1] = finish(c, x, x0, w, vo, false, null, 0, i, K, bias, m + 1);
            y[(n + 1) * M + m + 1] = finish(d, x, x1, w, vo, false, null, 0, i, K, bias, m + 1);
        }
        if (n < N) {
            y[n * M + m] = chainF32(x, n * K, w, wo, bias, K, m);
            y[n * M + m + 1] = chainF32(x, n * K, w, vo, bias, K, m + 1);
        }
    }

    /// 32 vector registers (AVX-512): room for the 16 accumulators of the 2×2 tile.
    private static final boolean WIDE = F.vectorBitSize() >= 512;

    // One gate for each family of kernels, so that a warm-up compiles only what the weights in use take (a BF16
    // checkpoint never the float32 one-chain kernels, a float32 one never the BF16 ones): each warm-up runs its kernels
    // on a short problem of real row structure (five 4L chunks a row; one to five input rows), a few microseconds once
    // compiled and tens of microseconds or more before; its budget is several times the compiled time. Compared with
    // one gate over every kernel at K = 1024 (1.4 s to open, no other load), a BF16 warm-up alone took 0.7-0.9 s at
    // K = 128-256.
    private static final int WARM_K = 20 * L, WARM_M = 4;

    /// Float32 weights held as such: the one-chain kernels.
    private static final ColdStart.Gate F32_GATE = ColdStart.gate("row-products-f32", new Runnable() {
        final float[] x = new float[5 * WARM_K], w = new float[WARM_M * WARM_K], y = new float[5 * WARM_M];
        public void run() {
            for (int n = 1; n <= 5; n++) span(false, true, y, x, w, 0, false, null, 0, null, n, WARM_K, WARM_M, 0, WARM_M);
        }
    }, 8_000);

    /// BF16 weights below a batch: the kernels that convert in registers.
    private static final ColdStart.Gate BF16_GATE = ColdStart.gate("row-products-bf16", new Runnable() {
        final float[] x = new float[BATCH * WARM_K], y = new float[BATCH * WARM_M];
        final MemorySegment h = DenseHalf.segment(new short[WARM_M * WARM_K]);
        public void run() {
            for (int n = 1; n < BATCH; n++) span(false, false, y, x, null, 0, true, h, 0, null, n, WARM_K, WARM_M, 0, WARM_M);
        }
    }, 5_000);

    /// Rows converted into a float buffer first (F16, BF16 from a batch, ggml blocks): the BF16 conversion and the
    /// four-chain float32 kernels.
    private static final ColdStart.Gate GATE = ColdStart.gate("row-products", new Runnable() {
        final float[] x = new float[5 * WARM_K], w = new float[WARM_M * WARM_K], y = new float[5 * WARM_M];
        final MemorySegment h = DenseHalf.segment(new short[WARM_M * WARM_K]);
        public void run() {
            DenseHalf.toFloat(DType.BF16, h, 0, w, 0, w.length);
            for (int n = 1; n <= 5; n++) span(false, false, y, x, w, 0, false, null, 0, null, n, WARM_K, WARM_M, 0, WARM_M);
        }
    }, 8_000);

    /// Floats of scratch the F16 and block-quantized paths need: a 4-row buffer per thread (BF16 converts in registers).
    public static int scratchSize(int K, int M) { return Math.min(G, M) * K * Math.max(1, Parallel.threads()); }

    /// One range per thread, none shorter than 16 rows (a handful of rows is not worth a hand-off).
    private static int chunks(int M) { return Math.max(1, Math.min(Parallel.threads(), M / 16)); }

    private static FloatVector bf16(MemorySegment h, int o) {
        return ((IntVector) ShortVector.fromMemorySegment(H, h, 2L * o, ByteOrder.LITTLE_ENDIAN).convertShape(VectorOperators.S2I, I, 0))
                .lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats();
    }

    private static float ws(float[] w, int wo, boolean bf16, MemorySegment h, int ho, int i) {
        return bf16 ? Float.intBitsToFloat(h.get(DenseHalf.BITS, 2L * (ho + i)) << 16) : w[wo + i];
    }

    /// Float32 weight row m (at `wo`) against every input row, two at a time (the weight loads shared), each with
    /// the four accumulators of [#oneF32]; a last odd row as [#oneF32].
    private static void rowF32(float[] y, float[] x, float[] w, int wo, float[] bias, int N, int K, int M, int m) {
        int n = 0;
        for (; n + 2 <= N; n += 2) {
            int x0 = n * K, x1 = x0 + K, i = 0;
            FloatVector a0 = FloatVector.zero(F), a1 = a0, a2 = a0, a3 = a0, b0 = a0, b1 = a0, b2 = a0, b3 = a0;
            for (; i + 4 * L <= K; i += 4 * L) {
                FloatVector w0 = FloatVector.fromArray(F, w, wo + i), w1 = FloatVector.fromArray(F, w, wo + i + L);
                FloatVector w2 = FloatVector.fromArray(F, w, wo + i + 2 * L), w3 = FloatVector.fromArray(F, w, wo + i + 3 * L);
                a0 = w0.fma(FloatVector.fromArray(F, x, x0 + i), a0);
                b0 = w0.fma(FloatVector.fromArray(F, x, x1 + i), b0);
                a1 = w1.fma(FloatVector.fromArray(F, x, x0 + i + L), a1);
                b1 = w1.fma(FloatVector.fromArray(F, x, x1 + i + L), b1);
                a2 = w2.fma(FloatVector.fromArray(F, x, x0 + i + 2 * L), a2);
                b2 = w2.fma(FloatVector.fromArray(F, x, x1 + i + 2 * L), b2);
                a3 = w3.fma(FloatVector.fromArray(F, x, x0 + i + 3 * L), a3);
                b3 = w3.fma(FloatVector.fromArray(F, x, x1 + i + 3 * L), b3);
            }
            for (; i + L <= K; i += L) {
                FloatVector wi = FloatVector.fromArray(F, w, wo + i);
                a0 = wi.fma(FloatVector.fromArray(F, x, x0 + i), a0);
                b0 = wi.fma(FloatVector.fromArray(F, x, x1 + i), b0);
            }
            y[n * M + m] = finish(a0.add(a1).add(a2.add(a3)), x, x0, w, wo, false, null, 0, i, K, bias, m);
            y[(n + 1) * M + m] = finish(b0.add(b1).add(b2.add(b3)), x, x1, w, wo, false, null, 0, i, K, bias, m);
        }
        if (n < N) y[n * M + m] = oneF32(x, n * K, w, wo, bias, K, m);
    }

    /// Float32 weight row m (at `wo`) against the input row at `x0`: four FMA chains, one weight stream.
    private static float oneF32(float[] x, int x0, float[] w, int wo, float[] bias, int K, int m) {
        FloatVector a0 = FloatVector.zero(F), a1 = a0, a2 = a0, a3 = a0;
        int i = 0;
        for (; i + 4 * L <= K; i += 4 * L) {
            a0 = FloatVector.fromArray(F, w, wo + i).fma(FloatVector.fromArray(F, x, x0 + i), a0);
            a1 = FloatVector.fromArray(F, w, wo + i + L).fma(FloatVector.fromArray(F, x, x0 + i + L), a1);
            a2 = FloatVector.fromArray(F, w, wo + i + 2 * L).fma(FloatVector.fromArray(F, x, x0 + i + 2 * L), a2);
            a3 = FloatVector.fromArray(F, w, wo + i + 3 * L).fma(FloatVector.fromArray(F, x, x0 + i + 3 * L), a3);
        }
        for (; i + L <= K; i += L) a0 = FloatVector.fromArray(F, w, wo + i).fma(FloatVector.fromArray(F, x, x0 + i), a0);
        return finish(a0.add(a1).add(a2.add(a3)), x, x0, w, wo, false, null, 0, i, K, bias, m);
    }

    /// [#rowF32] for a BF16 weight row (bits at `ho`), converted in registers.
    private static void rowBf16(float[] y, float[] x, MemorySegment h, int ho, float[] bias, int N, int K, int M, int m) {
        int n = 0;
        for (; n + 2 <= N; n += 2) {
            int x0 = n * K, x1 = x0 + K, i = 0;
            FloatVector a0 = FloatVector.zero(F), a1 = a0, a2 = a0, a3 = a0, b0 = a0, b1 = a0, b2 = a0, b3 = a0;
            for (; i + 4 * L <= K; i += 4 * L) {
                FloatVector w0 = bf16(h, ho + i), w1 = bf16(h, ho + i + L), w2 = bf16(h, ho + i + 2 * L), w3 = bf16(h, ho + i + 3 * L);
                a0 = w0.fma(FloatVector.fromArray(F, x, x0 + i), a0);
                b0 = w0.fma(FloatVector.fromArray(F, x, x1 + i), b0);
                a1 = w1.fma(FloatVector.fromArray(F, x, x0 + i + L), a1);
                b1 = w1.fma(FloatVector.fromArray(F, x, x1 + i + L), b1);
                a2 = w2.fma(FloatVector.fromArray(F, x, x0 + i + 2 * L), a2);
                b2 = w2.fma(FloatVector.fromArray(F, x, x1 + i + 2 * L), b2);
                a3 = w3.fma(FloatVector.fromArray(F, x, x0 + i + 3 * L), a3);
                b3 = w3.fma(FloatVector.fromArray(F, x, x1 + i + 3 * L), b3);
            }
            for (; i + L <= K; i += L) {
                FloatVector wi = bf16(h, ho + i);
                a0 = wi.fma(FloatVector.fromArray(F, x, x0 + i), a0);
                b0 = wi.fma(FloatVector.fromArray(F, x, x1 + i), b0);
            }
            y[n * M + m] = finish(a0.add(a1).add(a2.add(a3)), x, x0, null, 0, true, h, ho, i, K, bias, m);
            y[(n + 1) * M + m] = finish(b0.add(b1).add(b2.add(b3)), x, x1, null, 0, true, h, ho, i, K, bias, m);
        }
        if (n < N) y[n * M + m] = oneBf16(x, n * K, h, ho, bias, K, m);
    }

    /// [#oneF32] for a BF16 weight row (bits at `ho`), converted in registers.
    private static float oneBf16(float[] x, int x0, MemorySegment h, int ho, float[] bias, int K, int m) {
        FloatVector a0 = FloatVector.zero(F), a1 = a0, a2 = a0, a3 = a0;
        int i = 0;
        for (; i + 4 * L <= K; i += 4 * L) {
            a0 = bf16(h, ho + i).fma(FloatVector.fromArray(F, x, x0 + i), a0);
            a1 = bf16(h, ho + i + L).fma(FloatVector.fromArray(F, x, x0 + i + L), a1);
            a2 = bf16(h, ho + i + 2 * L).fma(FloatVector.fromArray(F, x, x0 + i + 2 * L), a2);
            a3 = bf16(h, ho + i + 3 * L).fma(FloatVector.fromArray(F, x, x0 + i + 3 * L), a3);
        }
        for (; i + L <= K; i += L) a0 = bf16(h, ho + i).fma(FloatVector.fromArray(F, x, x0 + i), a0);
        return finish(a0.add(a1).add(a2.add(a3)), x, x0, null, 0, true, h, ho, i, K, bias, m);
    }

    /// Float32 weight rows m, m+1 (at `wo`) against every input row, two at a time: [#rowF32]'s sums for two rows,
    /// each weight and input vector loaded once for two products; a last odd input row as [#oneF32]'s sums.
    private static void pairF32(float[] y, float[] x, float[] w, int wo, float[] bias, int N, int K, int M, int m) {
        int n = 0, vo = wo + K;
        for (; n + 2 <= N; n += 2) {
            int x0 = n * K, x1 = x0 + K, i = 0;
            FloatVector a0 = FloatVector.zero(F), a1 = a0, a2 = a0, a3 = a0, b0 = a0, b1 = a0, b2 = a0, b3 = a0;
            FloatVector c0 = a0, c1 = a0, c2 = a0, c3 = a0, d0 = a0, d1 = a0, d2 = a0, d3 = a0;
            for (; i + 4 * L <= K; i += 4 * L) {
                FloatVector x00 = FloatVector.fromArray(F, x, x0 + i), x10 = FloatVector.fromArray(F, x, x1 + i);
                FloatVector w0 = FloatVector.fromArray(F, w, wo + i), v0 = FloatVector.fromArray(F, w, vo + i);
                a0 = w0.fma(x00, a0); b0 = w0.fma(x10, b0); c0 = v0.fma(x00, c0); d0 = v0.fma(x10, d0);
                FloatVector x01 = FloatVector.fromArray(F, x, x0 + i + L), x11 = FloatVector.fromArray(F, x, x1 + i + L);
                FloatVector w1 = FloatVector.fromArray(F, w, wo + i + L), v1 = FloatVector.fromArray(F, w, vo + i + L);
                a1 = w1.fma(x01, a1); b1 = w1.fma(x11, b1); c1 = v1.fma(x01, c1); d1 = v1.fma(x11, d1);
                FloatVector x02 = FloatVector.fromArray(F, x, x0 + i + 2 * L), x12 = FloatVector.fromArray(F, x, x1 + i + 2 * L);
                FloatVector w2 = FloatVector.fromArray(F, w, wo + i + 2 * L), v2 = FloatVector.fromArray(F, w, vo + i + 2 * L);
                a2 = w2.fma(x02, a2); b2 = w2.fma(x12, b2); c2 = v2.fma(x02, c2); d2 = v2.fma(x12, d2);
                FloatVector x03 = FloatVector.fromArray(F, x, x0 + i + 3 * L), x13 = FloatVector.fromArray(F, x, x1 + i + 3 * L);
                FloatVector w3 = FloatVector.fromArray(F, w, wo + i + 3 * L), v3 = FloatVector.fromArray(F, w, vo + i + 3 * L);
                a3 = w3.fma(x03, a3); b3 = w3.fma(x13, b3); c3 = v3.fma(x03, c3); d3 = v3.fma(x13, d3);
            }
            for (; i + L <= K; i += L) {
                FloatVector x00 = FloatVector.fromArray(F, x, x0 + i), x10 = FloatVector.fromArray(F, x, x1 + i);
                FloatVector w0 = FloatVector.fromArray(F, w, wo + i), v0 = FloatVector.fromArray(F, w, vo + i);
                a0 = w0.fma(x00, a0); b0 = w0.fma(x10, b0); c0 = v0.fma(x00, c0); d0 = v0.fma(x10, d0);
            }
            y[n * M + m] = finish(a0.add(a1).add(a2.add(a3)), x, x0, w, wo, false, null, 0, i, K, bias, m);
            y[(n + 1) * M + m] = finish(b0.add(b1).add(b2.add(b3)), x, x1, w, wo, false, null, 0, i, K, bias, m);
            y[n * M + m + 1] = finish(c0.add(c1).add(c2.add(c3)), x, x0, w, vo, false, null, 0, i, K, bias, m + 1);
            y[(n + 1) * M + m + 1] = finish(d0.add(d1).add(d2.add(d3)), x, x1, w, vo, false, null, 0, i, K, bias, m + 1);
        }
        if (n < N) {
            y[n * M + m] = oneF32(x, n * K, w, wo, bias, K, m);
            y[n * M + m + 1] = oneF32(x, n * K, w, vo, bias, K, m + 1);
        }
    }

    /// The combined accumulator's lanes in index order, plus the scalar tail [tail, K) and the bias.
    private static float finish(FloatVector acc, float[] x, int xo, float[] w, int wo, boolean bf16, MemorySegment h, int ho,
                                int tail, int K, float[] bias, int m) {
        float t = 0f;
        for (int i = tail; i < K; i++) t = Math.fma(ws(w, wo, bf16, h, ho, i), x[xo + i], t);
        float d = VectorOps.sumHalves(acc) + t;
        return bias == null ? d : d + bias[m];
    }

    /// The lane-order scalar twin of the vector kernels (their bits): for each input row, weight row and lane j, the
    /// four chains c_q = fma(w[i], x[i], c_q) over i = j + q·L + 4L·t below 4·⌊K/4L⌋·L, chain 0 continued over the
    /// remaining whole chunks, then (c0 + c1) + (c2 + c3) (`one`: the single chain c0 over every whole chunk); the
    /// lanes summed as [VectorOps#sumHalves(float[], int)], then the scalar tail and the bias, as [#finish].
    /// Two lanes at a time, their eight chains in registers: once C2 has compiled it, 0.55 ns a multiply-add on one
    /// Zen 5 thread (BF16, five input rows), against 0.85 with the chains in an array updated by element-wise loops.
    /// A BF16 row is first copied out of its segment in bulk, a block of rows at a time, and converted (exactly) into
    /// float rows, as a segment read per value costs many times an array read before C2 compiles it.
    static void lanes(boolean one, float[] y, float[] x, float[] w, int wo, boolean bf16, MemorySegment h, int ho, float[] bias,
                      int N, int K, int M, int m, int rows) {
        int main = one ? 0 : K / (4 * L) * 4 * L, tail = F.loopBound(K);
        float[] lane = new float[L];
        int block = bf16 ? Math.max(1, Math.min(rows, TWIN_BLOCK / K)) : rows;
        short[] bits = bf16 ? new short[block * K] : null;
        float[] wr = bf16 ? new float[block * K] : w;
        for (int r0 = 0; r0 < rows; r0 += block) {
            int nr = Math.min(block, rows - r0), base = wo + r0 * K;
            if (bf16) {   // rows r0 .. r0+nr-1 copied out in one bulk copy and converted
                MemorySegment.copy(h, DenseHalf.BITS, 2L * (ho + r0 * K), bits, 0, nr * K);
                for (int i = 0; i < nr * K; i++) wr[i] = Float.intBitsToFloat(bits[i] << 16);
                base = 0;
            }
            for (int r = r0; r < r0 + nr; r++) {
                int w0 = base + (r - r0) * K;
                for (int n = 0; n < N; n++) {
                    int x0 = n * K;
                    // lanes j and j + 1 together: eight independent chains in registers (L is even)
                    for (int j = 0; j < L; j += 2) {
                        float a0 = 0f, a1 = 0f, a2 = 0f, a3 = 0f, b0 = 0f, b1 = 0f, b2 = 0f, b3 = 0f;
                        for (int i = w0 + j, xi = x0 + j, end = w0 + main; i < end; i += 4 * L, xi += 4 * L) {
                            a0 = Math.fma(wr[i], x[xi], a0);
                            b0 = Math.fma(wr[i + 1], x[xi + 1], b0);
                            a1 = Math.fma(wr[i + L], x[xi + L], a1);
                            b1 = Math.fma(wr[i + L + 1], x[xi + L + 1], b1);
                            a2 = Math.fma(wr[i + 2 * L], x[xi + 2 * L], a2);
                            b2 = Math.fma(wr[i + 2 * L + 1], x[xi + 2 * L + 1], b2);
                            a3 = Math.fma(wr[i + 3 * L], x[xi + 3 * L], a3);
                            b3 = Math.fma(wr[i + 3 * L + 1], x[xi + 3 * L + 1], b3);
                        }
                        for (int i = w0 + main + j, xi = x0 + main + j, end = w0 + tail; i < end; i += L, xi += L) {
                            a0 = Math.fma(wr[i], x[xi], a0);
                            b0 = Math.fma(wr[i + 1], x[xi + 1], b0);
                        }
                        lane[j] = one ? a0 : (a0 + a1) + (a2 + a3);
                        lane[j + 1] = one ? b0 : (b0 + b1) + (b2 + b3);
                    }
                    float t = 0f;
                    for (int i = tail; i < K; i++) t = Math.fma(wr[w0 + i], x[x0 + i], t);
                    float d = VectorOps.sumHalves(lane, L) + t;
                    y[n * M + m + r] = bias == null ? d : d + bias[m + r];
                }
            }
        }
    }

    /// Values of BF16 rows the twin converts per bulk copy.
    private static final int TWIN_BLOCK = 16384;

    /// The scalar twin: plain dot products in index order, W as float32 (`w`) or 16-bit bits (`h` of `type`, w null).
    public static void forwardScalar(DType type, float[] y, float[] x, float[] w, MemorySegment h, float[] bias, int N, int K, int M) {
        for (int n = 0; n < N; n++)
            for (int m = 0; m < M; m++) {
                float s = 0f;
                for (int i = 0; i < K; i++) {
                    float wi = w != null ? w[m * K + i]
                            : type == DType.BF16 ? Float.intBitsToFloat(h.get(DenseHalf.BITS, 2L * (m * K + i)) << 16)
                            : Float.float16ToFloat(h.get(DenseHalf.BITS, 2L * (m * K + i)));
                    s += wi * x[n * K + i];
                }
                y[n * M + m] = bias == null ? s : s + bias[m];
            }
    }
}
