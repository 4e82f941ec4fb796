package org.peft4j.tokenizer;

import com.fasterxml.jackson.databind.JsonNode;
import org.peft4j.core.Peft4jException.UnsupportedModelException;

import java.io.ByteArrayOutputStream;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;

/// The `decoder` of a tokenizer.json: a chain of steps over the token strings, joined at the end.
/// Reference: HF tokenizers `decoders/` (`decode_chain`).
sealed interface TokenDecoder {
    List<String> apply(List<String> tokens);

    static String join(TokenDecoder d, List<String> tokens) {
        return String.join("", d == null ? tokens : d.apply(tokens));
    }

    record Sequence(List<TokenDecoder> steps) implements TokenDecoder {
        public List<String> apply(List<String> tokens) {
            for (TokenDecoder d : steps) tokens = d.apply(tokens);
            return tokens;
        }
    }

    /// Table chars back to bytes, then lossy UTF-8.
    record ByteLevelDecode() implements TokenDecoder {
        public List<String> apply(List<String> tokens) {
            ByteArrayOutputStream out = new ByteArrayOutputStream();
            for (String t : tokens) ByteLevel.decodeInto(t, out);
            return List.of(out.toString(StandardCharsets.UTF_8));
        }
    }

    record Replace(String pattern, String content) implements TokenDecoder {
        public List<String> apply(List<String> tokens) {
            List<String> out = new ArrayList<>(tokens.size());
            for (String t : tokens) out.add(t.replace(pattern, content));
            return out;
        }
    }

    /// Runs of `<0xAB>` tokens become their UTF-8 text; an invalid run becomes one U+FFFD per byte.
    record ByteFallback() implements TokenDecoder {
        public List<String> apply(List<String> tokens) {
            List<String> out = new ArrayList<>(tokens.size());
            ByteArrayOutputStream bytes = new ByteArrayOutputStream();
            for (String t : tokens) {
                int b = byteOf(t);
                if (b >= 0) {
                    bytes.write(b);
                    continue;
                }
                flush(bytes, out);
                out.add(t);
            }
            flush(bytes, out);
            return out;
        }

        static int byteOf(String t) {
            if (t.length() != 6 || !t.startsWith("<0x") || t.charAt(5) != '>') return -1;
            int hi = Character.digit(t.charAt(3), 16), lo = Character.digit(t.charAt(4), 16);
            return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
        }

        private static void flush(ByteArrayOutputStream bytes, List<String> out) {
            if (bytes.size() == 0) return;
            byte[] b = bytes.toByteArray();
            bytes.reset();
            try {
                out.add(StandardCharsets.UTF_8.newDecoder().decode(java.nio.ByteBuffer.wrap(b)).toString());
            } catch (java.nio.charset.CharacterCodingException e) {
                for (int i = 0; i < b.length; i++) out.add("\uFFFD");
            }
        }
    }

    record Fuse() implements TokenDecoder {
        public List<String> apply(List<String> tokens) { return List.of(String.join("", tokens)); }
    }

    /// Removes up to `start` leading and `stop` trailing `content` chars from every token.
    record Strip(char content, int start, int stop) implements TokenDecoder {
        public List<String> apply(List<String> tokens) {
            List<String> out = new ArrayList<>(tokens.size());
            for (String t : tokens) {
                int a = 0, b = t.length();
                while (a < start && a < b && t.charAt(a) == content) a++;
                int cut = 0;
                while (cut < stop && b > a && t.charAt(b - 1) == content) { b--; cut++; }
                out.add(t.substring(a, b));
            }
            return out;
        }
    }

    /// `replacement` → space, except in the first token where it is dropped unless `prepend_scheme` is never.
    record Metaspace(char replacement, boolean prepend) implements TokenDecoder {
        public List<String> apply(List<String> tokens) {
            List<String> out = new ArrayList<>(tokens.size());
            for (int i = 0; i < tokens.size(); i++) {
                String t = tokens.get(i);
                out.add(i == 0 && prepend ? t.replace(String.valueOf(replacement), "") : t.replace(replacement, ' '));
            }
            return out;
        }
    }

    /// `null` for a JSON null or missing node.
    static TokenDecoder parse(JsonNode n) {
        if (n == null || n.isNull()) return null;
        String type = n.path("type").asText();
        return switch (type) {
            case "Sequence" -> {
                List<TokenDecoder> steps = new ArrayList<>();
                for (JsonNode c : n.path("decoders")) steps.add(parse(c));
                yield new Sequence(List.copyOf(steps));
            }
            case "ByteLevel" -> new ByteLevelDecode();
            case "Replace" -> {
                JsonNode p = n.path("pattern");
                if (!p.has("String")) throw new UnsupportedModelException("tokenizer.json Replace decoder with a regex pattern "
                        + p + " is not supported; only {\"String\": ...} patterns are");
                yield new Replace(p.get("String").asText(), n.path("content").asText());
            }
            case "ByteFallback" -> new ByteFallback();
            case "Fuse" -> new Fuse();
            case "Strip" -> new Strip(n.path("content").asText(" ").charAt(0), n.path("start").asInt(0), n.path("stop").asInt(0));
            case "Metaspace" -> {
                String scheme = n.has("prepend_scheme") ? n.get("prepend_scheme").asText()
                        : n.path("add_prefix_space").asBoolean(true) ? "always" : "never";
                yield new Metaspace(n.path("replacement").asText("\u2581").charAt(0), !scheme.equals("never"));
            }
            default -> throw new UnsupportedModelException("tokenizer.json decoder type '" + type
                    + "' is not supported; supported: Sequence, ByteLevel, Replace, ByteFallback, Fuse, Strip, Metaspace");
        };
    }
}
