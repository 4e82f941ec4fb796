package org.peft4j.formats.gguf;

import org.peft4j.core.DType;
import org.peft4j.core.Peft4jException.FormatException;

import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.Map;

/// A memory-mapped GGUF file (versions 2 and 3, little-endian): metadata key/values, the tensor-info table and the
/// data section. Opening validates everything ggml's `gguf_init_from_file` does before any tensor is touched:
/// magic and version, counts and string lengths against the bytes left, known value and tensor types, unique
/// non-empty keys and names (< 64 bytes), 1..4 dimensions, ne[0] a multiple of the block size, a power-of-two
/// `general.alignment`, and offsets equal to the running sum of the aligned tensor sizes with the last tensor
/// inside the file. Errors are [FormatException]s naming the file, the byte position and what to do.
/// Reference: ggml `docs/gguf.md`, `src/gguf.cpp` (reader l.460-800); specs.md §4.1.
public final class GgufFile implements AutoCloseable {
    public static final int MAGIC = 0x46554747;   // "GGUF" little-endian
    public static final int DEFAULT_ALIGNMENT = 32;
    public static final int MAX_NAME = 64;        // GGML_MAX_NAME, including the terminating NUL
    static final ValueLayout.OfInt I32 = ValueLayout.JAVA_INT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    static final ValueLayout.OfLong I64 = ValueLayout.JAVA_LONG_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    static final ValueLayout.OfShort I16 = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    static final ValueLayout.OfFloat F32 = ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    static final ValueLayout.OfDouble F64 = ValueLayout.JAVA_DOUBLE_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    private final Path path;
    private final Arena arena;
    private final int version;
    private final int alignment;
    private final Map<String, GgufValue> metadata;
    private final Map<String, GgufTensor> tensors;
    private final MemorySegment data;

    private GgufFile(Path path, Arena arena, int version, int alignment, Map<String, GgufValue> metadata,
                     Map<String, GgufTensor> tensors, MemorySegment data) {
        this.path = path; this.arena = arena; this.version = version; this.alignment = alignment;
        this.metadata = Collections.unmodifiableMap(metadata); this.tensors = Collections.unmodifiableMap(tensors); this.data = data;
    }

    /// Maps and validates `path`.
    public static GgufFile open(Path path) {
        Arena arena = Arena.ofShared();
        try (FileChannel ch = FileChannel.open(path, StandardOpenOption.READ)) {
            MemorySegment all = ch.map(FileChannel.MapMode.READ_ONLY, 0, ch.size(), arena);
            return parse(path, arena, all);
        } catch (IOException e) {
            arena.close();
            throw new FormatException(path + ": cannot read GGUF file: " + e, e);
        } catch (RuntimeException e) {
            arena.close();
            throw e;
        }
    }

    private static GgufFile parse(Path path, Arena arena, MemorySegment all) {
        Cursor c = new Cursor(path, all);
        if (all.byteSize() < 24) throw c.fail(0, "a GGUF file starts with a 24-byte header, but the file has only "
                + all.byteSize() + " bytes; it is truncated or not GGUF");
        int magic = c.u32("magic");
        if (magic != MAGIC) throw c.fail(0, String.format("magic is 0x%08x, expected 0x%08x (\"GGUF\"); this is not a GGUF file", magic, MAGIC));
        int version = c.u32("version");
        if ((version & 0xFFFF) == 0) throw c.fail(4, "version 0x" + Integer.toHexString(version)
                + " looks byte-swapped: the file was written on a big-endian machine; only little-endian GGUF is supported");
        if (version < 2 || version > 3) throw c.fail(4, "GGUF version " + Integer.toUnsignedString(version)
                + " is not supported (versions 2 and 3 are); re-convert the model with a current llama.cpp");
        long nTensors = c.u64("tensor count"), nKv = c.u64("metadata count");
        // Every KV needs at least a key length, a type and a 1-byte value; every tensor info at least 8+4+8+4+8 bytes.
        if (nKv < 0 || nKv > c.left() / 13) throw c.fail(16, "the header claims " + Long.toUnsignedString(nKv)
                + " metadata entries, more than the " + c.left() + " bytes left can hold; the file is truncated or the count is corrupt");
        if (nTensors < 0 || nTensors > c.left() / 32) throw c.fail(8, "the header claims " + Long.toUnsignedString(nTensors)
                + " tensors, more than the " + c.left() + " bytes left can hold; the file is truncated or the count is corrupt");

        Map<String, GgufValue> kv = new LinkedHashMap<>();
        for (long i = 0; i < nKv; i++) {
            long at = c.pos;
            String key = c.string("key of metadata entry " + i);
            if (key.isEmpty()) throw c.fail(at, "metadata entry " + i + " has an empty key");
            int typeId = c.u32("value type of '" + key + "'");
            GgufValueType type = GgufValueType.of(typeId);
            if (type == null) throw c.fail(c.pos - 4, "metadata '" + key + "' has unknown value type " + Integer.toUnsignedString(typeId)
                    + " (known: 0..12); the file is corrupt or from a newer GGUF version");
            GgufValue v = c.value(key, type);
            if (kv.put(key, v) != null) throw c.fail(at, "metadata key '" + key + "' appears twice; keys must be unique");
        }
        int alignment = DEFAULT_ALIGNMENT;
        GgufValue a = kv.get("general.alignment");
        if (a != null) {
            if (a.type() != GgufValueType.UINT32) throw c.fail(0, "general.alignment is " + a.describe() + ", expected UINT32");
            long al = a.asLong("general.alignment");
            if (al == 0 || Long.bitCount(al) != 1) throw c.fail(0, "general.alignment = " + al + " is not a power of two");
            alignment = (int) al;
        }

        Map<String, GgufTensor> infos = new LinkedHashMap<>();
        long expected = 0;
        for (long i = 0; i < nTensors; i++) {
            long at = c.pos;
            String name = c.string("name of tensor " + i);
            if (name.getBytes(StandardCharsets.UTF_8).length >= MAX_NAME) throw c.fail(at, "tensor name '" + name
                    + "' is " + name.getBytes(StandardCharsets.UTF_8).length + " bytes; ggml allows at most " + (MAX_NAME - 1));
            int nDims = c.u32("dimension count of '" + name + "'");
            if (nDims < 1 || nDims > 4) throw c.fail(c.pos - 4, "tensor '" + name + "' has " + Integer.toUnsignedString(nDims)
                    + " dimensions; GGUF allows 1 to 4");
            long[] ne = new long[nDims];
            long numel = 1;
            for (int d = 0; d < nDims; d++) {
                ne[d] = c.u64("dimension " + d + " of '" + name + "'");
                if (ne[d] < 0) throw c.fail(c.pos - 8, "tensor '" + name + "' has dimension " + d + " = "
                        + Long.toUnsignedString(ne[d]) + ", which is negative as ggml's int64; the file is corrupt");
                numel = multiply(c, numel, ne[d], name);
            }
            int typeId = c.u32("type of '" + name + "'");
            GgmlType type = GgmlType.of(typeId);
            if (type == null) throw c.fail(c.pos - 4, "tensor '" + name + "' has unknown ggml type " + Integer.toUnsignedString(typeId)
                    + "; the file is corrupt or needs a newer reader");
            if (ne[0] % type.blockSize != 0) throw c.fail(at, "tensor '" + name + "' of type " + type + " has ne[0] = " + ne[0]
                    + ", not a multiple of the block size " + type.blockSize);
            long offset = c.u64("data offset of '" + name + "'");
            if (offset != expected) throw c.fail(c.pos - 8, "tensor '" + name + "' has data offset " + Long.toUnsignedString(offset)
                    + ", expected " + expected + " (the previous tensors' sizes, each padded to the alignment " + alignment
                    + "); the data is misaligned or the table is corrupt");
            GgufTensor t = new GgufTensor(name, type, ne, offset);
            if (infos.put(name, t) != null) throw c.fail(at, "tensor name '" + name + "' appears twice; names must be unique");
            long size;
            try {
                size = type.bytes(numel);
            } catch (ArithmeticException e) {
                throw c.fail(at, "tensor '" + name + "' " + java.util.Arrays.toString(ne) + " has more bytes than fit in 63 bits; the file is corrupt");
            }
            if (size > all.byteSize()) throw c.fail(at, "tensor '" + name + "' " + type + " " + java.util.Arrays.toString(ne)
                    + " needs " + size + " bytes, more than the whole file (" + all.byteSize() + "); the file is truncated or a dimension is corrupt");
            expected = alignUp(c, expected + size, alignment);
        }
        long dataStart = alignUp(c, c.pos, alignment);
        if (nTensors > 0) {
            GgufTensor last = infos.values().stream().reduce((x, y) -> y).orElseThrow();
            long end = dataStart + last.offset() + last.bytes();
            if (end > all.byteSize()) throw c.fail(all.byteSize(), "the data of tensor '" + last.name() + "' ends at byte " + end
                    + ", but the file has only " + all.byteSize() + " bytes; the file is truncated (an interrupted download?)");
        }
        MemorySegment data = all.asSlice(Math.min(dataStart, all.byteSize()));
        return new GgufFile(path, arena, version, alignment, kv, infos, data);
    }

    private static long multiply(Cursor c, long a, long b, String name) {
        try {
            return Math.multiplyExact(a, b);
        } catch (ArithmeticException e) {
            throw c.fail(c.pos, "tensor '" + name + "' has more elements than fit in 63 bits; the file is corrupt");
        }
    }

    static long alignUp(Cursor c, long v, long alignment) {
        long r = (v + alignment - 1) / alignment * alignment;
        if (r < v) throw c.fail(c.pos, "sizes overflow; the file is corrupt");
        return r;
    }

    public Path path() { return path; }
    public int version() { return version; }
    public int alignment() { return alignment; }
    /// Metadata in file order.
    public Map<String, GgufValue> metadata() { return metadata; }
    /// Tensor infos in file order.
    public Map<String, GgufTensor> tensors() { return tensors; }

    public GgufValue get(String key) { return metadata.get(key); }

    /// The value of a key that must be present.
    public GgufValue require(String key) {
        GgufValue v = metadata.get(key);
        if (v == null) throw new FormatException(path + ": GGUF metadata key '" + key + "' is missing; the file was not"
                + " converted for this use (re-convert it with llama.cpp's convert_hf_to_gguf.py or `peft4j export --export_format gguf`)");
        return v;
    }

    public GgufTensor info(String name) {
        GgufTensor t = tensors.get(name);
        if (t == null) throw new FormatException(path + ": no tensor named '" + name + "' (the file has " + tensors.size()
                + " tensors); check the file holds the model you meant");
        return t;
    }

    /// The raw bytes of a tensor as stored, a read-only view valid until [#close].
    public MemorySegment bytes(String name) {
        GgufTensor t = info(name);
        return data.asSlice(t.offset(), t.bytes());
    }

    /// An F32, F16, BF16 or F64 tensor as a new float array (quantized types are dequantized by `org.peft4j.quant`).
    public float[] readFloats(String name) {
        GgufTensor t = info(name);
        long n = t.numel();
        if (n > Integer.MAX_VALUE - 8) throw new FormatException(path + ": tensor '" + name + "' has " + n
                + " elements, too many for one float[]");
        MemorySegment s = bytes(name);
        float[] out = new float[(int) n];
        switch (t.type()) {
            case F32 -> MemorySegment.copy(s, F32, 0, out, 0, out.length);
            case F16 -> { for (int i = 0; i < out.length; i++) out[i] = Float.float16ToFloat(s.getAtIndex(I16, i)); }
            case BF16 -> { for (int i = 0; i < out.length; i++) out[i] = DType.bf16ToFloat(s.getAtIndex(I16, i)); }
            case F64 -> { for (int i = 0; i < out.length; i++) out[i] = (float) s.getAtIndex(F64, i); }
            default -> throw new FormatException(path + ": tensor '" + name + "' is " + t.type() + ", not a float type;"
                    + " dequantize its blocks instead");
        }
        return out;
    }

    @Override public void close() { arena.close(); }

    /// Bounds-checked little-endian reading of the header.
    static final class Cursor {
        final Path path;
        final MemorySegment s;
        long pos;

        Cursor(Path path, MemorySegment s) { this.path = path; this.s = s; }

        long left() { return s.byteSize() - pos; }

        FormatException fail(long at, String msg) { return new FormatException(path + ": GGUF byte " + at + ": " + msg); }

        private void need(long n, String what) {
            if (n < 0 || n > left()) throw fail(pos, what + " needs " + Long.toUnsignedString(n) + " bytes, but only " + left()
                    + " are left; the file is truncated or a length is corrupt");
        }

        int u32(String what) { need(4, what); int v = s.get(I32, pos); pos += 4; return v; }
        long u64(String what) { need(8, what); long v = s.get(I64, pos); pos += 8; return v; }

        String string(String what) {
            long n = u64("length of " + what);
            if (n < 0 || n > left()) throw fail(pos - 8, what + " claims " + Long.toUnsignedString(n)
                    + " bytes, but only " + left() + " are left; the string length is corrupt");
            if (n > Integer.MAX_VALUE - 8) throw fail(pos - 8, what + " is " + n + " bytes, too long for a string");
            byte[] b = s.asSlice(pos, n).toArray(ValueLayout.JAVA_BYTE);
            pos += n;
            try {
                return StandardCharsets.UTF_8.newDecoder().onMalformedInput(CodingErrorAction.REPORT)
                        .onUnmappableCharacter(CodingErrorAction.REPORT).decode(java.nio.ByteBuffer.wrap(b)).toString();
            } catch (CharacterCodingException e) {
                throw fail(pos - n, what + " is not valid UTF-8");
            }
        }

        GgufValue value(String key, GgufValueType type) {
            String what = "value of '" + key + "'";
            return switch (type) {
                case STRING -> GgufValue.string(string(what));
                case ARRAY -> array(key);
                default -> new GgufValue(type, null, scalar(type, what));
            };
        }

        private Object scalar(GgufValueType type, String what) {
            need(type.size, what);
            long p = pos;
            pos += type.size;
            return switch (type) {
                case UINT8 -> (long) (s.get(ValueLayout.JAVA_BYTE, p) & 0xFF);
                case INT8 -> (long) s.get(ValueLayout.JAVA_BYTE, p);
                case UINT16 -> (long) (s.get(I16, p) & 0xFFFF);
                case INT16 -> (long) s.get(I16, p);
                case UINT32 -> s.get(I32, p) & 0xFFFF_FFFFL;
                case INT32 -> (long) s.get(I32, p);
                case UINT64, INT64 -> s.get(I64, p);
                case FLOAT32 -> s.get(F32, p);
                case FLOAT64 -> s.get(F64, p);
                case BOOL -> {
                    byte b = s.get(ValueLayout.JAVA_BYTE, p);
                    if (b != 0 && b != 1) throw fail(p, what + " is a BOOL byte " + b + ", expected 0 or 1");
                    yield b == 1;
                }
                default -> throw new IllegalStateException(type.toString());
            };
        }

        private GgufValue array(String key) {
            long at = pos;
            int et = u32("element type of '" + key + "'");
            GgufValueType type = GgufValueType.of(et);
            if (type == null) throw fail(at, "array '" + key + "' has unknown element type " + Integer.toUnsignedString(et));
            if (type == GgufValueType.ARRAY) throw fail(at, "array '" + key + "' holds arrays; GGUF readers do not accept nested arrays");
            long n = u64("length of array '" + key + "'");
            long minEach = type == GgufValueType.STRING ? 8 : type.size;
            if (n < 0 || n > left() / minEach || n > Integer.MAX_VALUE - 8) throw fail(pos - 8, "array '" + key + "' claims "
                    + Long.toUnsignedString(n) + " " + type + " elements, more than the " + left() + " bytes left can hold; the count is corrupt");
            int len = (int) n;
            String what = "element of '" + key + "'";
            Object arr = switch (type) {
                case STRING -> { String[] a = new String[len]; for (int i = 0; i < len; i++) a[i] = string(what); yield a; }
                case FLOAT32 -> { float[] a = new float[len]; MemorySegment.copy(s, F32, pos, a, 0, len); pos += 4L * len; yield a; }
                case FLOAT64 -> { double[] a = new double[len]; MemorySegment.copy(s, F64, pos, a, 0, len); pos += 8L * len; yield a; }
                case BOOL -> { boolean[] a = new boolean[len]; for (int i = 0; i < len; i++) a[i] = (Boolean) scalar(type, what); yield a; }
                default -> { long[] a = new long[len]; for (int i = 0; i < len; i++) a[i] = (Long) scalar(type, what); yield a; }
            };
            return new GgufValue(GgufValueType.ARRAY, type, arr);
        }
    }
}
