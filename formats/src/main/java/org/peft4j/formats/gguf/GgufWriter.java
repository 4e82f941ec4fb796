package org.peft4j.formats.gguf;

import org.peft4j.formats.safetensors.Writer;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;

/// Builds and writes a GGUF v3 file the way gguf-py's `GGUFWriter` lays it out: header, metadata in insertion
/// order, tensor infos in insertion order with offsets = running sum of the sizes padded to the alignment
/// (`general.alignment` if set, else 32), zero padding up to the data section, then each tensor's bytes padded with
/// zeros to the alignment. The file is replaced atomically. Reference: gguf-py `gguf_writer.py`, ggml `gguf.cpp`
/// (writer l.1500-1640); specs.md §4.1.
public final class GgufWriter {
    private final Map<String, GgufValue> metadata = new LinkedHashMap<>();
    private final Map<String, Entry> tensors = new LinkedHashMap<>();

    /// One tensor: its ggml type, `ne` (innermost first) and exactly `type.bytes(numel)` bytes.
    public record Entry(String name, GgmlType type, long[] ne, MemorySegment bytes) {
        public Entry {
            Objects.requireNonNull(name); Objects.requireNonNull(type); Objects.requireNonNull(bytes);
            if (name.isEmpty() || name.getBytes(StandardCharsets.UTF_8).length >= GgufFile.MAX_NAME)
                throw new IllegalArgumentException("tensor name '" + name + "' must be 1 to " + (GgufFile.MAX_NAME - 1) + " bytes");
            if (ne.length < 1 || ne.length > 4) throw new IllegalArgumentException("tensor '" + name + "' has " + ne.length + " dimensions; GGUF allows 1 to 4");
            ne = ne.clone();
            long n = 1;
            for (long d : ne) {
                if (d < 0) throw new IllegalArgumentException("tensor '" + name + "' has a negative dimension " + Arrays.toString(ne));
                n = Math.multiplyExact(n, d);
            }
            if (ne[0] % type.blockSize != 0) throw new IllegalArgumentException("tensor '" + name + "': ne[0] = " + ne[0]
                    + " is not a multiple of " + type + "'s block size " + type.blockSize);
            if (bytes.byteSize() != type.bytes(n)) throw new IllegalArgumentException("tensor '" + name + "': " + bytes.byteSize()
                    + " bytes given, " + type + " " + Arrays.toString(ne) + " needs " + type.bytes(n));
        }
    }

    /// Sets (or replaces) a metadata value; keys are written in first-insertion order.
    public GgufWriter put(String key, GgufValue value) {
        if (key == null || key.isEmpty()) throw new IllegalArgumentException("GGUF metadata keys must be non-empty");
        Objects.requireNonNull(value, "value of " + key);
        if (key.equals("general.alignment")) {
            if (value.type() != GgufValueType.UINT32 || Long.bitCount(value.asLong(key)) != 1)
                throw new IllegalArgumentException("general.alignment must be a UINT32 power of two, got " + value);
        }
        metadata.put(key, value);
        return this;
    }

    /// The value set for `key`, or null.
    public GgufValue get(String key) { return metadata.get(key); }

    /// A set STRING value, or null when unset or not a string.
    public String metadataValue(String key) {
        GgufValue v = metadata.get(key);
        return v != null && v.type() == GgufValueType.STRING ? (String) v.value() : null;
    }

    /// Adds a tensor; names must be unique.
    public GgufWriter add(Entry e) {
        if (tensors.putIfAbsent(e.name(), e) != null) throw new IllegalArgumentException("tensor '" + e.name() + "' was added twice");
        return this;
    }

    public GgufWriter add(String name, GgmlType type, long[] ne, MemorySegment bytes) { return add(new Entry(name, type, ne, bytes)); }

    /// A float tensor of torch shape `shape` (ne = shape reversed) stored as F32, F16 or BF16.
    public GgufWriter addFloats(String name, long[] torchShape, float[] data, GgmlType type) {
        MemorySegment s = MemorySegment.ofArray(new byte[Math.multiplyExact(data.length, type == GgmlType.F32 ? 4 : 2)]);
        switch (type) {
            case F32 -> MemorySegment.copy(data, 0, s, GgufFile.F32, 0, data.length);
            case F16 -> { for (int i = 0; i < data.length; i++) s.setAtIndex(GgufFile.I16, i, Float.floatToFloat16(data[i])); }
            case BF16 -> { for (int i = 0; i < data.length; i++) s.setAtIndex(GgufFile.I16, i, org.peft4j.core.DType.floatToBf16(data[i])); }
            default -> throw new IllegalArgumentException("tensor '" + name + "': addFloats stores F32, F16 or BF16, not " + type
                    + "; quantize the blocks and use add()");
        }
        return add(name, type, reverse(torchShape), s);
    }

    /// `shape` reversed: torch (out, in) → ggml ne [in, out]; trailing 1s of ne are kept as given.
    public static long[] reverse(long[] shape) {
        long[] r = new long[shape.length];
        for (int i = 0; i < shape.length; i++) r[i] = shape[shape.length - 1 - i];
        return r;
    }

    public int alignment() {
        GgufValue a = metadata.get("general.alignment");
        return a == null ? GgufFile.DEFAULT_ALIGNMENT : (int) a.asLong("general.alignment");
    }

    /// Writes the file (atomically).
    public void write(Path file) {
        byte[] header = header();
        long align = alignment();
        Writer.atomically(file, ch -> {
            write(ch, ByteBuffer.wrap(header));
            long pos = header.length;
            pos = pad(ch, pos, align);
            for (Entry e : tensors.values()) {
                write(ch, e.bytes().asByteBuffer());
                pos = pad(ch, pos + e.bytes().byteSize(), align);
            }
        });
    }

    private static void write(FileChannel ch, ByteBuffer b) throws IOException {
        while (b.hasRemaining()) ch.write(b);
    }

    private static long pad(FileChannel ch, long pos, long align) throws IOException {
        long to = (pos + align - 1) / align * align;
        if (to > pos) write(ch, ByteBuffer.allocate((int) (to - pos)));
        return to;
    }

    /// Magic, version, counts, metadata and tensor infos (everything before the alignment padding).
    byte[] header() {
        Out o = new Out();
        o.u32(GgufFile.MAGIC); o.u32(3); o.u64(tensors.size()); o.u64(metadata.size());
        for (var kv : metadata.entrySet()) {
            o.string(kv.getKey());
            GgufValue v = kv.getValue();
            o.u32(v.type().id);
            if (v.type() == GgufValueType.ARRAY) {
                o.u32(v.elementType().id);
                o.u64(v.length());
                switch (v.value()) {
                    case String[] a -> { for (String s : a) o.string(s); }
                    case float[] a -> { for (float x : a) o.u32(Float.floatToRawIntBits(x)); }
                    case double[] a -> { for (double x : a) o.u64(Double.doubleToRawLongBits(x)); }
                    case boolean[] a -> { for (boolean x : a) o.scalar(GgufValueType.BOOL, x); }
                    case long[] a -> { for (long x : a) o.scalar(v.elementType(), x); }
                    default -> throw new IllegalStateException();
                }
            } else {
                o.scalar(v.type(), v.value());
            }
        }
        long offset = 0, align = alignment();
        for (Entry e : tensors.values()) {
            o.string(e.name());
            o.u32(e.ne().length);
            for (long d : e.ne()) o.u64(d);
            o.u32(e.type().id);
            o.u64(offset);
            offset += (e.bytes().byteSize() + align - 1) / align * align;
        }
        return o.toByteArray();
    }

    private static final class Out extends ByteArrayOutputStream {
        private final ByteBuffer b = ByteBuffer.allocate(8).order(ByteOrder.LITTLE_ENDIAN);

        void u32(int v) { b.clear(); b.putInt(v); write(b.array(), 0, 4); }
        void u64(long v) { b.clear(); b.putLong(v); write(b.array(), 0, 8); }
        void string(String s) { byte[] u = s.getBytes(StandardCharsets.UTF_8); u64(u.length); write(u, 0, u.length); }

        void scalar(GgufValueType t, Object v) {
            b.clear();
            switch (t) {
                case UINT8, INT8 -> b.put((byte) (long) (Long) v);
                case UINT16, INT16 -> b.putShort((short) (long) (Long) v);
                case UINT32, INT32 -> b.putInt((int) (long) (Long) v);
                case UINT64, INT64 -> b.putLong((Long) v);
                case FLOAT32 -> b.putFloat((Float) v);
                case FLOAT64 -> b.putDouble((Double) v);
                case BOOL -> b.put((byte) ((Boolean) v ? 1 : 0));
                case STRING -> { string((String) v); return; }
                case ARRAY -> throw new IllegalStateException();
            }
            write(b.array(), 0, b.position());
        }
    }

    /// Names of the tensors added so far, in order.
    public List<String> tensorNames() { return new ArrayList<>(tensors.keySet()); }
}
