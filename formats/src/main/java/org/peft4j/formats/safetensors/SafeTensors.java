package org.peft4j.formats.safetensors;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import org.peft4j.core.DType;
import org.peft4j.core.Peft4jException.FormatException;

import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.Collections;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.Map;

/// A memory-mapped safetensors file (format: 8-byte LE header length, JSON header, data section).
/// Reference: huggingface/safetensors README "Format".
public final class SafeTensors implements AutoCloseable {
    private static final ValueLayout.OfFloat F32_LE = ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfShort I16_LE = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    private final Path path;
    private final Arena arena;
    private final MemorySegment data;
    private final Map<String, TensorInfo> tensors;
    private final Map<String, String> metadata;

    private SafeTensors(Path path, Arena arena, MemorySegment data, Map<String, TensorInfo> tensors, Map<String, String> metadata) {
        this.path = path; this.arena = arena; this.data = data; this.tensors = tensors; this.metadata = metadata;
    }

    public static SafeTensors open(Path path) {
        Arena arena = Arena.ofShared();
        try (FileChannel ch = FileChannel.open(path, StandardOpenOption.READ)) {
            long size = ch.size();
            if (size < 8) throw new FormatException(path + ": " + size + " bytes is too short for a safetensors file (needs an 8-byte header length)");
            MemorySegment all = ch.map(FileChannel.MapMode.READ_ONLY, 0, size, arena);
            long n = all.get(ValueLayout.JAVA_LONG_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN), 0);
            if (n <= 0 || n > size - 8) throw new FormatException(path + ": header length " + n + " does not fit in a file of " + size + " bytes; the file is truncated or not safetensors");
            byte[] header = all.asSlice(8, n).toArray(ValueLayout.JAVA_BYTE);
            MemorySegment data = all.asSlice(8 + n);
            JsonNode root = new ObjectMapper().readTree(new String(header, StandardCharsets.UTF_8));
            Map<String, TensorInfo> tensors = new LinkedHashMap<>();
            Map<String, String> meta = new LinkedHashMap<>();
            for (Iterator<Map.Entry<String, JsonNode>> it = root.fields(); it.hasNext(); ) {
                var e = it.next();
                if (e.getKey().equals("__metadata__")) {
                    e.getValue().fields().forEachRemaining(m -> meta.put(m.getKey(), m.getValue().asText()));
                    continue;
                }
                JsonNode t = e.getValue();
                DType dt;
                try { dt = DType.valueOf(t.path("dtype").asText()); }
                catch (IllegalArgumentException ex) { throw new FormatException(path + ": tensor '" + e.getKey() + "' has unsupported dtype " + t.path("dtype")); }
                JsonNode sh = t.path("shape");
                long[] shape = new long[sh.size()];
                for (int i = 0; i < shape.length; i++) shape[i] = sh.get(i).asLong();
                long b = t.path("data_offsets").get(0).asLong(), en = t.path("data_offsets").get(1).asLong();
                TensorInfo info = new TensorInfo(e.getKey(), dt, shape, b, en);
                if (b < 0 || en < b || en > data.byteSize() || (en - b) != info.numel() * dt.bytes)
                    throw new FormatException(path + ": tensor '" + e.getKey() + "' has data_offsets [" + b + ", " + en + "] inconsistent with dtype " + dt + " shape " + info.shapeString() + " and a data section of " + data.byteSize() + " bytes");
                tensors.put(e.getKey(), info);
            }
            return new SafeTensors(path, arena, data, Collections.unmodifiableMap(tensors), Collections.unmodifiableMap(meta));
        } catch (IOException e) {
            arena.close();
            throw new FormatException(path + ": cannot read safetensors file: " + e.getMessage(), e);
        } catch (RuntimeException e) {
            arena.close();
            throw e;
        }
    }

    public Path path() { return path; }
    public Map<String, TensorInfo> tensors() { return tensors; }
    public Map<String, String> metadata() { return metadata; }
    public boolean contains(String name) { return tensors.containsKey(name); }

    public TensorInfo info(String name) {
        TensorInfo t = tensors.get(name);
        if (t == null) throw new FormatException(path + ": no tensor named '" + name + "'");
        return t;
    }

    /// The raw bytes of a tensor, a view into the mapping.
    public MemorySegment bytes(String name) {
        TensorInfo t = info(name);
        return data.asSlice(t.begin(), t.end() - t.begin());
    }

    /// A float tensor (F32, BF16 or F16) converted to a new float array.
    public float[] readFloats(String name) {
        TensorInfo t = info(name);
        MemorySegment s = bytes(name);
        int n = Math.toIntExact(t.numel());
        float[] out = new float[n];
        switch (t.dtype()) {
            case F32 -> MemorySegment.copy(s, F32_LE, 0, out, 0, n);
            case BF16 -> { for (int i = 0; i < n; i++) out[i] = DType.bf16ToFloat(s.getAtIndex(I16_LE, i)); }
            case F16 -> { for (int i = 0; i < n; i++) out[i] = Float.float16ToFloat(s.getAtIndex(I16_LE, i)); }
            default -> throw new FormatException(path + ": tensor '" + name + "' has dtype " + t.dtype() + ", expected F32, BF16 or F16");
        }
        return out;
    }

    @Override
    public void close() { arena.close(); }
}
