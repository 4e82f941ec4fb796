package org.peft4j.quant;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;
import org.peft4j.core.DType;
import org.peft4j.testkit.Shared;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.Base64;
import java.util.HexFormat;

import static org.junit.jupiter.api.Assertions.*;

/// Every number in `docs/vectors/nf4_vectors.json` (made by an independent numpy program and checked against
/// bitsandbytes' own C++ code), compared bit for bit: code books, thresholds, dynamic maps, and per case the packed
/// codes, absmax, plain dequantization, and the whole double-quantization chain down to bf16 weights.
class Nf4VectorsTest {
    static JsonNode v;

    @BeforeAll
    static void load() throws IOException {
        v = new ObjectMapper().readTree(Shared.require("docs/vectors/nf4_vectors.json").toFile());
    }

    static int[] hexBits(JsonNode arr) {
        int[] out = new int[arr.size()];
        for (int i = 0; i < out.length; i++) out[i] = Integer.parseUnsignedInt(arr.get(i).asText(), 16);
        return out;
    }

    static byte[] b64(JsonNode n) { return Base64.getDecoder().decode(n.asText()); }

    static float[] f32(JsonNode n) {
        ByteBuffer b = ByteBuffer.wrap(b64(n)).order(ByteOrder.LITTLE_ENDIAN);
        float[] out = new float[b.remaining() / 4];
        for (int i = 0; i < out.length; i++) out[i] = b.getFloat();
        return out;
    }

    /// Bitwise float equality with the first differing index, both values and their bits in the message.
    static void assertBits(String what, float[] expected, float[] actual) {
        assertEquals(expected.length, actual.length, what + ": length");
        int bad = 0, first = -1;
        for (int i = 0; i < expected.length; i++)
            if (Float.floatToRawIntBits(expected[i]) != Float.floatToRawIntBits(actual[i])) { if (first < 0) first = i; bad++; }
        if (bad > 0) fail(String.format("%s: %d of %d differ; first at [%d]: expected %s (%08x) actual %s (%08x)", what, bad,
                expected.length, first, expected[first], Float.floatToRawIntBits(expected[first]), actual[first], Float.floatToRawIntBits(actual[first])));
    }

    static void assertBits(String what, int[] expectedBits, float[] actual) {
        float[] e = new float[expectedBits.length];
        for (int i = 0; i < e.length; i++) e[i] = Float.intBitsToFloat(expectedBits[i]);
        assertBits(what, e, actual);
    }

    static void assertBytes(String what, byte[] expected, byte[] actual) {
        int i = java.util.Arrays.mismatch(expected, actual);
        if (i >= 0) fail(what + ": differ first at byte " + i + " (lengths " + expected.length + "/" + actual.length + "): expected "
                + HexFormat.of().formatHex(expected, i, Math.min(expected.length, i + 8)) + " actual "
                + HexFormat.of().formatHex(actual, i, Math.min(actual.length, i + 8)));
    }

    @Test
    void codeBooksThresholdsAndDynamicMaps() {
        assertBits("nf4 code", hexBits(v.get("nf4_code_f32_hex")), QuantType.NF4.code());
        assertBits("nf4 thresholds", hexBits(v.get("nf4_thresholds_f32_hex")), QuantType.NF4.thresholds());
        assertBits("fp4 code", hexBits(v.get("fp4_code_f32_hex")), QuantType.FP4.code());
        assertBits("fp4 thresholds", hexBits(v.get("fp4_thresholds_f32_hex")), QuantType.FP4.thresholds());
        assertBits("dynamic map signed", hexBits(v.get("dynamic_map_signed_f32_hex")), DynamicMap.signed());
        assertBits("dynamic map unsigned", hexBits(v.get("dynamic_map_unsigned_f32_hex")), DynamicMap.unsigned());
    }

    /// Expected strings printed by CPython's `repr`.
    @Test
    void pythonFloatRepr() {
        double[] v = {1.5e-05, 0.0001, 1e16, 123.0, 1e15, 0.1, -2.5e-07, 0.0, -0.0, 1234567890123456.0, 12345678901234567.0,
                5e-324, 1.7976931348623157e308, 3.0000001192092896};
        String[] py = {"1.5e-05", "0.0001", "1e+16", "123.0", "1000000000000000.0", "0.1", "-2.5e-07", "0.0", "-0.0",
                "1234567890123456.0", "1.2345678901234568e+16", "5e-324", "1.7976931348623157e+308", "3.0000001192092896"};
        for (int i = 0; i < v.length; i++) assertEquals(py[i], Nf4Tensor.pythonRepr(v[i]), "repr(" + v[i] + ")");
    }

    @Test
    void thresholdTiesGoToTheLowerCodeAndNanToZero() {
        float[] t = QuantType.NF4.thresholds();
        for (int i = 0; i < t.length; i++) {
            assertEquals(i, QuantType.NF4.quantize(t[i]), "on threshold " + i);
            assertEquals(i + 1, QuantType.NF4.quantize(Math.nextUp(t[i])), "just above threshold " + i);
        }
        assertEquals(0, QuantType.NF4.quantize(Float.NaN));
        assertEquals(0, QuantType.FP4.quantize(-0f), "-0 has no sign bit");
        assertEquals(0b1011, QuantType.FP4.quantize(-1f));
    }

    @ParameterizedTest
    @ValueSource(strings = {"small_64x64_nf4", "main_64x272_nf4", "edge_1x200_nf4", "odd_1x65_nf4", "small_64x64_fp4"})
    void caseIsBitExact(String name) {
        JsonNode c = null;
        for (JsonNode x : v.get("cases")) if (x.get("name").asText().equals(name)) c = x;
        assertNotNull(c, "case " + name);
        QuantType type = QuantType.of(c.get("quant_type").asText());
        long[] shape = {c.get("shape").get(0).asLong(), c.get("shape").get(1).asLong()};
        int bs = c.get("blocksize").asInt();
        float[] x = f32(c.get("input_f32_b64"));
        assertEquals(c.get("n").asInt(), x.length);

        Nf4Tensor plain = Nf4Tensor.quantize(type, x, shape, bs, false);
        assertBytes(name + " packed", b64(c.get("packed_u8_b64")), plain.packedBytes());
        assertEquals(c.get("packed_first32_hex").asText(), HexFormat.of().formatHex(plain.packedBytes(), 0, 32));
        assertEquals(c.get("n_blocks").asInt(), plain.blocks());
        assertBits(name + " absmax", f32(c.get("absmax_f32_b64")), plain.absmaxValues());
        JsonNode head = c.get("readable_head").get("codes_first16");
        if (head != null) for (int i = 0; i < head.size(); i++) assertEquals(head.get(i).asInt(), plain.code(i), "code[" + i + "]");
        float[] out = new float[x.length];
        plain.dequantize(out);
        assertBits(name + " dequant plain", f32(c.get("dequant_plain_f32_b64")), out);

        JsonNode dq = c.get("double_quant");
        Nf4Tensor nested = Nf4Tensor.quantize(type, x, shape, bs, true);
        assertBytes(name + " packed (dq)", plain.packedBytes(), nested.packedBytes());
        var a = (Nf4Tensor.Absmax.Nested) nested.absmax();
        assertEquals(Integer.parseUnsignedInt(dq.get("offset_f32_hex").asText(), 16), Float.floatToRawIntBits(a.offset()), name + " offset");
        assertEquals(Double.parseDouble(dq.get("offset_repr").asText()), (double) a.offset(), name + " offset repr");
        float[] absmax = plain.absmaxValues(), centered = new float[absmax.length];
        for (int i = 0; i < absmax.length; i++) centered[i] = absmax[i] - a.offset();
        assertBits(name + " centered absmax", f32(dq.get("centered_absmax_f32_b64")), centered);
        assertBytes(name + " qabsmax", b64(dq.get("qabsmax_u8_b64")), a.codeBytes());
        assertBits(name + " nested absmax", f32(dq.get("nested_absmax_f32_b64")), a.nestedAbsmax());
        assertEquals(dq.get("quant_state_json").asText(), nested.quantStateJson("float32"), name + " quant_state JSON");
        assertBits(name + " absmax dequant", f32(dq.get("absmax_dequant_f32_b64")), nested.absmaxValues());
        nested.dequantize(out);
        assertBits(name + " dequant nested", f32(dq.get("dequant_f32_b64")), out);
        ByteBuffer bf = ByteBuffer.wrap(b64(dq.get("dequant_bf16_b64"))).order(ByteOrder.LITTLE_ENDIAN);
        for (int i = 0; i < out.length; i++) {
            short want = bf.getShort();
            if (want != DType.floatToBf16(out[i])) fail(name + " bf16[" + i + "]: expected " + Integer.toHexString(want & 0xffff)
                    + " actual " + Integer.toHexString(DType.floatToBf16(out[i]) & 0xffff));
        }

        // a record rebuilt from the stored pieces (as a checkpoint reader would) dequantizes identically, by rows too
        var stored = new Nf4Tensor(type, shape, bs, b64(c.get("packed_u8_b64")), new Nf4Tensor.Absmax.Nested(
                b64(dq.get("qabsmax_u8_b64")), f32(dq.get("nested_absmax_f32_b64")), DynamicMap.signed(),
                Float.intBitsToFloat(Integer.parseUnsignedInt(dq.get("offset_f32_hex").asText(), 16)), 256));
        int k = (int) shape[1], rows = (int) shape[0];
        float[] tiled = new float[x.length], tile = new float[3 * k];
        for (int r = 0; r < rows; r += 3) {
            int to = Math.min(rows, r + 3);
            stored.dequantizeRows(r, to, tile);
            System.arraycopy(tile, 0, tiled, r * k, (to - r) * k);
        }
        assertBits(name + " dequantizeRows", f32(dq.get("dequant_f32_b64")), tiled);
    }
}
