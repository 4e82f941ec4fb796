package org.peft4j.formats.json;

import com.fasterxml.jackson.databind.ObjectMapper;
import org.junit.jupiter.api.Test;

import java.io.InputStream;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.assertEquals;

/// PyJson against text made by Python: `repr(float)` (python_float_repr.json from reference/lora_adapter_config.py,
/// plus literals) and `json.dumps` with each option the callers use.
class PyJsonTest {

    @Test
    void floatsAreFormattedAsPythonRepr() throws Exception {
        try (InputStream in = PyJsonTest.class.getResourceAsStream("/json/python_float_repr.json")) {
            for (var pair : new ObjectMapper().readTree(in)) {
                double d = Double.longBitsToDouble(Long.parseUnsignedLong(pair.get(0).asText(), 16));
                assertEquals(pair.get(1).asText(), PyJson.floatRepr(d), "repr of " + d);
            }
        }
        // Python: repr(x) for each value
        String[][] floats = {{"1e16", "1e+16"}, {"1e15", "1000000000000000.0"}, {"0.0001", "0.0001"}, {"0.00001", "1e-05"},
                {"1.5e-7", "1.5e-07"}, {"123456789012345678.0", "1.2345678901234568e+17"}, {"-2.0", "-2.0"},
                {"0.30000000000000004", "0.30000000000000004"}, {"100.0", "100.0"}, {"5e-324", "5e-324"},
                {"1.7976931348623157e308", "1.7976931348623157e+308"}};
        for (String[] f : floats) assertEquals(f[1], PyJson.floatRepr(Double.parseDouble(f[0])), f[0]);
    }

    @Test
    void indentSortKeysAndEnsureAscii() {
        Map<String, Object> inner = new LinkedHashMap<>();
        inner.put("b", null);
        Map<String, Object> v = new LinkedHashMap<>();
        v.put("c", "\u0001é😀\"");
        v.put("a", List.of(1, inner));
        // Python: json.dumps(v, ensure_ascii=True, indent=2, sort_keys=True)
        assertEquals("{\n  \"a\": [\n    1,\n    {\n      \"b\": null\n    }\n  ],\n  \"c\": \"\\u0001\\u00e9\\ud83d\\ude00\\\"\"\n}",
                PyJson.dumps(v, true, 2, null, null, true));
    }

    @Test
    void separators() {
        Map<String, Object> empty = new LinkedHashMap<>();
        empty.put("b", List.of());
        empty.put("a", Map.of());
        // Python: json.dumps({'b': [], 'a': {}}, separators=(',', ':'))
        assertEquals("{\"b\":[],\"a\":{}}", PyJson.dumps(empty, false, null, ",", ":", false));
    }

    @Test
    void jacksonTreeWithoutEnsureAscii() throws Exception {
        var n = new ObjectMapper().readTree("{\"a\":[1,2.5,\"x\\\"y\\n\"],\"b\":{\"ü\":null,\"t\":true}}");
        // Python: json.dumps(json.loads(s), ensure_ascii=False)
        assertEquals("{\"a\": [1, 2.5, \"x\\\"y\\n\"], \"b\": {\"ü\": null, \"t\": true}}", PyJson.dumps(n, false));
    }
}
