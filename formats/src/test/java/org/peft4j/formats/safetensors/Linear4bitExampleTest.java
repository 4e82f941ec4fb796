package org.peft4j.formats.safetensors;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.peft4j.core.DType;
import org.peft4j.formats.safetensors.SafeTensors.Entry;
import org.peft4j.testkit.Shared;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Base64;
import java.util.List;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.*;

/// The complete `Linear4bit` checkpoint file of `nf4_vectors.json` (built by the independent vector generator per
/// specs.md §1.5 and §6.1): writing its six tensors, taken from the vectors' separate fields, gives the same bytes.
class Linear4bitExampleTest {
    @TempDir Path tmp;

    private static byte[] hexFloats(JsonNode arr) {
        ByteBuffer b = ByteBuffer.allocate(4 * arr.size()).order(ByteOrder.LITTLE_ENDIAN);
        for (JsonNode h : arr) b.putInt(Integer.parseUnsignedInt(h.asText(), 16));
        return b.array();
    }

    @Test
    void writerReproducesTheVectorFile() throws IOException {
        JsonNode v = new ObjectMapper().readTree(Shared.require("docs/vectors/nf4_vectors.json").toFile());
        JsonNode ex = v.get("safetensors_linear4bit_example");
        JsonNode c = v.get("cases").get(0);
        assertEquals("small_64x64_nf4", c.get("name").asText());
        JsonNode dq = c.get("double_quant");
        var b64 = Base64.getDecoder();
        String p = ex.get("prefix").asText() + "weight";
        byte[] state = ex.get("quant_state_json").asText().getBytes(StandardCharsets.UTF_8);
        List<Entry> entries = List.of(
                Entry.ofBytes(p + ".quant_state.bitsandbytes__nf4", DType.U8, new long[]{state.length}, state),
                Entry.ofBytes(p, DType.U8, new long[]{2048, 1}, b64.decode(c.get("packed_u8_b64").asText())),
                Entry.ofBytes(p + ".absmax", DType.U8, new long[]{64}, b64.decode(dq.get("qabsmax_u8_b64").asText())),
                Entry.ofBytes(p + ".quant_map", DType.F32, new long[]{16}, hexFloats(v.get("nf4_code_f32_hex"))),
                Entry.ofBytes(p + ".nested_absmax", DType.F32, new long[]{1}, b64.decode(dq.get("nested_absmax_f32_b64").asText())),
                Entry.ofBytes(p + ".nested_quant_map", DType.F32, new long[]{256}, hexFloats(v.get("dynamic_map_signed_f32_hex"))));
        Path out = tmp.resolve("linear4bit.safetensors");
        SafeTensors.write(out, entries, Map.of("format", "pt"));
        byte[] expected = b64.decode(ex.get("file_b64").asText());
        assertEquals(ex.get("file_size").asInt(), expected.length);
        byte[] actual = Files.readAllBytes(out);
        assertEquals(ex.get("header_json").asText().strip(), new String(actual, 8, (int) ByteBuffer.wrap(actual).order(ByteOrder.LITTLE_ENDIAN).getLong(0), StandardCharsets.UTF_8).strip());
        assertArrayEquals(expected, actual);
        try (SafeTensors st = SafeTensors.open(out)) {
            assertEquals(6, st.tensors().size());
            assertEquals(0.0f, st.readFloats(p + ".nested_quant_map")[127]);
        }
    }
}
