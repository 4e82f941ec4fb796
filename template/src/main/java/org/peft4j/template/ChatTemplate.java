package org.peft4j.template;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import org.peft4j.core.Peft4jException;

import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Clock;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;

/// A Hugging Face chat template (`chat_template` in `tokenizer_config.json`) rendered exactly as transformers'
/// `apply_chat_template(..., tokenize=False)` renders it: Jinja2 with `trim_blocks`, `lstrip_blocks`,
/// `raise_exception`, `strftime_now` and `tojson` = `json.dumps(ensure_ascii=False)`. Templates are checked byte for
/// byte against Python jinja2 (`reference/render_chat_templates.py`). Immutable and thread-safe.
///
/// ```java
/// ChatTemplate t = ChatTemplate.fromTokenizerConfig(Path.of("model/tokenizer_config.json"));
/// String prompt = t.render(List.of(ChatMessage.user("Hi")), true, Map.of());
/// ```
public final class ChatTemplate {
    private static final ObjectMapper JSON = new ObjectMapper();

    private final String source;
    private final String bosToken; // null when the model has none
    private final String eosToken;
    private final Clock clock;
    private final java.time.Duration timeLimit;

    /// How long one render may take by default: real templates render in milliseconds; a template from a stranger
    /// may loop for ever (or for 10^9 iterations), and is stopped with an error after this.
    public static final java.time.Duration DEFAULT_TIME_LIMIT = java.time.Duration.ofSeconds(10);

    private ChatTemplate(String source, String bosToken, String eosToken, Clock clock) {
        this(source, bosToken, eosToken, clock, DEFAULT_TIME_LIMIT);
    }

    private ChatTemplate(String source, String bosToken, String eosToken, Clock clock, java.time.Duration timeLimit) {
        this.source = Objects.requireNonNull(source, "source");
        this.bosToken = bosToken;
        this.eosToken = eosToken;
        this.clock = Objects.requireNonNull(clock, "clock");
        this.timeLimit = Objects.requireNonNull(timeLimit, "timeLimit");
    }

    /// A template from its Jinja source, without special tokens (`bos_token`/`eos_token` are then undefined unless
    /// given as extra variables).
    public static ChatTemplate of(String source) { return new ChatTemplate(source, null, null, Clock.systemDefaultZone()); }

    /// A template from its Jinja source with the model's special tokens (null for none).
    public static ChatTemplate of(String source, String bosToken, String eosToken) {
        return new ChatTemplate(source, bosToken, eosToken, Clock.systemDefaultZone());
    }

    /// The fallback for models without a chat template (base models): each message on its own line as
    /// `Role: content` (the role capitalised: `System:`, `User:`, `Assistant:`), then `Assistant: ` when a
    /// generation prompt is asked for. For example system + user with a generation prompt gives
    /// `"System: Be brief.\nUser: Hi\nAssistant: "`. No special tokens are inserted.
    public static ChatTemplate plain() {
        try (InputStream in = ChatTemplate.class.getResourceAsStream("plain.jinja")) {
            return of(new String(Objects.requireNonNull(in, "plain.jinja").readAllBytes(), StandardCharsets.UTF_8));
        } catch (IOException e) {
            throw new Peft4jException("Cannot read the built-in plain chat template: " + e.getMessage(), e);
        }
    }

    /// Reads `chat_template` and the `bos_token`/`eos_token` of a Hugging Face `tokenizer_config.json`. The template
    /// may be a string or a list of `{name, template}` (the one named `default` is taken, else the first); a token may
    /// be a string or an AddedToken object `{content: ...}`. If the file has no template, a `chat_template.jinja`
    /// beside it is used.
    public static ChatTemplate fromTokenizerConfig(Path tokenizerConfigJson) {
        JsonNode root;
        try {
            root = JSON.readTree(tokenizerConfigJson.toFile());
        } catch (IOException e) {
            throw new Peft4jException.FormatException("Cannot parse " + tokenizerConfigJson + " as JSON: "
                    + e.getMessage() + "; it must be a Hugging Face tokenizer_config.json", e);
        }
        if (root == null || !root.isObject()) throw new Peft4jException.FormatException(tokenizerConfigJson
                + " is not a JSON object; it must be a Hugging Face tokenizer_config.json");
        String source = templateSource(root.get("chat_template"), tokenizerConfigJson);
        if (source == null) {
            Path beside = tokenizerConfigJson.resolveSibling("chat_template.jinja");
            if (!Files.exists(beside)) throw new Peft4jException.ConfigException(tokenizerConfigJson
                    + " has no \"chat_template\" and there is no chat_template.jinja beside it; "
                    + "name a LLaMA-Factory template instead (--template NAME, or template: NAME in a config), or add a chat_template.jinja");
            try {
                source = Files.readString(beside);
            } catch (IOException e) {
                throw new Peft4jException("Cannot read " + beside + ": " + e.getMessage(), e);
            }
        }
        return of(source, token(root.get("bos_token")), token(root.get("eos_token")));
    }

    private static String templateSource(JsonNode node, Path file) {
        if (node == null || node.isNull()) return null;
        if (node.isTextual()) return node.asText();
        if (node.isArray() && !node.isEmpty()) {
            JsonNode chosen = node.get(0);
            for (JsonNode t : node) if ("default".equals(t.path("name").asText())) chosen = t;
            if (chosen.path("template").isTextual()) return chosen.get("template").asText();
        }
        throw new Peft4jException.FormatException("\"chat_template\" in " + file + " must be a string or a list of "
                + "{\"name\", \"template\"} objects, got: " + abbreviate(node.toString()));
    }

    private static String token(JsonNode node) {
        if (node == null || node.isNull()) return null;
        if (node.isTextual()) return node.asText();
        JsonNode content = node.get("content");
        return content != null && content.isTextual() ? content.asText() : null;
    }

    private static String abbreviate(String s) { return s.length() > 80 ? s.substring(0, 77) + "..." : s; }

    /// The same template with `strftime_now` reading `clock` (tests and reproducible prompts pin the date).
    public ChatTemplate withClock(Clock clock) { return new ChatTemplate(source, bosToken, eosToken, clock, timeLimit); }

    /// The same template with another time limit per render ([#DEFAULT_TIME_LIMIT] unless set). The output is
    /// bounded too: 8 Mi characters (and strings, lists and maps it builds), past which rendering fails.
    public ChatTemplate withTimeLimit(java.time.Duration limit) {
        if (limit.isNegative() || limit.isZero()) throw new IllegalArgumentException("time limit must be positive: " + limit);
        return new ChatTemplate(source, bosToken, eosToken, clock, limit);
    }

    public String source() { return source; }

    public String bosToken() { return bosToken; }

    public String eosToken() { return eosToken; }

    /// [#render(List, boolean, Map)] without extra variables.
    public String render(List<ChatMessage> messages, boolean addGenerationPrompt) {
        return render(messages, addGenerationPrompt, Map.of());
    }

    /// Renders the conversation as transformers does. Variables, later ones overriding earlier: `messages`,
    /// `tools` (null unless given in `extraVariables`), `documents` (null), `add_generation_prompt`, `bos_token`,
    /// `eos_token`, then `extraVariables` (e.g. `tools`: a list of JSON-schema maps, `date_string`,
    /// `enable_thinking`, `tools_in_user_message`, `builtin_tools`). Values are plain Java: Map, List, String,
    /// Number, Boolean, null.
    ///
    /// @throws ChatTemplateException when the template calls `raise_exception` (e.g. non-alternating roles)
    /// @throws Peft4jException.FormatException when the template cannot be parsed or evaluated
    public String render(List<ChatMessage> messages, boolean addGenerationPrompt, Map<String, Object> extraVariables) {
        List<Map<String, Object>> dicts = new ArrayList<>(messages.size());
        for (ChatMessage m : messages) dicts.add(m.toTemplateMap());
        Map<String, Object> vars = new HashMap<>();
        vars.put("messages", dicts);
        vars.put("tools", null);
        vars.put("documents", null);
        vars.put("add_generation_prompt", addGenerationPrompt);
        if (bosToken != null) vars.put("bos_token", bosToken);
        if (eosToken != null) vars.put("eos_token", eosToken);
        vars.putAll(extraVariables);
        return Jinja.render(source, vars, clock, timeLimit);
    }
}
