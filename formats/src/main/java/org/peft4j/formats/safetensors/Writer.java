package org.peft4j.formats.safetensors;

import org.peft4j.core.DType;
import org.peft4j.core.Peft4jException.FormatException;
import org.peft4j.formats.json.PyJson;
import org.peft4j.formats.safetensors.SafeTensors.Entry;

import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Comparator;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;
import java.util.concurrent.ThreadLocalRandom;

/// Writes safetensors files byte-for-byte as the Rust `serialize`/`prepare` used by Python's `save_file` does
/// (specs.md §6.1), and replaces files atomically.
public final class Writer {
    private Writer() {}

    /// Rank of each dtype in safetensors' `Dtype` enum (declaration order), restricted to the dtypes [DType] has.
    /// `BOOL < F4 < F6_* < U8 < I8 < F8_* < I16 < U16 < F16 < BF16 < I32 < U32 < F32 < C64 < F64 < I64 < U64`.
    static int rank(DType d) {
        return switch (d) {
            case BOOL -> 0; case U8 -> 4; case I8 -> 5; case I16 -> 11; case F16 -> 13; case BF16 -> 14;
            case I32 -> 15; case F32 -> 17; case F64 -> 19; case I64 -> 20;
        };
    }

    /// A tensor's place in a file before its bytes exist: name, dtype, shape and byte size.
    record Layout(String name, DType dtype, long[] shape, long size) {
        static Layout of(Entry e) { return new Layout(e.name(), e.dtype(), e.shape(), e.bytes().byteSize()); }
    }

    /// The order Rust's `prepare` lays tensors out in: dtype descending, then name by UTF-8 bytes.
    static final Comparator<Layout> ORDER = Comparator.<Layout>comparingInt(e -> -rank(e.dtype()))
            .thenComparing((a, b) -> Arrays.compareUnsigned(a.name().getBytes(StandardCharsets.UTF_8), b.name().getBytes(StandardCharsets.UTF_8)));

    static void write(Path file, List<Entry> entries, Map<String, String> metadata) {
        Set<String> seen = new HashSet<>();
        for (Entry e : entries) if (!seen.add(e.name()))
            throw new IllegalArgumentException(file + ": tensor '" + e.name() + "' is given twice; tensor names must be unique");
        List<Entry> sorted = new ArrayList<>(entries);
        sorted.sort(Comparator.comparing(Layout::of, ORDER));
        byte[] header = header(sorted.stream().map(Layout::of).toList(), metadata);
        atomically(file, ch -> {
            ByteBuffer buf = ByteBuffer.allocateDirect(1 << 22).order(ByteOrder.LITTLE_ENDIAN);
            MemorySegment window = MemorySegment.ofBuffer(buf); // the whole buffer: taken while position is 0
            buf.putLong(header.length);
            for (int i = 0; i < header.length; ) {
                int k = Math.min(buf.remaining(), header.length - i);
                buf.put(header, i, k);
                i += k;
                if (!buf.hasRemaining()) flush(ch, buf);
            }
            for (Entry e : sorted) {
                MemorySegment src = e.bytes();
                for (long off = 0, size = src.byteSize(); off < size; ) {
                    int k = (int) Math.min(buf.remaining(), size - off);
                    MemorySegment.copy(src, off, window, buf.position(), k);
                    buf.position(buf.position() + k);
                    off += k;
                    if (!buf.hasRemaining()) flush(ch, buf);
                }
            }
            flush(ch, buf);
        });
    }

    /// Compact JSON, `__metadata__` first, tensors in offset order, padded with spaces to a multiple of 8.
    static byte[] header(List<Layout> sorted, Map<String, String> metadata) {
        StringBuilder j = new StringBuilder("{");
        if (metadata != null) {
            j.append("\"__metadata__\":{");
            String sep = "";
            for (var m : new TreeMap<>(metadata).entrySet()) {
                j.append(sep); sep = ",";
                j.append(jsonString(m.getKey())).append(':').append(jsonString(m.getValue()));
            }
            j.append('}');
            if (!sorted.isEmpty()) j.append(',');
        }
        long offset = 0;
        String sep = "";
        for (Layout e : sorted) {
            long end = offset + e.size();
            j.append(sep); sep = ",";
            j.append(jsonString(e.name())).append(":{\"dtype\":\"").append(e.dtype().name()).append("\",\"shape\":[");
            long[] shape = e.shape();
            for (int i = 0; i < shape.length; i++) j.append(i == 0 ? "" : ",").append(shape[i]);
            j.append("],\"data_offsets\":[").append(offset).append(',').append(end).append("]}");
            offset = end;
        }
        j.append('}');
        byte[] utf8 = j.toString().getBytes(StandardCharsets.UTF_8);
        int padded = (utf8.length + 7) / 8 * 8;
        byte[] out = Arrays.copyOf(utf8, padded);
        Arrays.fill(out, utf8.length, padded, (byte) ' ');
        return out;
    }

    /// serde_json escapes a string as Python's `json.dumps(ensure_ascii=False)` does: `"`, `\`, controls (short forms
    /// `\b \f \n \r \t`, else a six-character `u00xx` escape, lower-case hex); everything else, non-ASCII included, verbatim.
    private static String jsonString(String s) { return PyJson.dumps(s, false); }

    public interface Body { void write(FileChannel ch) throws IOException; }

    /// One safetensors file whose tensors arrive one at a time, in any order, each written at its place: the bytes
    /// are those [#write] gives for the same tensors, but only one tensor need exist at a time. Written into a temp
    /// file beside `file`; [#commit] renames it over `file`, [#abort] removes it.
    static final class Positional {
        private final Path file, tmp;
        private final FileChannel ch;
        private final Map<String, long[]> place = new java.util.HashMap<>();   // name → {offset in file, size}
        private final Set<String> written = new HashSet<>();

        Positional(Path file, List<Layout> tensors, Map<String, String> metadata) {
            this.file = file.toAbsolutePath();
            Path dir = this.file.getParent();
            if (dir == null || !Files.isDirectory(dir))
                throw new FormatException(file + ": cannot write, directory " + dir + " does not exist; create it first");
            List<Layout> sorted = new ArrayList<>(tensors);
            sorted.sort(ORDER);
            byte[] header = header(sorted, metadata);
            long offset = 8 + header.length;
            for (Layout l : sorted) { place.put(l.name(), new long[]{offset, l.size()}); offset += l.size(); }
            tmp = dir.resolve("." + this.file.getFileName() + "." + Long.toHexString(ThreadLocalRandom.current().nextLong()) + ".tmp");
            try {
                ch = FileChannel.open(tmp, StandardOpenOption.CREATE_NEW, StandardOpenOption.WRITE);
                ByteBuffer b = ByteBuffer.allocate(8 + header.length).order(ByteOrder.LITTLE_ENDIAN);
                b.putLong(header.length).put(header).flip();
                while (b.hasRemaining()) ch.write(b, b.position());
                if (offset > 8 + header.length) ch.write(ByteBuffer.wrap(new byte[1]), offset - 1);   // the file's final size
            } catch (IOException e) {
                deleteQuietly(tmp);
                throw new FormatException(file + ": cannot write: " + e + "; check free disk space and permissions", e);
            }
        }

        boolean holds(String name) { return place.containsKey(name); }

        void put(String name, MemorySegment bytes) {
            long[] p = place.get(name);
            if (p == null) throw new IllegalArgumentException(file + ": tensor '" + name + "' is not one of this file's tensors");
            if (bytes.byteSize() != p[1]) throw new IllegalArgumentException(file + ": tensor '" + name + "' has " + bytes.byteSize()
                    + " bytes, its layout " + p[1]);
            if (!written.add(name)) throw new IllegalArgumentException(file + ": tensor '" + name + "' is written twice");
            try {
                ByteBuffer buf = ByteBuffer.allocateDirect((int) Math.min(1 << 22, Math.max(1, p[1])));
                MemorySegment window = MemorySegment.ofBuffer(buf);
                for (long off = 0; off < p[1]; ) {
                    int k = (int) Math.min(buf.capacity(), p[1] - off);
                    MemorySegment.copy(bytes, off, window, 0, k);
                    buf.clear().limit(k);
                    while (buf.hasRemaining()) ch.write(buf, p[0] + off + buf.position());
                    off += k;
                }
            } catch (IOException e) {
                throw new FormatException(file + ": cannot write tensor '" + name + "': " + e + "; check free disk space", e);
            }
        }

        /// Checks that every tensor was written, fsyncs and renames the temp file over `file`.
        void commit() {
            for (String n : place.keySet())
                if (!written.contains(n)) { abort(); throw new IllegalStateException(file + ": tensor '" + n + "' was never written"); }
            try {
                ch.force(true);
                ch.close();
                Files.move(tmp, file, StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
            } catch (IOException e) {
                abort();
                throw new FormatException(file + ": cannot write: " + e + "; check free disk space and permissions", e);
            }
        }

        void abort() {
            try { ch.close(); } catch (IOException ignored) { /* the file is removed next */ }
            deleteQuietly(tmp);
        }
    }

    /// Writes through a temp file beside `file` (same file system, so the rename is atomic), fsyncs it, renames it
    /// over `file` and fsyncs the directory. On failure the temp file is removed and `file` is untouched.
    public static void atomically(Path file, Body body) {
        Path abs = file.toAbsolutePath();
        Path dir = abs.getParent();
        if (dir == null || !Files.isDirectory(dir))
            throw new FormatException(file + ": cannot write, directory " + dir + " does not exist; create it first");
        Path tmp = dir.resolve("." + abs.getFileName() + "." + Long.toHexString(ThreadLocalRandom.current().nextLong()) + ".tmp");
        try {
            try (FileChannel ch = FileChannel.open(tmp, StandardOpenOption.CREATE_NEW, StandardOpenOption.WRITE)) {
                body.write(ch);
                ch.force(true);
            }
            Files.move(tmp, abs, StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
            try (FileChannel d = FileChannel.open(dir, StandardOpenOption.READ)) {
                d.force(true);
            } catch (IOException ignored) {
                // Some platforms cannot open a directory for fsync; the rename itself has happened.
            }
        } catch (IOException e) {
            deleteQuietly(tmp);
            throw new FormatException(file + ": cannot write: " + e + "; check free disk space and permissions", e);
        } catch (RuntimeException | Error e) {
            deleteQuietly(tmp);
            throw e;
        }
    }

    private static void deleteQuietly(Path p) {
        try { Files.deleteIfExists(p); } catch (IOException ignored) { /* best effort: the temp file is hidden */ }
    }

    private static void flush(FileChannel ch, ByteBuffer buf) throws IOException {
        buf.flip();
        while (buf.hasRemaining()) ch.write(buf);
        buf.clear();
    }
}
