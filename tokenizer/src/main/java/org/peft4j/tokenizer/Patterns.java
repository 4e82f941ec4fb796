package org.peft4j.tokenizer;

import com.fasterxml.jackson.databind.JsonNode;
import org.peft4j.core.Peft4jException.FormatException;

import java.util.regex.Pattern;
import java.util.regex.PatternSyntaxException;

/// Compiles tokenizer.json `pattern` objects (`{"String": …}` or `{"Regex": …}`) to Java regexes.
/// Rust's Oniguruma classes (`\s`, `\p{L}`, `(?i:)`) are Unicode-aware, hence UNICODE_CHARACTER_CLASS and UNICODE_CASE.
final class Patterns {
    private Patterns() {}

    static final int FLAGS = Pattern.UNICODE_CHARACTER_CLASS | Pattern.UNICODE_CASE;

    static Pattern of(JsonNode pattern) {
        if (pattern.has("String")) return Pattern.compile(Pattern.quote(pattern.get("String").asText()));
        if (pattern.has("Regex")) {
            String re = pattern.get("Regex").asText();
            try {
                return Pattern.compile(re, FLAGS);
            } catch (PatternSyntaxException e) {
                throw new FormatException("tokenizer.json regex " + re + " does not compile as a Java regex: "
                        + e.getDescription() + "; report the tokenizer so the pattern can be translated", e);
            }
        }
        throw new FormatException("tokenizer.json pattern " + pattern + " has neither 'String' nor 'Regex'");
    }
}
