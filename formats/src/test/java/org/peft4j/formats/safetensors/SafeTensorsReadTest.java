package org.peft4j.formats.safetensors;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;
import org.peft4j.core.DType;
import org.peft4j.core.Peft4jException.FormatException;
import org.peft4j.core.Peft4jException.UnsupportedModelException;
import org.peft4j.testkit.Shared;

import java.io.IOException;
import java.lang.foreign.ValueLayout;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;

import static org.junit.jupiter.api.Assertions.*;

/// The reader against the real models and against files broken in each way the format's validation forbids.
class SafeTensorsReadTest {
    @TempDir Path tmp;
    private static final long REAL = Long.MIN_VALUE;

    /// A file with header `json` (declared length `n`, or the real length if [#REAL]) and `dataLen` zero bytes.
    private Path file(String json, long n, int dataLen) throws IOException {
        byte[] h = json.getBytes(StandardCharsets.UTF_8);
        ByteBuffer b = ByteBuffer.allocate(8 + h.length + dataLen).order(ByteOrder.LITTLE_ENDIAN);
        b.putLong(n == REAL ? h.length : n).put(h);
        Path p = tmp.resolve("bad.safetensors");
        Files.write(p, b.array());
        return p;
    }

    private static final String ONE = "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}";

    private <T extends RuntimeException> String fails(Class<T> type, Path p, String... parts) {
        T e = assertThrows(type, () -> SafeTensors.open(p).close());
        assertTrue(e.getMessage().contains(p.toString()), "message names the file: " + e.getMessage());
        for (String s : parts) assertTrue(e.getMessage().contains(s), "message contains '" + s + "': " + e.getMessage());
        return e.getMessage();
    }

    @Test void validMinimalFileOpens() throws IOException {
        try (SafeTensors st = SafeTensors.open(file(ONE, REAL, 8))) {
            assertArrayEquals(new float[2], st.readFloats("a"));
        }
    }

    /// BF16 and F16 tensors longer than the converter's block (2¹⁴ values, plus a partial block) convert every value
    /// as the bit formulas say, at an offset into the destination, every 16-bit pattern included (NaNs, ±∞, ±0,
    /// subnormals).
    @Test void halfTensorsConvertEveryBitPatternAcrossBlocks() throws IOException {
        int n = 65536 + 1000;
        byte[] data = new byte[2 * n];
        for (int i = 0; i < n; i++) { data[2 * i] = (byte) (i * 7919); data[2 * i + 1] = (byte) ((i * 7919) >>> 8); }
        String json = "{\"b\":{\"dtype\":\"BF16\",\"shape\":[" + n + "],\"data_offsets\":[0," + 2 * n + "]},"
                + "\"h\":{\"dtype\":\"F16\",\"shape\":[" + n + "],\"data_offsets\":[" + 2 * n + "," + 4 * n + "]}}";
        byte[] h = json.getBytes(StandardCharsets.UTF_8);
        ByteBuffer b = ByteBuffer.allocate(8 + h.length + 4 * n).order(ByteOrder.LITTLE_ENDIAN);
        b.putLong(h.length).put(h).put(data).put(data);
        Path p = tmp.resolve("half.safetensors");
        Files.write(p, b.array());
        try (SafeTensors st = SafeTensors.open(p)) {
            float[] bf = new float[n + 3], f16 = new float[n + 3];
            st.readFloats("b", bf, 3);
            st.readFloats("h", f16, 3);
            for (int i = 0; i < n; i++) {
                int bits = (i * 7919) & 0xFFFF;
                assertEquals(bits << 16, Float.floatToRawIntBits(bf[3 + i]), "bf16 value " + i + " (bits " + Integer.toHexString(bits) + ")");
                assertEquals(Float.floatToRawIntBits(Float.float16ToFloat((short) bits)), Float.floatToRawIntBits(f16[3 + i]), "f16 value " + i);
            }
            assertEquals(0f, bf[0]);
        }
    }

    @Test void truncatedFile() throws IOException {
        byte[] good = Files.readAllBytes(file(ONE, REAL, 8));
        Path p = tmp.resolve("cut.safetensors");
        Files.write(p, java.util.Arrays.copyOf(good, good.length - 3));
        fails(FormatException.class, p, "truncated");
        Files.write(p, java.util.Arrays.copyOf(good, 5));
        fails(FormatException.class, p, "too short");
    }

    @Test void headerLengthTooBig() throws IOException {
        fails(FormatException.class, file(ONE, 1L << 40, 8), "header length");
        fails(FormatException.class, file(ONE, -5, 8), "header length");  // 2^64 - 5 read as unsigned
        fails(FormatException.class, file(ONE, 0, 8), "header length");
        Path sparse = file(ONE, Header.MAX_HEADER + 1, 8);
        try (var raf = new java.io.RandomAccessFile(sparse.toFile(), "rw")) { raf.setLength(Header.MAX_HEADER + 64); }
        fails(FormatException.class, sparse, "exceeds the format's limit");
    }

    @Test void overlappingOffsets() throws IOException {
        String json = "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                + "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}";
        fails(FormatException.class, file(json, REAL, 12), "'b'", "overlaps");
    }

    @Test void gapAndTrailingBytesAndWrongSize() throws IOException {
        fails(FormatException.class, file("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", REAL, 12), "gap");
        fails(FormatException.class, file(ONE, REAL, 9), "trailing");
        fails(FormatException.class, file("{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", REAL, 8), "needs 12 bytes");
    }

    @ParameterizedTest
    @ValueSource(strings = {"{\"a\":", "[1,2]", "{\"a\":1}", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2]}}",
            "{\"a\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}",
            "{\"a\":{\"dtype\":\"F32\",\"shape\":[2.5],\"data_offsets\":[0,8]}}",
            "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0]}}",
            "{\"a\":{\"dtype\":\"Q4\",\"shape\":[2],\"data_offsets\":[0,8]}}",
            "{\"__metadata__\":{\"n\":1}," + "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}",
            "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}",
            "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}} x"})
    void badHeaderIsFormatException(String json) throws IOException {
        fails(FormatException.class, file(json, REAL, 8));
    }

    @Test void headerNotStartingWithBrace() throws IOException {
        fails(FormatException.class, file(" " + ONE, REAL, 8), "'{'");
    }

    @Test void paddedHeaderAndScalarsAndEmptyTensorsAreValid() throws IOException {
        String json = "{\"s\":{\"dtype\":\"I64\",\"shape\":[],\"data_offsets\":[0,8]},"
                + "\"e\":{\"dtype\":\"BF16\",\"shape\":[0,4],\"data_offsets\":[8,8]}}   ";
        try (SafeTensors st = SafeTensors.open(file(json, REAL, 8))) {
            assertEquals(1, st.info("s").numel());
            assertEquals(0, st.bytes("e").byteSize());
            assertEquals(0, st.readFloats("e").length);
        }
    }

    @Test void f8IsUnsupportedWithAdvice() throws IOException {
        String json = "{\"w\":{\"dtype\":\"F8_E4M3\",\"shape\":[8],\"data_offsets\":[0,8]}}";
        fails(UnsupportedModelException.class, file(json, REAL, 8), "'w'", "F8_E4M3", "convert");
    }

    @Test void integerTensorsAreRawBytesAndNotFloats() throws IOException {
        String json = "{\"i\":{\"dtype\":\"I32\",\"shape\":[2],\"data_offsets\":[0,8]}}";
        Path p = file(json, REAL, 8);
        try (SafeTensors st = SafeTensors.open(p)) {
            assertEquals(DType.I32, st.info("i").dtype());
            assertEquals(8, st.bytes("i").byteSize());
            var e = assertThrows(FormatException.class, () -> st.readFloats("i"));
            assertTrue(e.getMessage().contains("'i'") && e.getMessage().contains("I32"), e.getMessage());
            assertThrows(FormatException.class, () -> st.info("missing"));
        }
    }

    /// Both shared models: names and shapes against config.json, every F32 tensor's floats equal its raw bytes.
    @Tag("slow")
    @ParameterizedTest
    @ValueSource(strings = {"tinystories-656k", "stories260K-hf"})
    void realModels(String model) throws IOException {
        Path dir = Shared.require("models/" + model);
        JsonNode cfg = new ObjectMapper().readTree(dir.resolve("config.json").toFile());
        long hidden = cfg.get("hidden_size").asLong(), ffn = cfg.get("intermediate_size").asLong();
        long vocab = cfg.get("vocab_size").asLong(), layers = cfg.get("num_hidden_layers").asLong();
        long kvDim = cfg.get("num_key_value_heads").asLong() * (cfg.has("head_dim") ? cfg.get("head_dim").asLong()
                : hidden / cfg.get("num_attention_heads").asLong());
        try (SafeTensors st = SafeTensors.open(dir.resolve("model.safetensors"))) {
            assertEquals(2 + 9 * layers, st.tensors().size(), "norm + one embedding/head + 9 per layer");
            String emb = st.contains("lm_head.weight") ? "lm_head.weight" : "model.embed_tokens.weight";
            assertArrayEquals(new long[]{vocab, hidden}, st.info(emb).shape());
            assertArrayEquals(new long[]{hidden}, st.info("model.norm.weight").shape());
            for (int l = 0; l < layers; l++) {
                String p = "model.layers." + l + ".";
                assertArrayEquals(new long[]{hidden, hidden}, st.info(p + "self_attn.q_proj.weight").shape());
                assertArrayEquals(new long[]{kvDim, hidden}, st.info(p + "self_attn.k_proj.weight").shape());
                assertArrayEquals(new long[]{kvDim, hidden}, st.info(p + "self_attn.v_proj.weight").shape());
                assertArrayEquals(new long[]{ffn, hidden}, st.info(p + "mlp.gate_proj.weight").shape());
                assertArrayEquals(new long[]{hidden, ffn}, st.info(p + "mlp.down_proj.weight").shape());
            }
            byte[] all = Files.readAllBytes(dir.resolve("model.safetensors"));
            long dataStart = 8 + ByteBuffer.wrap(all).order(ByteOrder.LITTLE_ENDIAN).getLong(0);
            for (TensorInfo t : st.tensors().values()) {
                assertEquals(DType.F32, t.dtype());
                float[] f = st.readFloats(t.name());
                float[] g = new float[f.length + 3];
                st.readFloats(t.name(), g, 3);
                ByteBuffer raw = ByteBuffer.wrap(all, (int) (dataStart + t.begin()), (int) (t.end() - t.begin())).order(ByteOrder.LITTLE_ENDIAN);
                for (int i = 0; i < f.length; i++) {
                    int bits = raw.getInt();
                    if (Float.floatToRawIntBits(f[i]) != bits || Float.floatToRawIntBits(g[i + 3]) != bits)
                        fail(t.name() + "[" + i + "]: read " + f[i] + " but the file holds bits " + Integer.toHexString(bits));
                }
                assertArrayEquals(st.bytes(t.name()).toArray(ValueLayout.JAVA_BYTE),
                        java.util.Arrays.copyOfRange(all, (int) (dataStart + t.begin()), (int) (dataStart + t.end())));
            }
        }
    }
}
