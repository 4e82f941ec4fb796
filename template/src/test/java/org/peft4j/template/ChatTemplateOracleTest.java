package org.peft4j.template;

import com.fasterxml.jackson.core.type.TypeReference;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import org.junit.jupiter.api.DynamicTest;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestFactory;

import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.time.Clock;
import java.time.LocalDateTime;
import java.time.ZoneOffset;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.stream.Stream;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

/// Every case of `chat_template_cases.json` (written by `reference/render_chat_templates.py`, i.e. Python jinja2
/// configured as transformers configures it) rendered by [ChatTemplate] must be byte-identical, or raise where
/// the oracle raised.
///
/// The templates under `templates/` are the models' public `chat_template`s, copied verbatim from:
/// - `smollm2-135m-instruct.jinja`: HuggingFaceTB/SmolLM2-135M-Instruct tokenizer_config.json (as embedded in its
///   GGUF `tokenizer.chat_template`; quoted verbatim in several public test suites)
/// - `llama3-8b-instruct.jinja`, `llama3.1-8b-instruct.jinja`, `mistral-7b-instruct-v0.1.jinja`,
///   `mistral-7b-instruct-v0.2.jinja`: github.com/ollama/ollama `template/index.json` (entries 23, 24, 14, 10), which
///   lists the Hugging Face `chat_template` strings of meta-llama/Meta-Llama-3-8B-Instruct,
///   meta-llama/Meta-Llama-3.1-8B-Instruct (the release with `date_string` "26 Jul 2024" and `builtin_tools`),
///   mistralai/Mistral-7B-Instruct-v0.1 and mistralai/Mistral-7B-Instruct-v0.2 / Mixtral-8x7B-Instruct-v0.1
/// - `llama3.2-3b-instruct.jinja` (the `strftime_now` one): github.com/ggerganov/llama.cpp
///   `models/templates/meta-llama-Llama-3.2-3B-Instruct.jinja` (commit 7b5e0803)
/// - `qwen2.5-7b-instruct.jinja`: Qwen/Qwen2.5-7B-Instruct tokenizer_config.json `chat_template` (a public verbatim
///   copy, cross-checked against a second independent copy)
class ChatTemplateOracleTest {
    static final String CASES = "chat_template_cases.json";
    static final ObjectMapper JSON = new ObjectMapper();

    @TestFactory
    Stream<DynamicTest> rendersLikeTransformers() throws IOException {
        JsonNode root = JSON.readTree(resource(CASES));
        Clock clock = Clock.fixed(LocalDateTime.parse(root.get("fixed_now").asText()).toInstant(ZoneOffset.UTC),
                ZoneOffset.UTC);
        List<DynamicTest> tests = new ArrayList<>();
        for (JsonNode c : root.get("cases")) {
            String name = c.get("template").asText();
            ChatTemplate template = template(root.get("templates").get(name), name).withClock(clock);
            String title = name + " / " + c.get("conversation").asText() + " / add_generation_prompt="
                    + c.get("add_generation_prompt").asBoolean();
            tests.add(DynamicTest.dynamicTest(title, () -> check(template, c, title)));
        }
        assertTrue(tests.size() >= 100, "fixture has only " + tests.size() + " cases; regenerate it");
        return tests.stream();
    }

    static void check(ChatTemplate template, JsonNode c, String title) {
        List<ChatMessage> messages = new ArrayList<>();
        for (JsonNode m : c.get("messages")) messages.add(message(m));
        Map<String, Object> extra = JSON.convertValue(c.get("extra"), new TypeReference<>() {});
        boolean gen = c.get("add_generation_prompt").asBoolean();
        if (c.has("error")) {
            ChatTemplateException e = assertThrows(ChatTemplateException.class,
                    () -> template.render(messages, gen, extra), title + ": the oracle raised, we did not");
            assertEquals(c.get("error").asText(), e.templateMessage(), title);
            return;
        }
        assertSameText(title, c.get("expected").asText(), template.render(messages, gen, extra));
    }

    static ChatMessage message(JsonNode m) {
        List<Map<String, Object>> calls = m.has("tool_calls")
                ? JSON.convertValue(m.get("tool_calls"), new TypeReference<>() {}) : null;
        return new ChatMessage(m.get("role").asText(), m.has("content") ? m.get("content").asText() : null, calls,
                m.has("name") ? m.get("name").asText() : null);
    }

    static ChatTemplate template(JsonNode spec, String name) throws IOException {
        if (name.equals("plain")) return ChatTemplate.plain();
        String source = new String(resource("templates/" + spec.get("file").asText()).readAllBytes(),
                StandardCharsets.UTF_8);
        JsonNode tokens = spec.get("special_tokens");
        return ChatTemplate.of(source, tokens.path("bos_token").textValue(), tokens.path("eos_token").textValue());
    }

    static InputStream resource(String path) {
        InputStream in = ChatTemplateOracleTest.class.getResourceAsStream(path);
        if (in == null) fail("test resource " + path + " is missing; run /usr/bin/python3 reference/render_chat_templates.py");
        return in;
    }

    /// Fails with the first differing offset, both sides escaped around it, and both full texts.
    static void assertSameText(String what, String expected, String actual) {
        if (expected.equals(actual)) return;
        int i = 0;
        while (i < expected.length() && i < actual.length() && expected.charAt(i) == actual.charAt(i)) i++;
        int from = Math.max(0, i - 60);
        fail(String.format("%s: differs at char %d (expected length %d, actual %d)%n  expected: …%s…%n  actual:   …%s…"
                        + "%n--- expected ---%n%s%n--- actual ---%n%s%n---", what, i, expected.length(), actual.length(),
                escape(expected.substring(from, Math.min(expected.length(), i + 60))),
                escape(actual.substring(from, Math.min(actual.length(), i + 60))), expected, actual));
    }

    static String escape(String s) {
        return s.replace("\\", "\\\\").replace("\n", "\\n").replace("\t", "\\t").replace("\r", "\\r");
    }

    @Test
    void fixtureCoversEveryTemplateAndErrors() throws IOException {
        JsonNode root = JSON.readTree(resource(CASES));
        long errors = 0;
        for (JsonNode c : root.get("cases")) if (c.has("error")) errors++;
        assertEquals(8, root.get("templates").size(), "templates in the fixture");
        assertTrue(errors >= 20, "expected error cases (Mistral alternation, Llama tool limits): " + errors);
    }
}
