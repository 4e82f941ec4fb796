package org.peft4j.formats.safetensors;

import org.peft4j.core.DType;
import org.peft4j.core.Peft4jException.FormatException;

import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.Objects;

/// A memory-mapped safetensors file: 8-byte little-endian header length N, N bytes of JSON header, data section.
/// Reading validates the header as strictly as the Rust library does ([Header]); writing ([#write]) produces the
/// bytes the Python `safetensors.save_file` produces. Sharded checkpoints are [ShardedSafeTensors].
/// Reference: huggingface/safetensors README "Format", `safetensors/src/tensor.rs`; specs.md §6.1.
public final class SafeTensors implements AutoCloseable {
    static final ValueLayout.OfFloat F32_LE = ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    static final ValueLayout.OfDouble F64_LE = ValueLayout.JAVA_DOUBLE_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    static final ValueLayout.OfShort I16_LE = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    static final ValueLayout.OfLong I64_LE = ValueLayout.JAVA_LONG_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    private final Path path;
    private final Arena arena;         // null when the caller owns the mapping's arena
    private final MemorySegment data;
    private final long dataStart;      // file offset of the data section: 8 + header length
    private final Map<String, TensorInfo> tensors;
    private final Map<String, String> metadata;

    private final FileChannel channel; // the open file for positional reads ([#readChunks]), until [#close]

    private SafeTensors(Path path, Arena arena, FileChannel channel, MemorySegment data, long dataStart, Header header) {
        this.path = path; this.arena = arena; this.channel = channel; this.data = data; this.dataStart = dataStart;
        this.tensors = header.tensors(); this.metadata = header.metadata();
    }

    /// Maps and validates `path`. Throws [FormatException] naming the file for a truncated file, a bad header or
    /// bad offsets, and `UnsupportedModelException` for a valid dtype peft4j cannot hold (F8_*, U16, …).
    public static SafeTensors open(Path path) { return open(path, Arena.ofShared(), true); }

    /// As [#open], mapping into the caller's `arena`: slices from [#bytes] stay valid as long as it does (an
    /// automatic arena: while any slice is reachable), and [#close] closes the file but leaves the mapping alone. For
    /// weights used in place (the reads of [#readFloats] still go through the file until [#close]).
    public static SafeTensors open(Path path, Arena arena) { return open(path, arena, false); }

    /// The file stays open until [#close]: [#readChunks] reads that file, the one the header describes, even if its
    /// path is replaced meanwhile (an atomic rewrite of the checkpoint), without faulting the mapping in page by page.
    private static SafeTensors open(Path path, Arena arena, boolean owned) {
        FileChannel ch = null;
        try {
            ch = FileChannel.open(path, StandardOpenOption.READ);
            long size = ch.size();
            if (size < 8) throw new FormatException(path + ": " + size + " bytes is too short for a safetensors file"
                    + " (it needs an 8-byte header length); the file is truncated or not safetensors");
            MemorySegment all = ch.map(FileChannel.MapMode.READ_ONLY, 0, size, arena);
            long n = all.get(I64_LE, 0);
            Header header = Header.parse(path, all, n, size);
            return new SafeTensors(path, owned ? arena : null, ch, all.asSlice(8 + n), 8 + n, header);
        } catch (IOException e) {
            closeQuietly(ch);
            if (owned) arena.close();
            throw new FormatException(path + ": cannot read safetensors file: " + e, e);
        } catch (RuntimeException e) {
            closeQuietly(ch);
            if (owned) arena.close();
            throw e;
        }
    }

    private static void closeQuietly(FileChannel ch) {
        if (ch != null) try { ch.close(); } catch (IOException ignored) { }
    }

    public Path path() { return path; }
    /// Tensors in header order (names → dtype, shape, byte range in the data section).
    public Map<String, TensorInfo> tensors() { return tensors; }
    /// The `__metadata__` string map (empty if absent).
    public Map<String, String> metadata() { return metadata; }
    public boolean contains(String name) { return tensors.containsKey(name); }

    public TensorInfo info(String name) {
        TensorInfo t = tensors.get(name);
        if (t == null) throw new FormatException(path + ": no tensor named '" + name + "' (the file has "
                + tensors.size() + " tensors); check the checkpoint matches the model");
        return t;
    }

    /// The raw little-endian bytes of a tensor of any dtype, a read-only view into the mapping (valid until [#close]).
    public MemorySegment bytes(String name) {
        TensorInfo t = info(name);
        return data.asSlice(t.begin(), t.end() - t.begin());
    }

    /// A float tensor (F32, BF16, F16, or F64 rounded to float) converted to a new array.
    public float[] readFloats(String name) {
        long n = info(name).numel();
        if (n > Integer.MAX_VALUE - 8) throw new FormatException(path + ": tensor '" + name + "' has " + n
                + " elements, too many for one float[]; read it in slices through bytes(name)");
        float[] out = new float[(int) n];
        readFloats(name, out, 0);
        return out;
    }

    /// Converts a float tensor (F32, BF16, F16, F64) into `dst[dstOff ..< dstOff + numel]`.
    public void readFloats(String name, float[] dst, int dstOff) {
        TensorInfo t = info(name);
        long numel = t.numel();
        if (dstOff < 0 || numel > dst.length - (long) dstOff)
            throw new IllegalArgumentException(path + ": tensor '" + name + "' has " + numel + " elements, which do not fit in "
                    + "an array of " + dst.length + " at offset " + dstOff);
        DType dt = t.dtype();
        switch (dt) {
            case F32, BF16, F16, F64 -> { }
            default -> throw new FormatException(path + ": tensor '" + name + "' has dtype " + dt
                    + ", expected a float type (F32, BF16, F16, F64); read integer tensors with bytes(name)");
        }
        readChunks(t, (chunk, at) -> {
            int es = dt.bytes, o = dstOff + (int) (at / es), n = (int) (chunk.byteSize() / es);
            switch (dt) {
                case F32 -> MemorySegment.copy(chunk, F32_LE, 0, dst, o, n);
                case BF16, F16 -> convertHalf(dt == DType.BF16, chunk, dst, o, n);
                default -> { for (int i = 0; i < n; i++) dst[o + i] = (float) chunk.getAtIndex(F64_LE, i); }
            }
        });
    }

    /// A BF16 or F16 tensor's 16-bit values as stored into `dst[0 ..< numel]`, read as [#readFloats] reads.
    public void readShorts(String name, short[] dst) {
        TensorInfo t = info(name);
        if (t.dtype() != DType.BF16 && t.dtype() != DType.F16)
            throw new FormatException(path + ": tensor '" + name + "' has dtype " + t.dtype() + ", but readShorts reads BF16 or F16");
        if (t.numel() > dst.length)
            throw new IllegalArgumentException(path + ": tensor '" + name + "' has " + t.numel() + " elements, which do not fit in "
                    + "an array of " + dst.length);
        readChunks(t, (chunk, at) -> MemorySegment.copy(chunk, I16_LE, 0, dst, (int) (at / 2), (int) (chunk.byteSize() / 2)));
    }

    /// Bytes read per positional read (a multiple of every dtype's size, so no element straddles two chunks).
    private static final int CHUNK = 1 << 22;
    /// Per thread, allocated once: the chunk buffer of [#readChunks] (native memory, outside the direct-buffer limit
    /// that the memory plan sets).
    private static final ThreadLocal<MemorySegment> CHUNK_BUFFER = ThreadLocal.withInitial(() -> Arena.ofAuto().allocate(CHUNK, 64));

    private interface ChunkSink { void accept(MemorySegment chunk, long at); }

    /// Tensor `t`'s bytes through positional reads of the file, chunk by chunk (`at`: the chunk's offset in the
    /// tensor), rather than through the mapping: the kernel copies from the page cache, where the mapping takes a page
    /// fault for every 4 KB page it touches (a 270 MB BF16 checkpoint into arrays: 115 ms against 220-240 ms, one Zen 5
    /// thread). The header was checked against the file size at [#open]; a file cut since then gets a [FormatException].
    private void readChunks(TensorInfo t, ChunkSink sink) {
        long len = t.end() - t.begin(), start = dataStart + t.begin();
        MemorySegment buf = CHUNK_BUFFER.get();
        try {
            for (long at = 0; at < len; at += CHUNK) {
                int k = (int) Math.min(CHUNK, len - at);
                java.nio.ByteBuffer bb = buf.asSlice(0, k).asByteBuffer();
                while (bb.hasRemaining())
                    if (channel.read(bb, start + at + bb.position()) < 0)
                        throw new FormatException(path + ": the file ends inside tensor '" + t.name() + "'; it was truncated after it was opened");
                sink.accept(buf.asSlice(0, k), at);
            }
        } catch (IOException e) {
            throw new FormatException(path + ": cannot read tensor '" + t.name() + "': " + e, e);
        }
    }

    /// Converts elements [from, from + count) of a float tensor into `dst[0 ..< count]` through positional file
    /// reads, not the mapping: streaming a checkpoint larger than memory this way leaves none of its pages resident
    /// in this process (they stay in the page cache only).
    public void readFloatsUnmapped(String name, long from, float[] dst, int count) {
        TensorInfo t = info(name);
        if (from < 0 || count < 0 || from + count > t.numel() || count > dst.length)
            throw new IndexOutOfBoundsException(path + ": elements [" + from + ", " + (from + count) + ") of tensor '" + name + "' ("
                    + t.numel() + " elements) into an array of " + dst.length);
        int es = t.dtype().bytes;
        java.nio.ByteBuffer buf = java.nio.ByteBuffer.allocate(Math.multiplyExact(count, es));
        try (FileChannel ch = FileChannel.open(path, StandardOpenOption.READ)) {
            long pos = dataStart + t.begin() + from * es;
            while (buf.hasRemaining())
                if (ch.read(buf, pos + buf.position()) < 0) throw new FormatException(path + ": truncated inside tensor '" + name + "'");
        } catch (IOException e) {
            throw new FormatException(path + ": cannot read tensor '" + name + "': " + e, e);
        }
        convert(path, name, t.dtype(), MemorySegment.ofArray(buf.array()), dst, 0, count);
    }

    static void convert(Path path, String name, DType dtype, MemorySegment s, float[] dst, int off, int n) {
        switch (dtype) {
            case F32 -> MemorySegment.copy(s, F32_LE, 0, dst, off, n);
            case BF16, F16 -> convertHalf(dtype == DType.BF16, s, dst, off, n);
            case F64 -> { for (int i = 0; i < n; i++) dst[off + i] = (float) s.getAtIndex(F64_LE, i); }
            default -> throw new FormatException(path + ": tensor '" + name + "' has dtype " + dtype
                    + ", expected a float type (F32, BF16, F16, F64); read integer tensors with bytes(name)");
        }
    }

    /// 16-bit floats in blocks: each block copied out of the mapping in bulk, then converted in a plain array loop.
    /// An element-wise read of the mapping runs through the memory-access machinery, which is slow until the JIT has
    /// compiled it: converting SmolLM2's 28 M-value BF16 embedding that way took a good part of the command's start.
    private static void convertHalf(boolean bf16, MemorySegment s, float[] dst, int off, int n) {
        short[] block = new short[Math.min(n, 1 << 14)];
        for (int from = 0; from < n; from += block.length) {
            int len = Math.min(block.length, n - from);
            MemorySegment.copy(s, I16_LE, 2L * from, block, 0, len);
            if (bf16) for (int i = 0; i < len; i++) dst[off + from + i] = DType.bf16ToFloat(block[i]);
            else for (int i = 0; i < len; i++) dst[off + from + i] = Float.float16ToFloat(block[i]);
        }
    }

    @Override
    public void close() {
        closeQuietly(channel);
        if (arena != null) arena.close();
    }

    /// One tensor to write: `bytes` holds `numel · dtype.bytes` little-endian bytes, row-major.
    public record Entry(String name, DType dtype, long[] shape, MemorySegment bytes) {
        public Entry {
            Objects.requireNonNull(name, "name");
            Objects.requireNonNull(dtype, "dtype");
            Objects.requireNonNull(bytes, "bytes");
            if (name.isEmpty() || name.equals("__metadata__"))
                throw new IllegalArgumentException("tensor name '" + name + "' is reserved or empty; choose another name");
            shape = shape.clone();
            long numel = TensorInfo.numel(shape, name);
            if (bytes.byteSize() != numel * dtype.bytes)
                throw new IllegalArgumentException("tensor '" + name + "': " + bytes.byteSize() + " bytes given, but dtype "
                        + dtype + " and shape " + Arrays.toString(shape) + " need " + numel * dtype.bytes);
        }

        @Override public long[] shape() { return shape.clone(); }

        /// Floats stored as `target` (F32, BF16 or F16; round to nearest even, as torch's `.to(dtype)`).
        public static Entry ofFloats(String name, long[] shape, float[] data, DType target) {
            int n = data.length;
            MemorySegment s = MemorySegment.ofArray(new byte[Math.multiplyExact(n, target.bytes)]);
            switch (target) {
                case F32 -> MemorySegment.copy(data, 0, s, F32_LE, 0, n);
                case BF16 -> { for (int i = 0; i < n; i++) s.setAtIndex(I16_LE, i, DType.floatToBf16(data[i])); }
                case F16 -> { for (int i = 0; i < n; i++) s.setAtIndex(I16_LE, i, Float.floatToFloat16(data[i])); }
                default -> throw new IllegalArgumentException("tensor '" + name + "': cannot store floats as " + target
                        + "; use F32, BF16 or F16");
            }
            return new Entry(name, target, shape, s);
        }

        /// Raw little-endian bytes of any dtype (U8 packed 4-bit weights, I64 ids, BOOL masks, …).
        public static Entry ofBytes(String name, DType dtype, long[] shape, byte[] data) {
            return new Entry(name, dtype, shape, MemorySegment.ofArray(data));
        }
    }

    /// Writes `entries` as one safetensors file, atomically (a temp file in the same directory, fsync, rename).
    /// Layout as the Python `safetensors.save_file` (Rust `prepare`): tensors sorted by dtype in descending order of
    /// safetensors' dtype enum (I64, F64, F32, I32, BF16, F16, I16, I8, U8, BOOL for the dtypes peft4j has), then by
    /// name in UTF-8 byte order, packed without gaps; compact JSON header with `__metadata__` first (omitted when
    /// `metadata` is null; its keys sorted, since Rust's HashMap order is arbitrary), tensors in offset order with keys
    /// dtype, shape, data_offsets; header padded with spaces to a multiple of 8.
    public static void write(Path file, List<Entry> entries, Map<String, String> metadata) {
        Writer.write(file, entries, metadata);
    }
}
