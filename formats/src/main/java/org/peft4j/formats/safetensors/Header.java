package org.peft4j.formats.safetensors;

import com.fasterxml.jackson.core.JacksonException;
import com.fasterxml.jackson.core.JsonFactory;
import com.fasterxml.jackson.core.StreamReadFeature;
import com.fasterxml.jackson.databind.DeserializationFeature;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import org.peft4j.core.DType;
import org.peft4j.core.Peft4jException.FormatException;
import org.peft4j.core.Peft4jException.UnsupportedModelException;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteBuffer;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Collections;
import java.util.Comparator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;

/// Parses and validates a safetensors header the way the Rust library's `Metadata::validate` does (specs.md §6.1):
/// header length within the file and at most 100 MB, a UTF-8 JSON object starting with `{` (trailing spaces allowed),
/// no duplicate names, every tensor with a known dtype, a non-negative shape and `data_offsets` whose byte count
/// matches, and tensors that, sorted by offset, tile the data section exactly (no gap, no overlap, nothing after).
record Header(Map<String, TensorInfo> tensors, Map<String, String> metadata) {
    static final long MAX_HEADER = 100_000_000;
    /// Valid safetensors dtypes that peft4j's [DType] cannot hold.
    private static final Set<String> KNOWN_UNSUPPORTED = Set.of("U16", "U32", "U64", "C64", "F8_E5M2", "F8_E4M3",
            "F8_E8M0", "F8_E4M3FNUZ", "F8_E5M2FNUZ", "F4", "F6_E2M3", "F6_E3M2");
    private static final ObjectMapper JSON = new ObjectMapper(JsonFactory.builder()
            .enable(StreamReadFeature.STRICT_DUPLICATE_DETECTION).build())
            .enable(DeserializationFeature.FAIL_ON_TRAILING_TOKENS);

    /// `all` is the whole file (`size` bytes); `n` the header length read from its first 8 bytes.
    static Header parse(Path path, MemorySegment all, long n, long size) {
        if (n < 2 || n > MAX_HEADER || n > size - 8) {
            String why = n > MAX_HEADER && n <= size - 8 ? "exceeds the format's limit of " + MAX_HEADER + " bytes"
                    : "does not fit in a file of " + size + " bytes";
            throw new FormatException(path + ": header length " + Long.toUnsignedString(n) + " " + why
                    + "; the file is truncated, corrupt or not safetensors");
        }
        byte[] raw = all.asSlice(8, n).toArray(ValueLayout.JAVA_BYTE);
        String text;
        try {
            text = StandardCharsets.UTF_8.newDecoder().onMalformedInput(CodingErrorAction.REPORT)
                    .onUnmappableCharacter(CodingErrorAction.REPORT).decode(ByteBuffer.wrap(raw)).toString();
        } catch (CharacterCodingException e) {
            throw new FormatException(path + ": header is not valid UTF-8; the file is corrupt or not safetensors", e);
        }
        if (!text.startsWith("{")) throw new FormatException(path + ": header does not start with '{' (it starts with "
                + quote(text.substring(0, Math.min(16, text.length()))) + "); the file is not safetensors");
        JsonNode root;
        try {
            root = JSON.readTree(text);
        } catch (JacksonException e) {
            throw new FormatException(path + ": header is not valid JSON (" + e.getOriginalMessage()
                    + "); the file is corrupt or truncated", e);
        }
        if (root == null || !root.isObject()) throw new FormatException(path + ": header is not a JSON object");

        Map<String, String> meta = new LinkedHashMap<>();
        List<TensorInfo> list = new ArrayList<>();
        for (Map.Entry<String, JsonNode> e : root.properties()) {
            if (e.getKey().equals("__metadata__")) readMetadata(path, e.getValue(), meta);
            else list.add(readTensor(path, e.getKey(), e.getValue()));
        }
        checkTiling(path, list, size - 8 - n);
        Map<String, TensorInfo> tensors = new LinkedHashMap<>();
        for (TensorInfo t : list) tensors.put(t.name(), t);
        return new Header(Collections.unmodifiableMap(tensors), Collections.unmodifiableMap(meta));
    }

    private static void readMetadata(Path path, JsonNode node, Map<String, String> meta) {
        if (!node.isObject()) throw new FormatException(path + ": __metadata__ is " + node.getNodeType()
                + ", expected an object of strings");
        for (Map.Entry<String, JsonNode> m : node.properties()) {
            if (!m.getValue().isTextual()) throw new FormatException(path + ": __metadata__ entry '" + m.getKey()
                    + "' is " + m.getValue() + "; safetensors allows only string values");
            meta.put(m.getKey(), m.getValue().textValue());
        }
    }

    private static TensorInfo readTensor(Path path, String name, JsonNode t) {
        String where = path + ": tensor '" + name + "'";
        if (!t.isObject()) throw new FormatException(where + " is " + t.getNodeType() + ", expected an object with dtype, shape and data_offsets");
        JsonNode dt = t.get("dtype"), sh = t.get("shape"), off = t.get("data_offsets");
        if (dt == null || sh == null || off == null)
            throw new FormatException(where + " lacks " + (dt == null ? "dtype" : sh == null ? "shape" : "data_offsets")
                    + "; every tensor entry needs dtype, shape and data_offsets");
        DType dtype = dtype(where, dt);
        if (!sh.isArray()) throw new FormatException(where + " has shape " + sh + ", expected an array of non-negative integers");
        long[] shape = new long[sh.size()];
        for (int i = 0; i < shape.length; i++) shape[i] = nonNegative(where, "shape", sh, sh.get(i));
        if (!off.isArray() || off.size() != 2)
            throw new FormatException(where + " has data_offsets " + off + ", expected [begin, end]");
        long begin = nonNegative(where, "data_offsets", off, off.get(0)), end = nonNegative(where, "data_offsets", off, off.get(1));
        long numel;
        try {
            numel = TensorInfo.numel(shape, name);
            Math.multiplyExact(numel, dtype.bytes);
        } catch (ArithmeticException e) {
            throw new FormatException(where + " has shape " + sh + " whose byte size overflows a 64-bit integer");
        }
        if (end < begin || end - begin != numel * dtype.bytes)
            throw new FormatException(where + " has data_offsets [" + begin + ", " + end + "] (" + (end - begin)
                    + " bytes), but dtype " + dtype + " with shape " + sh + " needs " + numel * dtype.bytes + " bytes");
        return new TensorInfo(name, dtype, shape, begin, end);
    }

    private static DType dtype(String where, JsonNode dt) {
        String s = dt.isTextual() ? dt.textValue() : String.valueOf(dt);
        for (DType d : DType.values()) if (d.name().equals(s)) return d;
        if (KNOWN_UNSUPPORTED.contains(s))
            throw new UnsupportedModelException(where + " has dtype " + s + ", which peft4j does not support; convert "
                    + "the checkpoint to F32, BF16 or F16 (e.g. torch: state_dict[k].to(torch.bfloat16)) and save it again");
        throw new FormatException(where + " has unknown dtype " + dt + "; safetensors dtypes are BOOL, U8, I8, I16, U16, "
                + "F16, BF16, I32, U32, F32, F64, I64, U64, C64, F8_*, F6_*, F4");
    }

    private static long nonNegative(String where, String field, JsonNode array, JsonNode v) {
        if (v == null || !v.isIntegralNumber() || !v.canConvertToLong() || v.longValue() < 0)
            throw new FormatException(where + " has " + field + " " + array + "; entries must be non-negative integers");
        return v.longValue();
    }

    /// Sorted by (begin, end), tensors must start at 0, each begin where the previous ended, and the last end at `dataLen`.
    private static void checkTiling(Path path, List<TensorInfo> list, long dataLen) {
        List<TensorInfo> sorted = new ArrayList<>(list);
        sorted.sort(Comparator.comparingLong(TensorInfo::begin).thenComparingLong(TensorInfo::end));
        long at = 0;
        TensorInfo prev = null;
        for (TensorInfo t : sorted) {
            if (t.begin() != at) {
                String what = t.begin() < at ? "overlaps " + (prev == null ? "" : "tensor '" + prev.name() + "' ending at " + at)
                        : "leaves a gap of " + (t.begin() - at) + " bytes after " + (prev == null ? "the start of the data section"
                        : "tensor '" + prev.name() + "' ending at " + at);
                throw new FormatException(path + ": tensor '" + t.name() + "' with data_offsets [" + t.begin() + ", " + t.end()
                        + "] " + what + "; tensors must tile the data section exactly. The file is corrupt");
            }
            at = t.end();
            prev = t;
        }
        if (at != dataLen)
            throw new FormatException(path + ": the tensors cover " + at + " bytes but the data section has " + dataLen
                    + (at > dataLen ? "; the file is truncated" : "; the file has trailing bytes") + " (header + data must equal the file size)");
    }

    private static String quote(String s) {
        StringBuilder b = new StringBuilder("\"");
        for (char c : s.toCharArray()) b.append(c >= 0x20 && c < 0x7f ? String.valueOf(c) : String.format("\\u%04x", (int) c));
        return b.append('"').toString();
    }
}
