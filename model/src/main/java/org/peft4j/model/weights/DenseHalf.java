package org.peft4j.model.weights;

import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.IntVector;
import jdk.incubator.vector.ShortVector;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.VectorShape;
import jdk.incubator.vector.VectorSpecies;
import org.peft4j.core.DType;
import org.peft4j.core.Gemm;
import org.peft4j.core.Parallel;
import org.peft4j.core.kernels.ScalarGemm;
import org.peft4j.quant.QuantLinear;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;

/// A frozen weight kept as BF16 or F16 bits (half the memory of float32), converted to float32 tile by tile into the
/// caller's scratch and multiplied there with one sgemm per tile, as [QuantLinear] does for 4-bit weights. The
/// conversion is exact, so the products are those of a [DenseF32] over the converted values:
/// - forward with more than [#ROW_PATH_MAX_N] input rows is bit-identical with it: each output column is one dot product over the whole `in` in either case, and
///   tiles start at multiples of [#ROW_ALIGN] rows, so a column keeps the place it has in an untiled call
///   (VectorGemm's one-row path sums columns in aligned groups of 4). This holds for ScalarGemm and VectorGemm; a
///   GEMM whose per-element order depends on the column count (OpenBLAS may) can differ in the last bit.
///   With fewer rows (decode) both take [RowProducts]' row path, again bit-identical.
/// - backwardInput sums over `out`, which tiling splits: with more than one tile, dx gets one partial sum per tile
///   instead of one sum, so it can differ from DenseF32's in the last bits (rounding only). With one tile (every
///   weight up to [QuantLinear#TILE_FLOATS] floats, e.g. every projection of SmolLM2-135M, not its tied lm_head) it is
///   bit-identical.
/// data: (out, in) row-major, little-endian bit patterns of `type` (BF16 or F16), 2·out·in bytes at any address: a
/// checkpoint's mapping used in place (`Models.load`: nothing copied, the pages shared with the page cache and faulted
/// in by the first product that reads them), or native memory ([#of], [#segment]). Reference: torch.bfloat16 / IEEE
/// 754 binary16.
public record DenseHalf(DType type, MemorySegment data, int out, int in) implements BaseWeight {
    /// Tiles of a weight that takes more than one start at multiples of this many rows (see the class comment).
    public static final int ROW_ALIGN = 16;

    public DenseHalf {
        if (type != DType.BF16 && type != DType.F16)
            throw new IllegalArgumentException("a half-precision weight is BF16 or F16, got " + type + "; use DenseF32 for F32");
        if (out <= 0 || in <= 0) throw new IllegalArgumentException("a weight needs out, in >= 1, got (" + out + ", " + in + ")");
        if (data.byteSize() != 2L * out * in) throw new IllegalArgumentException(type + " weight holds " + data.byteSize()
                + " bytes, but a (" + out + ", " + in + ") weight needs " + 2L * out * in);
        if ((long) out * in > Integer.MAX_VALUE - 8) throw new IllegalArgumentException("a (" + out + ", " + in + ") weight has more"
                + " than 2^31 values; split it");
        data = native16(data);
    }

    /// `s` as a plain native segment, so that the kernels see one segment class whatever holds the bits: a copy of a
    /// heap segment; a file mapping's view re-made over the same memory and scope (a mapped segment is another class,
    /// and kernels compiled on one class and then given the other ran at about half speed: 12 against 22 GB/s).
    private static MemorySegment native16(MemorySegment s) {
        if (!s.isNative()) {
            MemorySegment c = Arena.ofAuto().allocate(s.byteSize(), 64);
            c.copyFrom(s);
            return c;
        }
        return s.isMapped() ? s.reinterpret(s.byteSize()) : s;
    }

    /// A weight over a copy of `bits` in native memory.
    public DenseHalf(DType type, short[] bits, int out, int in) { this(type, segment(bits), out, in); }

    /// `bits` copied into native memory (64-byte aligned, freed when unreachable), as the kernels read them.
    public static MemorySegment segment(short[] bits) {
        MemorySegment s = Arena.ofAuto().allocate(2L * bits.length, 64);
        MemorySegment.copy(bits, 0, s, BITS, 0, bits.length);
        return s;
    }

    /// The weight's 16-bit values, copied out.
    public short[] bits() { return data.toArray(BITS); }

    /// Value i (row-major) as its 16 bits.
    public short bits(long i) { return data.get(BITS, 2 * i); }

    /// `w` (out, in) rounded to `dtype` (BF16 or F16), to nearest even as torch's `.to(dtype)`.
    public static DenseHalf of(DType dtype, float[] w, int out, int in) {
        MemorySegment h = Arena.ofAuto().allocate(2L * w.length, 64);
        switch (dtype) {
            case BF16 -> { for (int i = 0; i < w.length; i++) h.set(BITS, 2L * i, DType.floatToBf16(w[i])); }
            case F16 -> { for (int i = 0; i < w.length; i++) h.set(BITS, 2L * i, Float.floatToFloat16(w[i])); }
            default -> throw new IllegalArgumentException("a half-precision weight is BF16 or F16, got " + dtype);
        }
        return new DenseHalf(dtype, h, out, in);
    }

    /// Rows per tile for a (M, K) weight: [QuantLinear#tileRows]'s rule, rounded down to a multiple of [#ROW_ALIGN]
    /// when W takes more than one tile (that rule gives at least 256 rows then, so the rounding never reaches 0).
    public static int tileRows(int K, int M) {
        int t = QuantLinear.tileRows(K, M);
        return t >= M ? M : t / ROW_ALIGN * ROW_ALIGN;
    }

    @Override public int scratchSize() { return Math.max(Math.multiplyExact(tileRows(in, out), in), RowProducts.scratchSize(in, out)); }
    @Override public long bytes() { return data.byteSize(); }
    @Override public String dtype() { return type.name(); }

    @Override
    public void dequantize(float[] dst) { toFloat(type, data, 0, dst, 0, out * in); }

    /// Forwards of at most this many input rows (decode) take the row path ([RowProducts]): each row of W is read
    /// once, in 16 bits (BF16 converted in registers inside the dot products), and dotted with every input row while it
    /// is in cache. Larger N take the tile path (GEMM efficiency).
    public static final int ROW_PATH_MAX_N = RowProducts.MAX_ROWS;

    /// y = x·Wᵀ + b.   y: (N, out)   x: (N, in)   bias: (out) or null
    /// N ≤ [#ROW_PATH_MAX_N]: the row path, bit-identical with [DenseF32]'s over the converted values (its scalar twin
    /// when `gemm` is the scalar reference), the same sums for any thread count and batch. Larger N: tile by tile,
    /// y[:, r:r+rows] = x·W[r:r+rows, :]ᵀ.
    @Override
    public void forward(Gemm gemm, float[] y, float[] x, float[] bias, int N, float[] scratch) {
        int K = in, M = out, tile = check(scratch);
        if (N <= ROW_PATH_MAX_N) {
            if (gemm instanceof ScalarGemm) RowProducts.forwardScalar(type, y, x, null, data, bias, N, K, M);
            else RowProducts.forward(type, y, x, data, bias, N, K, M, scratch);
            return;
        }
        for (int r = 0; r < M; r += tile) {
            int rows = Math.min(tile, M - r);
            convertTile(r, rows, scratch);
            gemm.sgemm(false, true, N, rows, K, 1f, x, 0, K, scratch, 0, K, 0f, y, r, M);
        }
        if (bias != null)
            for (int n = 0; n < N; n++)
                for (int m = 0; m < M; m++) y[n * M + m] += bias[m];
    }

    /// dx += dy·W, tile by tile: dx += dy[:, r:r+rows]·W[r:r+rows, :].   dx: (N, in)   dy: (N, out)
    @Override
    public void backwardInput(Gemm gemm, float[] dx, float[] dy, int N, float[] scratch) {
        int K = in, M = out, tile = check(scratch);
        for (int r = 0; r < M; r += tile) {
            int rows = Math.min(tile, M - r);
            convertTile(r, rows, scratch);
            gemm.sgemm(false, false, N, K, rows, 1f, dy, r, M, scratch, 0, K, 1f, dx, 0, K);
        }
    }

    /// Rows [r, r + rows) of W into scratch, split over the pool in ranges of whole flattened elements (the result
    /// does not depend on the thread count).
    private void convertTile(int r, int rows, float[] scratch) {
        int from = r * in, n = rows * in;
        int chunks = Math.min(Parallel.threads(), Math.max(1, n / 65536));
        if (chunks <= 1) { toFloat(type, data, from, scratch, 0, n); return; }
        Parallel.chunks(n, chunks, (c, a, b) -> toFloat(type, data, from + a, scratch, a, b - a));
    }

    /// The tile size, after checking the scratch.
    private int check(float[] scratch) {
        if (scratch == null || scratch.length < scratchSize())
            throw new IllegalArgumentException("scratch holds " + (scratch == null ? 0 : scratch.length) + " floats; a (" + out + ", "
                    + in + ") " + type + " weight needs scratchSize() = " + scratchSize());
        return tileRows(in, out);
    }

    @Override public String toString() { return "DenseHalf[" + type + ", " + out + ", " + in + "]"; }

    // ---- conversion to float32: a Vector API path for BF16, the scalar twins ----------------------------------

    private static final VectorSpecies<Float> F = FloatVector.SPECIES_PREFERRED;
    private static final VectorSpecies<Integer> I = IntVector.SPECIES_PREFERRED;
    /// As many 16-bit lanes as F has floats, in half the bits.
    private static final VectorSpecies<Short> H = VectorSpecies.of(short.class, VectorShape.forBitSize(F.vectorBitSize() / 2));
    private static final int L = F.length();
    /// A stored 16-bit value: little-endian, at any even or odd address.
    static final ValueLayout.OfShort BITS = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    /// dst[dOff+i] = the float value of 16-bit `dtype` (BF16 or F16) value so+i of `src`, for i in [0, n).
    public static void toFloat(DType dtype, MemorySegment src, long so, float[] dst, int dOff, int n) {
        switch (dtype) {
            case BF16 -> bf16ToFloat(src, so, dst, dOff, n);
            case F16 -> f16ToFloat(src, so, dst, dOff, n);
            default -> throw new IllegalArgumentException("16-bit float dtypes are BF16 and F16, got " + dtype);
        }
    }

    /// The scalar twin of [#toFloat].
    public static void toFloatScalar(DType dtype, MemorySegment src, long so, float[] dst, int dOff, int n) {
        switch (dtype) {
            case BF16 -> { for (int i = 0; i < n; i++) dst[dOff + i] = Float.intBitsToFloat(src.get(BITS, 2 * (so + i)) << 16); }
            case F16 -> { for (int i = 0; i < n; i++) dst[dOff + i] = Float.float16ToFloat(src.get(BITS, 2 * (so + i))); }
            default -> throw new IllegalArgumentException("16-bit float dtypes are BF16 and F16, got " + dtype);
        }
    }

    /// BF16 is the top half of a float32: widen and shift left by 16 (the sign-extended top bits shift out). C2 does not
    /// vectorize the scalar loop (it stays about one value per cycle); this runs about 5× faster once compiled, but like
    /// all Vector API code it is slow until C2 takes it: about a second over the first million values of a run.
    static void bf16ToFloat(MemorySegment src, long so, float[] dst, int dOff, int n) {
        int i = 0;
        for (int up = n - L; i <= up; i += L)
            ((IntVector) ShortVector.fromMemorySegment(H, src, 2 * (so + i), ByteOrder.LITTLE_ENDIAN).convertShape(VectorOperators.S2I, I, 0))
                    .lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats().intoArray(dst, dOff + i);
        for (; i < n; i++) dst[dOff + i] = Float.intBitsToFloat(src.get(BITS, 2 * (so + i)) << 16);
    }

    /// F16 has no Vector API path: C2 compiles `Float.float16ToFloat` to the hardware conversion (x86 F16C, ARMv8
    /// FP16) and vectorizes this loop, which ran as fast as a Vector API version (bit tricks: shift, multiply by
    /// 2^112, blend for inf/NaN) once compiled, while that version spent seconds in the interpreter before C2 took it.
    /// The values are copied from the segment into a per-thread array first, in blocks (a bulk copy): C2 vectorizes
    /// the conversion over an array.
    static void f16ToFloat(MemorySegment src, long so, float[] dst, int dOff, int n) {
        short[] block = F16_BLOCK.get();
        for (int from = 0; from < n; from += block.length) {
            int len = Math.min(block.length, n - from);
            MemorySegment.copy(src, BITS, 2 * (so + from), block, 0, len);
            for (int i = 0; i < len; i++) dst[dOff + from + i] = Float.float16ToFloat(block[i]);
        }
    }

    private static final ThreadLocal<short[]> F16_BLOCK = ThreadLocal.withInitial(() -> new short[4096]);
}
