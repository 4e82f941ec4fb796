package org.peft4j.train.data;

import com.fasterxml.jackson.databind.JsonNode;

/// Python's `json.dumps(x, ensure_ascii=False)` for the strings LLaMA-Factory builds from tool calls: separators
/// `", "` and `": "`, key order kept, non-ASCII unescaped. Floats print as Java does, which differs from Python's repr
/// only for exponents (`1e-05` vs `1.0E-5`); tool arguments in the demo sets have none.
final class PyJson {
    private PyJson() {}

    static String dumps(JsonNode n) {
        StringBuilder sb = new StringBuilder();
        write(sb, n);
        return sb.toString();
    }

    private static void write(StringBuilder sb, JsonNode n) {
        switch (n.getNodeType()) {
            case OBJECT -> {
                sb.append('{');
                boolean first = true;
                for (var e : n.properties()) {
                    if (!first) sb.append(", ");
                    first = false;
                    string(sb, e.getKey());
                    sb.append(": ");
                    write(sb, e.getValue());
                }
                sb.append('}');
            }
            case ARRAY -> {
                sb.append('[');
                for (int i = 0; i < n.size(); i++) {
                    if (i > 0) sb.append(", ");
                    write(sb, n.get(i));
                }
                sb.append(']');
            }
            case STRING -> string(sb, n.textValue());
            case NUMBER -> sb.append(n.isIntegralNumber() ? n.bigIntegerValue().toString() : Double.toString(n.doubleValue()));
            case BOOLEAN -> sb.append(n.booleanValue() ? "true" : "false");
            case NULL, MISSING -> sb.append("null");
            default -> throw new IllegalArgumentException("not JSON data: " + n.getNodeType());
        }
    }

    private static void string(StringBuilder sb, String s) {
        sb.append('"');
        for (int i = 0; i < s.length(); i++) {
            char c = s.charAt(i);
            switch (c) {
                case '"' -> sb.append("\\\"");
                case '\\' -> sb.append("\\\\");
                case '\n' -> sb.append("\\n");
                case '\r' -> sb.append("\\r");
                case '\t' -> sb.append("\\t");
                case '\b' -> sb.append("\\b");
                case '\f' -> sb.append("\\f");
                default -> {
                    if (c < 0x20) sb.append(String.format("\\u%04x", (int) c));
                    else sb.append(c);
                }
            }
        }
        sb.append('"');
    }
}
