package org.peft4j.formats.json;

import com.fasterxml.jackson.databind.JsonNode;

import java.math.BigDecimal;
import java.math.BigInteger;
import java.math.MathContext;
import java.math.RoundingMode;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collection;
import java.util.List;
import java.util.Map;

/// Python's `json.dumps`, byte for byte, for text that must equal what Python writes: chat templates' `tojson`,
/// LLaMA-Factory's tool strings, PEFT's `adapter_config.json`, the sharded-checkpoint index. Floats follow
/// `float.__repr__`. Reference: CPython `Lib/json/encoder.py` (`py_encode_basestring(_ascii)`, `_make_iterencode`),
/// `Objects/floatobject.c` (`float_repr`).
public final class PyJson {
    private PyJson() {}

    /// `json.dumps(value, ensure_ascii=ensureAscii)`: one line, separators `", "` and `": "`, keys in map order.
    public static String dumps(Object value, boolean ensureAscii) {
        return dumps(value, ensureAscii, null, null, null, false);
    }

    /// `json.dumps(value, ensure_ascii, indent, separators=(itemSep, keySep), sort_keys)`. `indent`: null for one
    /// line, else spaces per level. `itemSep`/`keySep`: null for Python's defaults (`", "`/`": "` without indent,
    /// `","`/`": "` with it). Values: null, Boolean, CharSequence, Float/Double/BigDecimal (as `repr(float)`), other
    /// Numbers (as integers), Map, Collection, Object[], Map.Entry (a 2-tuple), Jackson's JsonNode; anything else is
    /// written as the string of its `toString`.
    public static String dumps(Object value, boolean ensureAscii, Integer indent, String itemSep, String keySep, boolean sortKeys) {
        String items = itemSep != null ? itemSep : indent == null ? ", " : ",";
        String keys = keySep != null ? keySep : ": ";
        StringBuilder out = new StringBuilder();
        new Writer(out, ensureAscii, indent, items, keys, sortKeys).write(value, 0);
        return out.toString();
    }

    private record Writer(StringBuilder out, boolean ensureAscii, Integer indent, String itemSep, String keySep,
                          boolean sortKeys) {
        void write(Object v, int level) {
            switch (v) {
                case null -> out.append("null");
                case Boolean b -> out.append(b ? "true" : "false");
                case CharSequence s -> string(s.toString());
                case Float f -> out.append(floatRepr(f.doubleValue()));
                case Double d -> out.append(floatRepr(d));
                case BigDecimal d -> out.append(floatRepr(d.doubleValue()));
                case Number n -> out.append(n instanceof BigInteger bi ? bi.toString() : Long.toString(n.longValue()));
                case Map<?, ?> m -> object(m.entrySet(), level);
                case Collection<?> c -> array(c, level);
                case Object[] a -> array(Arrays.asList(a), level);
                case Map.Entry<?, ?> e -> array(Arrays.asList(e.getKey(), e.getValue()), level);
                case JsonNode n when n.isObject() -> object(n.properties(), level);
                case JsonNode n when n.isArray() -> array(n, level);
                case JsonNode n -> write(scalar(n), level);
                default -> string(String.valueOf(v));
            }
        }

        void object(Collection<? extends Map.Entry<?, ?>> m, int level) {
            if (m.isEmpty()) { out.append("{}"); return; }
            List<Map.Entry<?, ?>> entries = new ArrayList<>(m);
            if (sortKeys) entries.sort((a, b) -> String.valueOf(a.getKey()).compareTo(String.valueOf(b.getKey())));
            out.append('{');
            for (int i = 0; i < entries.size(); i++) {
                separator(i, level + 1);
                string(String.valueOf(entries.get(i).getKey()));
                out.append(keySep);
                write(entries.get(i).getValue(), level + 1);
            }
            newline(level);
            out.append('}');
        }

        void array(Iterable<?> c, int level) {
            if (!c.iterator().hasNext()) { out.append("[]"); return; }
            out.append('[');
            int i = 0;
            for (Object x : c) {
                separator(i++, level + 1);
                write(x, level + 1);
            }
            newline(level);
            out.append(']');
        }

        void separator(int i, int level) {
            if (i > 0) out.append(itemSep);
            newline(level);
        }

        void newline(int level) {
            if (indent != null) out.append('\n').append(" ".repeat(indent * level));
        }

        /// `"`, `\` and controls escaped (short forms `\n \r \t \b \f`), and with ensure_ascii all outside space..`~`,
        /// as six-character `u00e9` escapes of UTF-16 units (a surrogate pair for non-BMP characters).
        void string(String s) {
            out.append('"');
            for (int i = 0; i < s.length(); i++) {
                char c = s.charAt(i);
                switch (c) {
                    case '"' -> out.append("\\\"");
                    case '\\' -> out.append("\\\\");
                    case '\n' -> out.append("\\n");
                    case '\r' -> out.append("\\r");
                    case '\t' -> out.append("\\t");
                    case '\b' -> out.append("\\b");
                    case '\f' -> out.append("\\f");
                    default -> {
                        if (c < 0x20 || (ensureAscii && c > 0x7e)) out.append(String.format("\\u%04x", (int) c));
                        else out.append(c);
                    }
                }
            }
            out.append('"');
        }
    }

    private static Object scalar(JsonNode n) {
        if (n.isTextual()) return n.textValue();
        if (n.isIntegralNumber()) return n.bigIntegerValue();
        if (n.isNumber()) return n.doubleValue();
        if (n.isBoolean()) return n.booleanValue();
        if (n.isNull() || n.isMissingNode()) return null;
        throw new IllegalArgumentException("a " + n.getNodeType() + " node is not JSON data");
    }

    /// `repr(float)`: the shortest round-tripping digits, positional when -4 < decpt <= 16, else `d.dde±XX`;
    /// `NaN`, `Infinity`, `-Infinity` as json.dumps writes them.
    public static String floatRepr(double d) {
        if (Double.isNaN(d)) return "NaN";
        if (Double.isInfinite(d)) return d > 0 ? "Infinity" : "-Infinity";
        if (d == 0) return (1 / d < 0) ? "-0.0" : "0.0";
        BigDecimal bd = new BigDecimal(Double.toString(Math.abs(d))).stripTrailingZeros(); // shortest, but >= 2 digits
        if (bd.precision() == 2) { // Python's shortest may have 1 digit where Java keeps 2 (5e-324, Java 4.9E-324)
            BigDecimal one = new BigDecimal(Math.abs(d)).round(new MathContext(1, RoundingMode.HALF_EVEN));
            if (one.doubleValue() == Math.abs(d)) bd = one.stripTrailingZeros();
        }
        String digits = bd.unscaledValue().toString();
        int decpt = digits.length() - bd.scale(); // value = 0.digits × 10^decpt
        StringBuilder s = new StringBuilder(d < 0 ? "-" : "");
        if (decpt > -4 && decpt <= 16) {
            if (decpt <= 0) s.append("0.").append("0".repeat(-decpt)).append(digits);
            else if (decpt >= digits.length()) s.append(digits).append("0".repeat(decpt - digits.length())).append(".0");
            else s.append(digits, 0, decpt).append('.').append(digits, decpt, digits.length());
        } else {
            s.append(digits.charAt(0));
            if (digits.length() > 1) s.append('.').append(digits, 1, digits.length());
            int exp = decpt - 1;
            s.append(exp < 0 ? "e-" : "e+").append(String.format("%02d", Math.abs(exp)));
        }
        return s.toString();
    }
}
