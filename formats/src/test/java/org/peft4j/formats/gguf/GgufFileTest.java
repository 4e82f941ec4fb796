package org.peft4j.formats.gguf;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.peft4j.core.Peft4jException.FormatException;
import org.peft4j.testkit.Shared;

import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.HexFormat;
import java.util.List;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.*;

/// The writer against a file ggml itself read (the vector), round trips of every value type, and the reader
/// against files broken in each way ggml's `gguf_init_from_file` refuses.
class GgufFileTest {
    @TempDir Path tmp;

    /// The LoRA adapter file of the vectors (verified with ggml's gguf_init_from_file): our writer emits the same bytes.
    @Test void writerReproducesTheVectorFileByteForByte() throws IOException {
        JsonNode v = new ObjectMapper().readTree(Shared.require("docs/vectors/gguf_vectors.json").toFile()).get("gguf_lora_file");
        byte[] want = HexFormat.of().parseHex(v.get("hex").asText());
        assertEquals(v.get("size").asInt(), want.length);
        Path p = tmp.resolve("want.gguf");
        Files.write(p, want);
        GgufWriter w = new GgufWriter();
        try (GgufFile f = GgufFile.open(p)) {
            assertEquals(3, f.version());
            assertEquals(32, f.alignment());
            assertEquals("adapter", f.require("general.type").asString("general.type"));
            assertEquals(16f, (float) f.require("adapter.lora.alpha").asDouble("a"));
            assertEquals(List.of("blk.0.attn_q.weight.lora_a", "blk.0.attn_q.weight.lora_b"), List.copyOf(f.tensors().keySet()));
            assertArrayEquals(new long[]{8, 2}, f.info("blk.0.attn_q.weight.lora_a").ne());
            assertArrayEquals(new long[]{2, 8}, f.info("blk.0.attn_q.weight.lora_a").shape());
            f.metadata().forEach(w::put);
            for (GgufTensor t : f.tensors().values())
                w.add(t.name(), t.type(), t.ne(), MemorySegment.ofArray(f.bytes(t.name()).toArray(ValueLayout.JAVA_BYTE)));
        }
        Path q = tmp.resolve("ours.gguf");
        w.write(q);
        assertArrayEquals(want, Files.readAllBytes(q));
    }

    @Test void everyValueTypeRoundTrips() {
        GgufWriter w = new GgufWriter()
                .put("general.alignment", GgufValue.u32(64))
                .put("a.u8", GgufValue.u8(255)).put("a.i8", GgufValue.i8(-128))
                .put("a.u16", GgufValue.u16(65535)).put("a.i16", GgufValue.i16(-32768))
                .put("a.u32", GgufValue.u32(0xFFFF_FFFFL)).put("a.i32", GgufValue.i32(Integer.MIN_VALUE))
                .put("a.u64", GgufValue.u64(-1L)).put("a.i64", GgufValue.i64(Long.MIN_VALUE))
                .put("a.f32", GgufValue.f32(-1.5e-7f)).put("a.f64", GgufValue.f64(Math.PI))
                .put("a.bool", GgufValue.bool(true)).put("a.str", GgufValue.string("héllo ▁wörld <0x0A>"))
                .put("a.empty", GgufValue.string(""))
                .put("arr.str", GgufValue.strings("a", "", "Ġthe", "日本"))
                .put("arr.f32", GgufValue.f32s(1f, -0f, Float.MAX_VALUE)).put("arr.f64", GgufValue.f64s(1e300))
                .put("arr.bool", GgufValue.bools(true, false)).put("arr.i32", GgufValue.i32s(-1, 3, 7))
                .put("arr.u8", GgufValue.ints(GgufValueType.UINT8, 0, 255)).put("arr.u64", GgufValue.ints(GgufValueType.UINT64, -1))
                .put("arr.none", GgufValue.strings());
        float[] f = {1, 2, 3, 4, 5, 6};
        w.addFloats("t.f32", new long[]{2, 3}, f, GgmlType.F32);
        w.addFloats("t.f16", new long[]{3}, new float[]{0.5f, -2f, 65504f}, GgmlType.F16);
        w.addFloats("t.bf16", new long[]{1, 2}, new float[]{1.5f, -3f}, GgmlType.BF16);
        byte[] q8 = new byte[34 * 2];
        for (int i = 0; i < q8.length; i++) q8[i] = (byte) (i * 7);
        w.add("t.q8", GgmlType.Q8_0, new long[]{32, 2}, MemorySegment.ofArray(q8));
        Path p = tmp.resolve("all.gguf");
        w.write(p);
        try (GgufFile r = GgufFile.open(p)) {
            assertEquals(64, r.alignment());
            assertEquals(List.copyOf(w.tensorNames()), List.copyOf(r.tensors().keySet()));
            GgufWriter copy = new GgufWriter();
            r.metadata().forEach(copy::put);
            assertEquals(22, r.metadata().size());
            assertEquals(GgufValue.u64(-1L), r.get("a.u64"));
            assertEquals(0xFFFF_FFFFL, r.get("a.u32").asLong("a.u32"));
            assertEquals(-128, r.get("a.i8").asLong("a.i8"));
            assertEquals("héllo ▁wörld <0x0A>", r.get("a.str").asString("a.str"));
            assertArrayEquals(new String[]{"a", "", "Ġthe", "日本"}, r.get("arr.str").asStrings("arr.str"));
            assertArrayEquals(new int[]{-1, 3, 7}, r.get("arr.i32").asInts("arr.i32"));
            assertEquals(GgufValue.f32s(1f, -0f, Float.MAX_VALUE), r.get("arr.f32"));
            assertEquals(GgufValue.bools(true, false), r.get("arr.bool"));
            assertEquals(GgufValue.ints(GgufValueType.UINT8, 0, 255), r.get("arr.u8"));
            assertEquals(0, r.get("arr.none").length());
            for (var e : List.of("a.i16", "a.u16", "a.i64", "a.f32", "a.f64", "a.bool", "a.empty", "arr.f64", "arr.u64"))
                assertNotNull(r.get(e), e);
            assertEquals(GgufValue.f64(Math.PI), r.get("a.f64"));
            assertArrayEquals(f, r.readFloats("t.f32"));
            assertArrayEquals(new long[]{3, 2}, r.info("t.f32").ne());
            assertArrayEquals(new float[]{0.5f, -2f, 65504f}, r.readFloats("t.f16"));
            assertArrayEquals(new float[]{1.5f, -3f}, r.readFloats("t.bf16"));
            assertArrayEquals(q8, r.bytes("t.q8").toArray(ValueLayout.JAVA_BYTE));
            for (GgufTensor t : r.tensors().values()) assertEquals(0, t.offset() % 64, t.name());
            assertThrows(FormatException.class, () -> r.readFloats("t.q8"));
            FormatException e = assertThrows(FormatException.class, () -> r.get("a.str").asInt("a.str"));
            assertTrue(e.getMessage().contains("a.str"), e.getMessage());
        }
    }

    @Test void writerRefusesWhatReadersRefuse() {
        GgufWriter w = new GgufWriter();
        assertThrows(IllegalArgumentException.class, () -> w.put("general.alignment", GgufValue.u32(48)));
        assertThrows(IllegalArgumentException.class, () -> w.put("", GgufValue.u8(1)));
        assertThrows(IllegalArgumentException.class, () -> GgufValue.u8(256));
        assertThrows(IllegalArgumentException.class, () -> new GgufValue(GgufValueType.ARRAY, GgufValueType.ARRAY, new long[0]));
        assertThrows(IllegalArgumentException.class, () -> w.add("x".repeat(64), GgmlType.F32, new long[]{1}, MemorySegment.ofArray(new byte[4])));
        assertThrows(IllegalArgumentException.class, () -> w.add("q", GgmlType.Q8_0, new long[]{16}, MemorySegment.ofArray(new byte[17])));
        assertThrows(IllegalArgumentException.class, () -> w.add("f", GgmlType.F32, new long[]{2}, MemorySegment.ofArray(new byte[4])));
        w.add("f", GgmlType.F32, new long[]{1}, MemorySegment.ofArray(new byte[4]));
        assertThrows(IllegalArgumentException.class, () -> w.add("f", GgmlType.F32, new long[]{1}, MemorySegment.ofArray(new byte[4])));
    }

    // ---- malformed files -------------------------------------------------------------------------------------

    /// A valid file with one string KV and two F32 tensors of 3 and 2 elements, as bytes.
    private byte[] valid() throws IOException {
        Path p = tmp.resolve("valid.gguf");
        new GgufWriter().put("general.architecture", GgufValue.string("llama"))
                .addFloats("a", new long[]{3}, new float[]{1, 2, 3}, GgmlType.F32)
                .addFloats("b", new long[]{2}, new float[]{4, 5}, GgmlType.F32).write(p);
        return Files.readAllBytes(p);
    }

    // Byte positions in valid(): header 24; KV key len @24, key @32 (20 bytes), type @52, value len @56, value @64 (5);
    // tensor a: name len @69, name @77, n_dims @78, ne0 @82, type @90, offset @94; tensor b @102 (name @110, n_dims @111,
    // ne0 @115, type @123, offset @127); end of infos 135, data @160, a @160..172, b @192..200, padding to 224.
    private static final int KV_KEYLEN = 24, KV_TYPE = 52, KV_VALLEN = 56, A_NDIMS = 78, A_NE0 = 82, A_TYPE = 90, B_OFFSET = 127;

    private String fails(byte[] bytes, String... parts) throws IOException {
        Path p = tmp.resolve("bad.gguf");
        Files.write(p, bytes);
        FormatException e = assertThrows(FormatException.class, () -> GgufFile.open(p).close());
        assertTrue(e.getMessage().contains(p.toString()), "names the file: " + e.getMessage());
        for (String s : parts) assertTrue(e.getMessage().contains(s), "contains '" + s + "': " + e.getMessage());
        return e.getMessage();
    }

    private static byte[] patch32(byte[] b, int at, int v) { byte[] c = b.clone(); ByteBuffer.wrap(c).order(ByteOrder.LITTLE_ENDIAN).putInt(at, v); return c; }
    private static byte[] patch64(byte[] b, int at, long v) { byte[] c = b.clone(); ByteBuffer.wrap(c).order(ByteOrder.LITTLE_ENDIAN).putLong(at, v); return c; }

    @Test void theByteMapAboveIsRight() throws IOException {
        byte[] v = valid();
        assertEquals(224, v.length);   // the last tensor is padded too, as gguf-py does
        try (GgufFile f = GgufFile.open(write(v))) {
            assertArrayEquals(new float[]{4, 5}, f.readFloats("b"));
            assertEquals(32, f.info("b").offset());
        }
        ByteBuffer b = ByteBuffer.wrap(v).order(ByteOrder.LITTLE_ENDIAN);
        assertEquals(20, b.getLong(KV_KEYLEN)); assertEquals(8, b.getInt(KV_TYPE)); assertEquals(5, b.getLong(KV_VALLEN));
        assertEquals(1, b.getInt(A_NDIMS)); assertEquals(3, b.getLong(A_NE0)); assertEquals(0, b.getInt(A_TYPE));
        assertEquals(32, b.getLong(B_OFFSET));
    }

    private Path write(byte[] b) throws IOException { Path p = tmp.resolve("ok.gguf"); Files.write(p, b); return p; }

    @Test void truncatedFilesAreRefusedAtEveryLength() throws IOException {
        byte[] v = valid();
        fails(java.util.Arrays.copyOf(v, 10), "24-byte header", "truncated");
        fails(java.util.Arrays.copyOf(v, 60), "bytes left", "truncated");
        fails(java.util.Arrays.copyOf(v, 199), "ends at byte 200", "truncated");
        try (GgufFile f = GgufFile.open(write(java.util.Arrays.copyOf(v, 200)))) { assertArrayEquals(new float[]{4, 5}, f.readFloats("b")); }   // the last padding is optional
        for (int n = 0; n < 200; n++) {
            Path p = tmp.resolve("cut.gguf");
            Files.write(p, java.util.Arrays.copyOf(v, n));
            assertThrows(FormatException.class, () -> GgufFile.open(p).close(), "cut at " + n);
        }
    }

    @Test void badMagicAndVersions() throws IOException {
        byte[] v = valid();
        fails(patch32(v, 0, 0x46554746), "not a GGUF file");
        fails(patch32(v, 4, 1), "version 1");
        fails(patch32(v, 4, 4), "version 4");
        fails(patch32(v, 4, 0x03000000), "big-endian");
    }

    @Test void lyingCountsAndHugeStrings() throws IOException {
        byte[] v = valid();
        fails(patch64(v, 16, 1L << 40), "metadata entries", "count is corrupt");
        fails(patch64(v, 8, -1L), "tensors", "count is corrupt");
        fails(patch64(v, 16, 2), "GGUF byte");                      // a second KV that is really tensor infos
        fails(patch64(v, KV_KEYLEN, Long.MAX_VALUE), "length is corrupt");
        fails(patch64(v, KV_VALLEN, 1L << 50), "length is corrupt");
        fails(patch64(v, KV_VALLEN, -1), "length is corrupt");
    }

    @Test void arraysWithLyingLengthsOrNesting() throws IOException {
        Path p = tmp.resolve("arr.gguf");
        new GgufWriter().put("t", GgufValue.i32s(1, 2)).write(p);
        byte[] v = Files.readAllBytes(p);
        // KV: key len @24, "t" @32, type @33, element type @37, count @41, elements @49
        fails(patch64(v, 41, 1L << 40), "array 't'", "count is corrupt");
        fails(patch32(v, 37, 9), "nested arrays");
        fails(patch32(v, 37, 77), "unknown element type 77");
    }

    @Test void unknownTypesAndBadShapes() throws IOException {
        byte[] v = valid();
        fails(patch32(v, KV_TYPE, 13), "unknown value type 13");
        fails(patch32(v, A_TYPE, 99), "unknown ggml type 99");
        fails(patch32(v, A_TYPE, GgmlType.Q8_0.id), "not a multiple of the block size 32");
        fails(patch32(v, A_NDIMS, 5), "5 dimensions");
        fails(patch32(v, A_NDIMS, 0), "0 dimensions");
        fails(patch64(v, A_NE0, -5), "negative");
        fails(patch64(v, A_NE0, 1L << 62), "63 bits");
        fails(patch64(v, A_NE0, 1L << 40), "more than the whole file");
    }

    @Test void misalignedOrOverlappingData() throws IOException {
        byte[] v = valid();
        fails(patch64(v, B_OFFSET, 12), "data offset 12, expected 32", "misaligned");
        fails(patch64(v, B_OFFSET, 64), "expected 32");
    }

    @Test void duplicatesAndBadAlignment() throws IOException {
        Path p = tmp.resolve("dup.gguf");
        new GgufWriter().put("k.a", GgufValue.u8(1)).put("k.b", GgufValue.u8(2))
                .addFloats("x", new long[]{1}, new float[]{1}, GgmlType.F32).addFloats("y", new long[]{1}, new float[]{1}, GgmlType.F32).write(p);
        byte[] v = Files.readAllBytes(p);
        byte[] dupKey = v.clone(); dupKey[24 + 8 + 3 + 4 + 1 + 8 + 2] = 'a';   // "k.b" → "k.a"
        fails(dupKey, "'k.a' appears twice");
        String s = new String(v, java.nio.charset.StandardCharsets.ISO_8859_1);
        int y = s.indexOf("y", s.indexOf("x") + 1);
        byte[] dupName = v.clone(); dupName[y] = 'x';
        fails(dupName, "'x' appears twice");
        Path q = tmp.resolve("align.gguf");
        new GgufWriter().put("general.alignment", GgufValue.u32(16)).write(q);
        byte[] a = Files.readAllBytes(q);
        fails(patch32(a, 53, 48), "not a power of two");   // key length @24, key @32 (17 bytes), type @49, value @53
        fails(patch32(a, 49, GgufValueType.INT32.id), "expected UINT32");
    }

    @Test void emptyFileAndMissingKeysAreClear() throws IOException {
        Path p = tmp.resolve("empty.gguf");
        new GgufWriter().write(p);
        try (GgufFile f = GgufFile.open(p)) {
            assertEquals(Map.of(), f.metadata());
            FormatException e = assertThrows(FormatException.class, () -> f.require("llama.block_count"));
            assertTrue(e.getMessage().contains("llama.block_count"), e.getMessage());
            assertThrows(FormatException.class, () -> f.info("nope"));
        }
    }
}
