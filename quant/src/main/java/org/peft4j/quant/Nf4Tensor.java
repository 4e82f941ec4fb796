package org.peft4j.quant;

import org.peft4j.core.Peft4jException.ConfigException;
import org.peft4j.core.Peft4jException.FormatException;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.Arrays;
import java.util.Objects;

/// A bitsandbytes 4-bit (NF4 or FP4) blockwise-quantized tensor, the frozen base weight of QLoRA. Byte layout as a
/// `Linear4bit` checkpoint stores it: `packed` holds 2 codes per byte over the flattened row-major tensor, element
/// `2k` in the high nibble; blocks of `blockSize` consecutive elements (crossing rows when the row length is not a
/// multiple) share one absmax, kept as float32 or double-quantized ([Absmax.Nested]).
/// Dequantization: `w = fl32(code[q] · absmax'[block])`. Reference: bitsandbytes `functional.py` `quantize_4bit`,
/// `dequantize_4bit`, `csrc/kernels.cu` `kQuantizeBlockwise`; specs.md §1.2–1.5.
///
/// **Off the Java heap.** `packed` and the 8-bit absmax codes are [MemorySegment]s, the bulk of a 4-bit model (3.3 GB
/// at Llama-2-7B): [#quantize] allocates them in an automatic native arena (freed when the tensor is unreachable),
/// and a checkpoint reader passes slices of the mapped file, used in place without a copy. The small float32 tables
/// (nested absmax, code maps) stay arrays. [#offHeapBytes] is what this tensor adds outside the heap.
public record Nf4Tensor(QuantType type, long[] shape, int blockSize, MemorySegment packed, Absmax absmax) implements QuantLinear.Weight {
    /// Block sizes bitsandbytes accepts for 4-bit quantization (`quantize_4bit`).
    public static final int[] BLOCK_SIZES = {32, 64, 128, 256, 512, 1024, 2048, 4096};
    public static final int DEFAULT_BLOCK_SIZE = 64;
    /// Block size of the double quantization of absmax (`nested_blocksize`).
    public static final int NESTED_BLOCK_SIZE = 256;

    /// Per-block scales of a 4-bit tensor: plain float32, or 8-bit codes of `absmax - offset` (double quantization).
    public sealed interface Absmax permits Absmax.Plain, Absmax.Nested {
        /// The number of 4-bit blocks covered.
        int blocks();
        /// The (dequantized) absmax of 4-bit block `b`.
        float get(int b);

        /// `weight.absmax` as float32 `(blocks)`.
        record Plain(float[] values) implements Absmax {
            public Plain { Objects.requireNonNull(values, "values"); }
            public int blocks() { return values.length; }
            public float get(int b) { return values[b]; }
        }

        /// Double quantization: `codes` (blocks) = `weight.absmax` U8 (a native or mapped segment, or a heap one), `nestedAbsmax` (ceil(blocks / nestedBlockSize)),
        /// `nestedQuantMap` (256, the signed dynamic map as stored), `offset` = mean of the original absmax.
        /// `get(b) = fl32(fl32(map[codes[b]] · nestedAbsmax[b / nestedBlockSize]) + offset)`: two roundings, no FMA.
        record Nested(MemorySegment codes, float[] nestedAbsmax, float[] nestedQuantMap, float offset, int nestedBlockSize) implements Absmax {
            public Nested {
                Objects.requireNonNull(codes, "codes");
                if (codes.byteSize() > Integer.MAX_VALUE) throw new FormatException(codes.byteSize() + " absmax codes; at most 2^31 - 1 blocks");
                if (nestedQuantMap.length != 256) throw new FormatException("nested_quant_map has " + nestedQuantMap.length
                        + " entries; an 8-bit code map has 256. The checkpoint's quant state is corrupt");
                if (nestedBlockSize <= 0) throw new FormatException("nested_blocksize must be positive, got " + nestedBlockSize);
                long need = (codes.byteSize() + nestedBlockSize - 1) / nestedBlockSize;
                if (nestedAbsmax.length != need) throw new FormatException("nested_absmax has " + nestedAbsmax.length
                        + " values, but " + codes.byteSize() + " absmax codes in nested blocks of " + nestedBlockSize + " need " + need
                        + "; weight.absmax and weight.nested_absmax come from different tensors");
            }
            /// Codes given as a heap array (tests, small tensors).
            public Nested(byte[] codes, float[] nestedAbsmax, float[] nestedQuantMap, float offset, int nestedBlockSize) {
                this(MemorySegment.ofArray(codes), nestedAbsmax, nestedQuantMap, offset, nestedBlockSize);
            }
            public int blocks() { return (int) codes.byteSize(); }
            public float get(int b) {
                float v = nestedQuantMap[codes.get(ValueLayout.JAVA_BYTE, b) & 0xff] * nestedAbsmax[b / nestedBlockSize];
                return v + offset;
            }
            /// A copy of the codes as a heap array.
            public byte[] codeBytes() { return codes.toArray(ValueLayout.JAVA_BYTE); }

            /// Double-quantizes `absmax` (bitsandbytes `quantize_4bit(compress_statistics=True)`): offset = the mean
            /// (summed in double, compensated, rounded once to float32), then 8-bit blockwise with the signed map.
            public static Nested quantize(float[] absmax, int nestedBlockSize) {
                double sum = 0, c = 0;   // Neumaier summation: exact for any realistic spread of absmax values
                for (float a : absmax) {
                    double t = sum + a;
                    c += Math.abs(sum) >= Math.abs(a) ? (sum - t) + a : (a - t) + sum;
                    sum = t;
                }
                float offset = (float) ((sum + c) / absmax.length);
                float[] centered = new float[absmax.length];
                for (int i = 0; i < centered.length; i++) centered[i] = absmax[i] - offset;
                float[] map = DynamicMap.signed();
                byte[] codes = new byte[absmax.length];
                float[] nested = new float[(absmax.length + nestedBlockSize - 1) / nestedBlockSize];
                Blockwise8.quantize(codes, nested, centered, map, nestedBlockSize);
                MemorySegment off = Arena.ofAuto().allocate(codes.length);
                MemorySegment.copy(codes, 0, off, ValueLayout.JAVA_BYTE, 0, codes.length);
                return new Nested(off, nested, map, offset, nestedBlockSize);
            }
        }
    }

    public Nf4Tensor {
        Objects.requireNonNull(type, "type");
        Objects.requireNonNull(packed, "packed");
        Objects.requireNonNull(absmax, "absmax");
        shape = shape.clone();
        long n = numel(shape);
        if (blockSize <= 0) throw new FormatException("4-bit block size must be positive, got " + blockSize);
        if (packed.byteSize() != (n + 1) / 2) throw new FormatException("packed 4-bit weight has " + packed.byteSize() + " bytes, but shape "
                + Arrays.toString(shape) + " (" + n + " elements) needs " + (n + 1) / 2 + "; the weight does not match its quant_state shape");
        long blocks = (n + blockSize - 1) / blockSize;
        if (absmax.blocks() != blocks) throw new FormatException("absmax has " + absmax.blocks() + " values, but shape "
                + Arrays.toString(shape) + " in blocks of " + blockSize + " has " + blocks
                + " blocks; the absmax tensor or the quant_state blocksize does not belong to this weight");
    }

    /// Packed codes given as a heap array (tests, small tensors).
    public Nf4Tensor(QuantType type, long[] shape, int blockSize, byte[] packed, Absmax absmax) {
        this(type, shape, blockSize, MemorySegment.ofArray(packed), absmax);
    }

    @Override public long[] shape() { return shape.clone(); }

    /// A copy of the packed codes as a heap array (tests, hashing).
    public byte[] packedBytes() { return packed.toArray(ValueLayout.JAVA_BYTE); }

    /// Bytes this tensor holds outside the Java heap (native or mapped segments): packed codes and 8-bit absmax codes.
    public long offHeapBytes() {
        long b = packed.isNative() ? packed.byteSize() : 0;
        if (absmax instanceof Absmax.Nested n && n.codes().isNative()) b += n.codes().byteSize();
        return b;
    }

    /// Bytes of the packed codes and the scales (float32 absmax; or the 8-bit codes, nested float32 absmax, the
    /// 256-entry map and the offset), wherever they are held.
    public long storedBytes() {
        long scales = switch (absmax) {
            case Absmax.Plain p -> 4L * p.values().length;
            case Absmax.Nested n -> n.codes().byteSize() + 4L * n.nestedAbsmax().length + 4L * n.nestedQuantMap().length + 4;
        };
        return packed.byteSize() + scales;
    }

    private static long numel(long[] shape) {
        long n = 1;
        for (long d : shape) {
            if (d < 0) throw new FormatException("shape " + Arrays.toString(shape) + " has a negative dimension");
            n = Math.multiplyExact(n, d);
        }
        if (n > 2L * Integer.MAX_VALUE - 2) throw new FormatException("shape " + Arrays.toString(shape) + " has " + n
                + " elements; a 4-bit tensor is limited to 2^32 - 2 (split the weight)");
        return n;
    }

    public long numel() { return numel(shape); }
    public int blocks() { return absmax.blocks(); }

    /// Quantizes row-major `x` of `shape` with bitsandbytes' CUDA semantics (specs.md §1.2): per block
    /// `absmax = max|x|`, `s = fl32(x · fl32(1/absmax))`, code by thresholds; an odd count pads the last low nibble
    /// with the code of a zero-padded value. `doubleQuant` = `bnb_4bit_use_double_quant` (nested block 256).
    public static Nf4Tensor quantize(QuantType type, float[] x, long[] shape, int blockSize, boolean doubleQuant) {
        if (Arrays.stream(BLOCK_SIZES).noneMatch(b -> b == blockSize))
            throw new ConfigException("4-bit block size " + blockSize + " is not one bitsandbytes supports; use one of "
                    + Arrays.toString(BLOCK_SIZES) + " (default " + DEFAULT_BLOCK_SIZE + ")");
        if (numel(shape) != x.length) throw new IllegalArgumentException("shape " + Arrays.toString(shape) + " has "
                + numel(shape) + " elements, but " + x.length + " values were given");
        return quantize(type, shape, blockSize, doubleQuant, (from, dst, count) -> System.arraycopy(x, (int) from, dst, 0, count));
    }

    /// Elements of a tensor handed to [#quantize(QuantType, long[], int, boolean, Source)] chunk by chunk, in order.
    @FunctionalInterface
    public interface Source {
        /// Writes flattened elements [from, from + count) into dst[0 ..< count].
        void fill(long from, float[] dst, int count);
    }

    /// Elements per chunk of a streamed quantization (4 MiB of floats, rounded down to whole blocks).
    static final int CHUNK = 1 << 20;

    /// As [#quantize(QuantType, float[], long[], int, boolean)] (the same bytes), reading the tensor from `source` in
    /// chunks of whole blocks: a tensor of any size is quantized with one 4 MiB float buffer, never held as float32.
    public static Nf4Tensor quantize(QuantType type, long[] shape, int blockSize, boolean doubleQuant, Source source) {
        return quantize(type, shape, blockSize, doubleQuant, Arena.ofAuto(), source);
    }

    /// As above with the packed codes allocated in `arena` (a confined arena frees them as soon as it is closed).
    public static Nf4Tensor quantize(QuantType type, long[] shape, int blockSize, boolean doubleQuant, Arena arena, Source source) {
        if (Arrays.stream(BLOCK_SIZES).noneMatch(b -> b == blockSize))
            throw new ConfigException("4-bit block size " + blockSize + " is not one bitsandbytes supports; use one of "
                    + Arrays.toString(BLOCK_SIZES) + " (default " + DEFAULT_BLOCK_SIZE + ")");
        long n = numel(shape);
        MemorySegment packed = arena.allocate((n + 1L) / 2);   // native, zeroed
        byte[] buf = new byte[blockSize / 2 + 1];   // one block's bytes (block sizes are even: a byte never spans blocks)
        long blocks = (n + blockSize - 1) / blockSize;
        if (blocks > Integer.MAX_VALUE - 8) throw new FormatException("shape " + Arrays.toString(shape) + " has " + blocks + " blocks; split the weight");
        float[] absmax = new float[(int) blocks];
        float[] x = new float[(int) Math.min(n, Math.max(blockSize, CHUNK / blockSize * blockSize))];
        for (long c0 = 0; c0 < n; c0 += x.length) {
            int cn = (int) Math.min(x.length, n - c0);
            source.fill(c0, x, cn);
            for (int from = 0; from < cn; from += blockSize) {
                int to = Math.min(cn, from + blockSize);
                float m = 0f;
                for (int i = from; i < to; i++) { float a = Math.abs(x[i]); if (a > m) m = a; }   // NaN skipped, as fmaxf
                absmax[(int) ((c0 + from) / blockSize)] = m;
                float inv = 1f / m;
                Arrays.fill(buf, (byte) 0);
                for (int i = from; i < to; i++) {
                    int q = type.quantize(x[i] * inv);
                    buf[(i - from) >>> 1] |= (byte) ((i & 1) == 0 ? q << 4 : q);   // c0, from even: parity of i is the element's
                }
                if (c0 + to == n && (n & 1) == 1) buf[(to - 1 - from) >>> 1] |= (byte) type.quantize(0f * inv);
                MemorySegment.copy(buf, 0, packed, ValueLayout.JAVA_BYTE, (c0 + from) >>> 1, (to - from + 1) >>> 1);
            }
        }
        Absmax a = doubleQuant ? Absmax.Nested.quantize(absmax, NESTED_BLOCK_SIZE) : new Absmax.Plain(absmax);
        return new Nf4Tensor(type, shape, blockSize, packed, a);
    }

    /// The 4-bit code of flattened element `i`.
    public int code(long i) {
        int b = packed.get(ValueLayout.JAVA_BYTE, i >>> 1);
        return (i & 1) == 0 ? (b >>> 4) & 15 : b & 15;
    }

    /// The dequantized absmax of every block (`absmax'` for double quantization).
    public float[] absmaxValues() {
        float[] out = new float[blocks()];
        for (int b = 0; b < out.length; b++) out[b] = absmax.get(b);
        return out;
    }

    /// Dequantizes the whole tensor into `out[0 ..< numel]` (float32; round to bf16/f16 afterwards if needed).
    public void dequantize(float[] out) { dequantize(0, numel(), out, 0); }

    /// Dequantizes rows `[rowFrom, rowTo)` of the tensor seen as `(M, K)`, K = the last dimension, into
    /// `out[0 ..< (rowTo - rowFrom)·K]`: one tile of a quantized matmul.
    public void dequantizeRows(int rowFrom, int rowTo, float[] out) {
        long k = shape.length == 0 ? 1 : shape[shape.length - 1];
        long m = k == 0 ? 0 : numel() / k;
        if (rowFrom < 0 || rowTo < rowFrom || rowTo > m) throw new IndexOutOfBoundsException("rows [" + rowFrom + ", "
                + rowTo + ") are outside a (" + m + ", " + k + ") weight");
        dequantize(rowFrom * k, rowTo * k, out, 0);
    }

    /// Dequantizes flattened elements `[from, to)` into `out[outOff ..]`.
    public void dequantize(long from, long to, float[] out, int outOff) {
        if (from < 0 || to < from || to > numel()) throw new IndexOutOfBoundsException("elements [" + from + ", " + to
                + ") are outside a tensor of " + numel());
        if (to - from > out.length - (long) outOff) throw new IndexOutOfBoundsException((to - from) + " values do not fit in an array of "
                + out.length + " at offset " + outOff);
        float[] lut = type.codeShared(), pair = type.pairTable();
        int o = outOff;
        for (long i = from; i < to; ) {
            int b = (int) (i / blockSize);
            long end = Math.min(to, (b + 1L) * blockSize);
            float scale = absmax.get(b);
            if ((i & 1) == 1) { out[o++] = lut[packed.get(ValueLayout.JAVA_BYTE, i >>> 1) & 15] * scale; i++; }
            long p = i >>> 1;
            int bytes = (int) ((end - i) >>> 1);
            for (long e = p + bytes; p < e; p++, o += 2) {   // whole bytes: (hi, lo) from the 256-entry pair table
                int t = (packed.get(ValueLayout.JAVA_BYTE, p) & 0xff) << 1;
                out[o] = pair[t] * scale;
                out[o + 1] = pair[t + 1] * scale;
            }
            i += 2L * bytes;
            if (i < end) { out[o++] = lut[(packed.get(ValueLayout.JAVA_BYTE, i >>> 1) >>> 4) & 15] * scale; i++; }
        }
    }

    /// The quant_state JSON a `Linear4bit` checkpoint stores in `weight.quant_state.bitsandbytes__nf4` (UTF-8 bytes,
    /// U8): Python `json.dumps` of `{quant_type, blocksize, dtype, shape[, nested_blocksize, nested_dtype,
    /// nested_offset]}` with `", "` / `": "` separators and the offset printed as Python's `repr` (specs.md §1.5).
    /// `dtype` is the original weight dtype's torch name without `torch.`: `float16`, `bfloat16` or `float32`.
    public String quantStateJson(String dtype) {
        StringBuilder j = new StringBuilder("{\"quant_type\": \"").append(type.jsonName()).append("\", \"blocksize\": ")
                .append(blockSize).append(", \"dtype\": \"").append(dtype).append("\", \"shape\": [");
        for (int i = 0; i < shape.length; i++) j.append(i == 0 ? "" : ", ").append(shape[i]);
        j.append(']');
        if (absmax instanceof Absmax.Nested n) j.append(", \"nested_blocksize\": ").append(n.nestedBlockSize())
                .append(", \"nested_dtype\": \"float32\", \"nested_offset\": ").append(pythonRepr(n.offset()));
        return j.append('}').toString();
    }

    /// Python's `repr(float)`: the shortest decimal that round-trips (Java's `Double.toString` since JDK 19, except
    /// that Java keeps 2 digits where 1 would do), in
    /// fixed notation when the decimal exponent is in [-4, 16), else as `1.5e-05` / `1e+16`.
    static String pythonRepr(double d) {
        if (Double.isNaN(d)) return "NaN";
        if (Double.isInfinite(d)) return d > 0 ? "Infinity" : "-Infinity";   // what json.dumps writes
        if (d == 0) return (1 / d < 0) ? "-0.0" : "0.0";
        java.math.BigDecimal v = new java.math.BigDecimal(Double.toString(Math.abs(d))).stripTrailingZeros();
        if (v.precision() == 2) {   // Java prints at least 2 digits (4.9E-324); Python's shortest may have 1 (5e-324)
            java.math.BigDecimal one = new java.math.BigDecimal(Math.abs(d)).round(new java.math.MathContext(1, java.math.RoundingMode.HALF_EVEN));
            if (one.doubleValue() == Math.abs(d)) v = one.stripTrailingZeros();
        }
        String digits = v.unscaledValue().toString();
        int exp = digits.length() - v.scale() - 1;   // value = d.ddd × 10^exp
        StringBuilder out = new StringBuilder(d < 0 ? "-" : "");
        if (exp >= -4 && exp < 16) {
            if (exp < 0) out.append("0.").append("0".repeat(-exp - 1)).append(digits);
            else if (exp + 1 >= digits.length()) out.append(digits).append("0".repeat(exp + 1 - digits.length())).append(".0");
            else out.append(digits, 0, exp + 1).append('.').append(digits, exp + 1, digits.length());
        } else {
            out.append(digits.charAt(0));
            if (digits.length() > 1) out.append('.').append(digits, 1, digits.length());
            out.append('e').append(exp < 0 ? '-' : '+').append(Math.abs(exp) < 10 ? "0" : "").append(Math.abs(exp));
        }
        return out.toString();
    }
}
