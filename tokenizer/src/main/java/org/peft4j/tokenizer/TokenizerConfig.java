package org.peft4j.tokenizer;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import org.peft4j.core.Peft4jException.FormatException;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;

/// The fields of Hugging Face `tokenizer_config.json` that peft4j uses; any of them may be null.
/// `chatTemplate` is the default template: the string, or the entry named "default" of a list of
/// `{name, template}`, or else the content of `chat_template.jinja` beside it.
public record TokenizerConfig(String bosToken, String eosToken, String padToken, String unkToken,
                              Boolean addBosToken, Boolean addEosToken, String chatTemplate) {

    public static final TokenizerConfig EMPTY = new TokenizerConfig(null, null, null, null, null, null, null);

    /// Reads `dir/tokenizer_config.json` (and `dir/chat_template.jinja`); EMPTY when neither exists.
    public static TokenizerConfig read(Path dir) {
        Path file = dir.resolve("tokenizer_config.json");
        Path jinja = dir.resolve("chat_template.jinja");
        String jinjaText = null;
        try {
            if (Files.exists(jinja)) jinjaText = Files.readString(jinja);
        } catch (IOException e) {
            throw new FormatException("Cannot read " + jinja + ": " + e.getMessage(), e);
        }
        if (!Files.exists(file)) return jinjaText == null ? EMPTY : new TokenizerConfig(null, null, null, null, null, null, jinjaText);
        JsonNode root;
        try {
            root = new ObjectMapper().readTree(file.toFile());
        } catch (IOException e) {
            throw new FormatException(file + " is not valid JSON (" + e.getMessage().lines().findFirst().orElse("") + "); re-download it from the model repository", e);
        }
        if (root == null || !root.isObject())
            throw new FormatException(file + " is not a JSON object; re-download it from the model repository");
        String template = template(root.get("chat_template"), file);
        return new TokenizerConfig(token(root.get("bos_token")), token(root.get("eos_token")), token(root.get("pad_token")),
                token(root.get("unk_token")), bool(root.get("add_bos_token")), bool(root.get("add_eos_token")),
                template != null ? template : jinjaText);
    }

    /// A special token given as a string or as `{"content": …}` (AddedToken form).
    private static String token(JsonNode n) {
        if (n == null || n.isNull()) return null;
        if (n.isTextual()) return n.asText();
        return n.has("content") ? n.get("content").asText() : null;
    }

    private static Boolean bool(JsonNode n) { return n == null || n.isNull() ? null : n.asBoolean(); }

    private static String template(JsonNode n, Path file) {
        if (n == null || n.isNull()) return null;
        if (n.isTextual()) return n.asText();
        if (n.isArray()) {
            for (JsonNode t : n) if ("default".equals(t.path("name").asText())) return t.path("template").asText();
            return n.isEmpty() ? null : n.get(0).path("template").asText();
        }
        throw new FormatException(file + ": chat_template must be a string or a list of {name, template}, got " + n.getNodeType());
    }
}
