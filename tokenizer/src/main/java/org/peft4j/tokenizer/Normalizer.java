package org.peft4j.tokenizer;

import com.fasterxml.jackson.databind.JsonNode;
import org.peft4j.core.Peft4jException.UnsupportedModelException;

import java.util.ArrayList;
import java.util.List;
import java.util.regex.Pattern;

/// The `normalizer` of a tokenizer.json, applied to each stretch of text between added tokens.
/// Only the transformed string matters here (no offsets). Reference: HF tokenizers `normalizers/`.
sealed interface Normalizer {
    String apply(String s);

    record Sequence(List<Normalizer> steps) implements Normalizer {
        public String apply(String s) {
            for (Normalizer n : steps) s = n.apply(s);
            return s;
        }
    }

    /// Prepends only to non-empty text (`normalizers/prepend.rs`).
    record Prepend(String prefix) implements Normalizer {
        public String apply(String s) { return s.isEmpty() ? s : prefix + s; }
    }

    record Replace(Pattern pattern, String content) implements Normalizer {
        public String apply(String s) { return pattern.matcher(s).replaceAll(java.util.regex.Matcher.quoteReplacement(content)); }
    }

    record Unicode(java.text.Normalizer.Form form) implements Normalizer {
        public String apply(String s) { return java.text.Normalizer.normalize(s, form); }
    }

    record Lowercase() implements Normalizer {
        public String apply(String s) { return s.toLowerCase(java.util.Locale.ROOT); }
    }

    record Strip(boolean left, boolean right) implements Normalizer {
        public String apply(String s) { return left && right ? s.strip() : left ? s.stripLeading() : right ? s.stripTrailing() : s; }
    }

    /// `null` for a JSON null or missing node.
    static Normalizer parse(JsonNode n) {
        if (n == null || n.isNull()) return null;
        String type = n.path("type").asText();
        return switch (type) {
            case "Sequence" -> {
                List<Normalizer> steps = new ArrayList<>();
                for (JsonNode c : n.path("normalizers")) steps.add(parse(c));
                yield new Sequence(List.copyOf(steps));
            }
            case "Prepend" -> new Prepend(n.path("prepend").asText());
            case "Replace" -> new Replace(Patterns.of(n.path("pattern")), n.path("content").asText());
            case "NFC" -> new Unicode(java.text.Normalizer.Form.NFC);
            case "NFD" -> new Unicode(java.text.Normalizer.Form.NFD);
            case "NFKC" -> new Unicode(java.text.Normalizer.Form.NFKC);
            case "NFKD" -> new Unicode(java.text.Normalizer.Form.NFKD);
            case "Lowercase" -> new Lowercase();
            case "Strip" -> new Strip(n.path("strip_left").asBoolean(true), n.path("strip_right").asBoolean(true));
            default -> throw new UnsupportedModelException("tokenizer.json normalizer type '" + type
                    + "' is not supported; supported: Sequence, Prepend, Replace, NFC, NFD, NFKC, NFKD, Lowercase, Strip");
        };
    }
}
