package org.peft4j.formats.safetensors;

import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;
import org.peft4j.core.DType;
import org.peft4j.core.Peft4jException.FormatException;
import org.peft4j.formats.safetensors.SafeTensors.Entry;
import org.peft4j.testkit.Shared;

import java.io.IOException;
import java.io.InputStream;
import java.lang.foreign.ValueLayout;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Collections;
import java.util.HexFormat;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;

import static org.junit.jupiter.api.Assertions.*;

/// The writer: bit-exact round trips per dtype, and bytes equal to files laid out independently — one by our
/// json+struct script (`reference/safetensors_layout.py`), and the shared models written by the real library.
class SafeTensorsWriteTest {
    @TempDir Path tmp;

    private static byte[] randomBytes(int n, long seed) {
        byte[] b = new byte[n];
        new Random(seed).nextBytes(b);
        return b;
    }

    @ParameterizedTest
    @EnumSource(DType.class)
    void roundTripIsBitExact(DType dtype) {
        Path p = tmp.resolve("rt.safetensors");
        long[] shape = {3, 5, 7};
        byte[] data = randomBytes(3 * 5 * 7 * dtype.bytes, dtype.ordinal());  // arbitrary bits: NaN payloads, subnormals, -0
        SafeTensors.write(p, List.of(Entry.ofBytes("t", dtype, shape, data), Entry.ofBytes("scalar", dtype, new long[0],
                new byte[dtype.bytes])), Map.of("format", "pt"));
        try (SafeTensors st = SafeTensors.open(p)) {
            assertEquals(dtype, st.info("t").dtype());
            assertArrayEquals(shape, st.info("t").shape());
            assertArrayEquals(data, st.bytes("t").toArray(ValueLayout.JAVA_BYTE));
            assertArrayEquals(new long[0], st.info("scalar").shape());
            assertEquals(Map.of("format", "pt"), st.metadata());
        }
    }

    /// `ofFloats` conversions checked against bit formulas written here: F32 verbatim, BF16 = top 16 bits rounded to
    /// nearest even, F16 against IEEE half decoding (every float16 value round-trips exactly through float).
    @Test
    void ofFloatsConvertsAndReadFloatsDecodes() {
        float[] x = {0f, -0f, 1f, -2.5f, 1e-30f, 3.3895314e38f, Float.MIN_VALUE, 65504f, 1f / 3, Float.NaN, Float.NEGATIVE_INFINITY, 1.00390625f, 1.01171875f};
        Path p = tmp.resolve("f.safetensors");
        SafeTensors.write(p, List.of(Entry.ofFloats("f32", new long[]{x.length}, x, DType.F32),
                Entry.ofFloats("bf16", new long[]{x.length}, x, DType.BF16),
                Entry.ofFloats("f16", new long[]{x.length}, x, DType.F16)), null);
        try (SafeTensors st = SafeTensors.open(p)) {
            assertTrue(st.metadata().isEmpty());
            float[] f32 = st.readFloats("f32"), bf16 = st.readFloats("bf16"), f16 = st.readFloats("f16");
            var raw = st.bytes("bf16");
            for (int i = 0; i < x.length; i++) {
                assertEquals(Float.floatToRawIntBits(x[i]), Float.floatToRawIntBits(f32[i]), "f32[" + i + "]");
                int b = Float.floatToRawIntBits(x[i]);
                int expect = Float.isNaN(x[i]) ? (b >>> 16) | 0x40
                        : (int) (((b & 0xffffffffL) + 0x7fff + ((b >>> 16) & 1)) >>> 16);
                assertEquals(expect & 0xffff, raw.getAtIndex(ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN), i) & 0xffff, "bf16 bits[" + i + "]");
                assertEquals(Float.intBitsToFloat(expect << 16), bf16[i], "bf16[" + i + "]");
                double h = f16[i];  // nearest half: no representable half is closer to x
                if (!Float.isNaN(x[i]) && !Float.isInfinite(x[i]) && Math.abs(x[i]) < 65520)
                    assertTrue(Math.abs(h - x[i]) <= halfUlp(h), "f16[" + i + "] " + h + " for " + x[i]);
            }
        }
        assertEquals(1.0f, Float.float16ToFloat((short) 0x3c00));  // sanity of the decoder the check relies on
    }

    /// Tensors larger than one positional-read chunk (4 MiB), of every float dtype and at odd offsets in the data
    /// section: `readFloats` and `readShorts` (which read the file, not the mapping) give, element by element, the
    /// values decoded here from the mapped bytes; `readFloats` into an offset of a larger array leaves its ends alone.
    @Test
    void readsThroughTheFileAcrossChunks() {
        Path p = tmp.resolve("big.safetensors");
        int n = (1 << 21) + 3;   // BF16/F16: 4 MiB + 6 bytes; F32: two chunks and a bit; F64: four
        List<Entry> entries = new ArrayList<>();
        entries.add(Entry.ofBytes("odd", DType.U8, new long[]{3}, new byte[]{1, 2, 3}));   // the next tensors start off alignment
        for (DType t : new DType[]{DType.BF16, DType.F16, DType.F32, DType.F64})
            entries.add(Entry.ofBytes(t.name(), t, new long[]{n}, randomBytes(n * t.bytes, 40 + t.ordinal())));
        SafeTensors.write(p, entries, null);
        var S = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
        try (SafeTensors st = SafeTensors.open(p)) {
            for (DType t : new DType[]{DType.BF16, DType.F16, DType.F32, DType.F64}) {
                var raw = st.bytes(t.name());
                float[] f = new float[n + 2];
                f[0] = 7f; f[n + 1] = 9f;
                st.readFloats(t.name(), f, 1);
                assertEquals(7f, f[0]);
                assertEquals(9f, f[n + 1]);
                for (int i : new int[]{0, 1, (1 << 20) - 1, 1 << 20, (1 << 21) - 1, 1 << 21, n - 1}) {
                    float want = switch (t) {
                        case BF16 -> Float.intBitsToFloat((raw.getAtIndex(S, i) & 0xffff) << 16);
                        case F16 -> Float.float16ToFloat(raw.getAtIndex(S, i));
                        case F32 -> raw.getAtIndex(ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN), i);
                        default -> (float) raw.getAtIndex(ValueLayout.JAVA_DOUBLE_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN), i);
                    };
                    assertEquals(Float.floatToRawIntBits(want), Float.floatToRawIntBits(f[1 + i]), t + "[" + i + "]");
                }
                if (t.bytes == 2) {
                    short[] h = new short[n];
                    st.readShorts(t.name(), h);
                    assertArrayEquals(raw.toArray(S), h, t + " readShorts");
                }
            }
            var e = assertThrows(FormatException.class, () -> st.readShorts("F32", new short[n]));
            assertTrue(e.getMessage().contains("readShorts reads BF16 or F16"), e.getMessage());
        }
    }

    /// A reader keeps reading the file it opened when the path is rewritten meanwhile (the writer replaces it
    /// atomically): `readFloats` and `readShorts` give the old values, as the mapping does; so does a reader on the
    /// caller's arena, whose mapped bytes stay readable after it is closed, while its arena lives.
    @Test
    void readsTheFileItOpenedWhenThePathIsReplaced() {
        Path p = tmp.resolve("swap.safetensors");
        float[] a = {1f, 2f, 3f}, b = {7f, 8f, 9f};
        SafeTensors.write(p, List.of(Entry.ofFloats("x", new long[]{3}, a, DType.F32), Entry.ofFloats("h", new long[]{3}, a, DType.BF16)), null);
        try (SafeTensors st = SafeTensors.open(p); java.lang.foreign.Arena arena = java.lang.foreign.Arena.ofConfined()) {
            SafeTensors mine = SafeTensors.open(p, arena);
            var mapped = mine.bytes("h");
            SafeTensors.write(p, List.of(Entry.ofFloats("x", new long[]{3}, b, DType.F32), Entry.ofFloats("h", new long[]{3}, b, DType.BF16)), null);
            assertArrayEquals(a, st.readFloats("x"));
            assertArrayEquals(a, st.readFloats("h"));
            short[] h = new short[3];
            st.readShorts("h", h);
            assertEquals(DType.floatToBf16(2f), h[1]);
            assertArrayEquals(a, mine.readFloats("x"));
            assertArrayEquals(a, mine.readFloats("h"));
            mine.close();
            assertEquals(DType.floatToBf16(3f), mapped.get(SafeTensors.I16_LE, 4), "the mapping outlives close()");
            try (SafeTensors now = SafeTensors.open(p)) { assertArrayEquals(b, now.readFloats("x")); }
        }
    }

    /// Half of the float16 spacing at |h| (the rounding bound), including the subnormal range.
    private static double halfUlp(double h) {
        double a = Math.abs(h);
        int e = a < 0x1p-14 ? -14 : Math.getExponent(a);
        return Math.scalb(1.0, e - 10) / 2;
    }

    private byte[] resource(String name) throws IOException {
        try (InputStream in = getClass().getResourceAsStream("/safetensors/" + name)) {
            assertNotNull(in, "test resource " + name);
            return in.readAllBytes();
        }
    }

    private static byte[] le(int bytes, java.util.function.Consumer<ByteBuffer> fill) {
        ByteBuffer b = ByteBuffer.allocate(bytes).order(ByteOrder.LITTLE_ENDIAN);
        fill.accept(b);
        return b.array();
    }

    /// The same tensors as `reference/safetensors_layout.py`, built from its formulas, given in shuffled order.
    @Test
    void bytesEqualTheIndependentLayoutScript() throws IOException {
        float[] f32 = new float[6];
        for (int i = 0; i < 6; i++) f32[i] = i * 0.5f - 1f;
        float[] bf = new float[4];
        for (int i = 0; i < 4; i++) bf[i] = (float) (1.0 / (i + 3));
        List<Entry> entries = new ArrayList<>(List.of(
                Entry.ofFloats("w.f32", new long[]{2, 3}, f32, DType.F32),
                Entry.ofFloats("w.bf16", new long[]{4}, bf, DType.BF16),
                Entry.ofFloats("w.f16", new long[]{3}, new float[]{0.1f, 0.2f, 0.3f}, DType.F16),
                Entry.ofBytes("w.f64", DType.F64, new long[]{2}, le(16, b -> b.putDouble(Math.PI).putDouble(-2.5))),
                Entry.ofBytes("ids.i64", DType.I64, new long[]{3}, le(24, b -> b.putLong(-1).putLong(0).putLong(1L << 40))),
                Entry.ofBytes("ids.i32", DType.I32, new long[]{2}, le(8, b -> b.putInt(-7).putInt(123456789))),
                Entry.ofBytes("ids.i16", DType.I16, new long[]{2}, le(4, b -> b.putShort((short) -300).putShort((short) 300))),
                Entry.ofBytes("ids.i8", DType.I8, new long[]{3}, new byte[]{-128, 0, 127}),
                Entry.ofBytes("packed.u8", DType.U8, new long[]{5, 1}, new byte[]{0, 0x7f, (byte) 0x80, (byte) 0xab, (byte) 0xff}),
                Entry.ofBytes("mask.bool", DType.BOOL, new long[]{3}, new byte[]{1, 0, 1}),
                Entry.ofFloats("scalar", new long[0], new float[]{42f}, DType.F32),
                Entry.ofFloats("empty", new long[]{0, 3}, new float[0], DType.F32),
                Entry.ofBytes("caf\u00e9 \"q\"\n", DType.U8, new long[]{1}, new byte[]{9})));
        Collections.shuffle(entries, new Random(1));
        Map<String, String> meta = new LinkedHashMap<>();
        meta.put("note", "tab\there");
        meta.put("format", "pt");
        Path p = tmp.resolve("layout.safetensors");
        SafeTensors.write(p, entries, meta);
        assertBytesEqual(resource("layout_case.safetensors"), Files.readAllBytes(p));
    }

    /// tinystories-656k was saved by transformers through the real safetensors library: reading every tensor and
    /// writing it back with the same metadata reproduces the file byte for byte (tensor order, header JSON with two
    /// metadata keys, padding). (stories260K-hf was written by a converter that puts `__metadata__` last, so it
    /// is not an oracle for the layout.)
    @Tag("slow")
    @Test
    void rewritingARealModelReproducesItsBytes() throws IOException {
        Path src = Shared.require("models/tinystories-656k/model.safetensors");
        Path out = tmp.resolve("model.safetensors");
        try (SafeTensors st = SafeTensors.open(src)) {
            List<Entry> entries = new ArrayList<>();
            for (TensorInfo t : st.tensors().values()) entries.add(new Entry(t.name(), t.dtype(), t.shape(), st.bytes(t.name())));
            Collections.reverse(entries);
            SafeTensors.write(out, entries, st.metadata().isEmpty() ? null : st.metadata());
        }
        assertBytesEqual(Files.readAllBytes(src), Files.readAllBytes(out));
    }

    private static void assertBytesEqual(byte[] expected, byte[] actual) {
        int i = java.util.Arrays.mismatch(expected, actual);
        if (i < 0) return;
        int from = Math.max(0, i - 16);
        fail("bytes differ at offset " + i + " (lengths " + expected.length + " vs " + actual.length + ")\n expected "
                + new String(expected, from, Math.min(expected.length, i + 48) - from, java.nio.charset.StandardCharsets.ISO_8859_1)
                + "\n actual   " + new String(actual, from, Math.min(actual.length, i + 48) - from, java.nio.charset.StandardCharsets.ISO_8859_1)
                + "\n hex expected " + HexFormat.of().formatHex(expected, from, Math.min(expected.length, i + 16))
                + "\n hex actual   " + HexFormat.of().formatHex(actual, from, Math.min(actual.length, i + 16)));
    }

    @Test
    void writeReplacesAtomicallyAndLeavesNoTempFiles() throws IOException {
        Path p = tmp.resolve("a.safetensors");
        SafeTensors.write(p, List.of(Entry.ofFloats("x", new long[]{1}, new float[]{1f}, DType.F32)), null);
        SafeTensors.write(p, List.of(Entry.ofFloats("y", new long[]{2}, new float[]{2f, 3f}, DType.F32)), null);
        try (SafeTensors st = SafeTensors.open(p)) {
            assertFalse(st.contains("x"));
            assertArrayEquals(new float[]{2f, 3f}, st.readFloats("y"));
        }
        try (var files = Files.list(tmp)) { assertEquals(List.of(p), files.toList()); }
        var e = assertThrows(FormatException.class, () -> SafeTensors.write(tmp.resolve("no/such/dir/b.safetensors"), List.of(), null));
        assertTrue(e.getMessage().contains("does not exist"), e.getMessage());
    }

    @Test
    void badEntriesAreRejected() {
        var dup = List.of(Entry.ofBytes("a", DType.U8, new long[]{1}, new byte[1]), Entry.ofBytes("a", DType.U8, new long[]{1}, new byte[1]));
        assertThrows(IllegalArgumentException.class, () -> SafeTensors.write(tmp.resolve("d.safetensors"), dup, null));
        assertThrows(IllegalArgumentException.class, () -> Entry.ofBytes("a", DType.F32, new long[]{2}, new byte[4]));
        assertThrows(IllegalArgumentException.class, () -> Entry.ofBytes("a", DType.U8, new long[]{-1}, new byte[0]));
        assertThrows(IllegalArgumentException.class, () -> Entry.ofBytes("__metadata__", DType.U8, new long[]{1}, new byte[1]));
        assertThrows(IllegalArgumentException.class, () -> Entry.ofFloats("a", new long[]{1}, new float[1], DType.I32));
    }
}
