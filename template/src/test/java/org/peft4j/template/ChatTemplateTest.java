package org.peft4j.template;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.peft4j.core.Peft4jException;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Clock;
import java.time.Instant;
import java.time.ZoneOffset;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/// The API around the renderer: loading tokenizer_config.json variants, errors, the plain fallback, and the Python
/// emulation pieces (json.dumps floats, `not` precedence). Expected strings come from Python (noted per test).
class ChatTemplateTest {
    static final ObjectMapper JSON = new ObjectMapper();
    static final List<ChatMessage> SYSTEM_USER =
            List.of(ChatMessage.system("You are a concise assistant."), ChatMessage.user("What is the capital of France?"));

    static String resource(String path) throws IOException {
        return new String(ChatTemplateOracleTest.resource(path).readAllBytes(), StandardCharsets.UTF_8);
    }

    /// The oracle's rendering of `template`/`conversation` with a generation prompt.
    static String oracle(String template, String conversation) throws IOException {
        for (JsonNode c : JSON.readTree(resource(ChatTemplateOracleTest.CASES)).get("cases"))
            if (c.get("template").asText().equals(template) && c.get("conversation").asText().equals(conversation)
                    && c.get("add_generation_prompt").asBoolean()) return c.get("expected").asText();
        throw new AssertionError("no oracle case " + template + "/" + conversation);
    }

    @Test
    void tokenizerConfigWithStringTemplateAndAddedTokenObjects(@TempDir Path dir) throws IOException {
        ObjectNode cfg = JSON.createObjectNode();
        cfg.put("chat_template", resource("templates/llama3-8b-instruct.jinja"));
        cfg.putObject("bos_token").put("content", "<|begin_of_text|>").put("lstrip", false);
        cfg.putObject("eos_token").put("content", "<|eot_id|>");
        Path file = dir.resolve("tokenizer_config.json");
        JSON.writeValue(file.toFile(), cfg);
        ChatTemplate t = ChatTemplate.fromTokenizerConfig(file);
        assertEquals("<|begin_of_text|>", t.bosToken());
        assertEquals("<|eot_id|>", t.eosToken());
        assertEquals(oracle("llama3", "system_user"), t.render(SYSTEM_USER, true));
    }

    @Test
    void tokenizerConfigWithNamedTemplatesTakesDefault(@TempDir Path dir) throws IOException {
        ObjectNode cfg = JSON.createObjectNode();
        var list = cfg.putArray("chat_template");
        list.addObject().put("name", "tool_use").put("template", "WRONG");
        list.addObject().put("name", "default").put("template", resource("templates/smollm2-135m-instruct.jinja"));
        cfg.put("bos_token", "<|im_start|>");
        cfg.put("eos_token", "<|im_end|>");
        Path file = dir.resolve("tokenizer_config.json");
        JSON.writeValue(file.toFile(), cfg);
        assertEquals(oracle("smollm2", "system_user"), ChatTemplate.fromTokenizerConfig(file).render(SYSTEM_USER, true));

        list.remove(1); // no "default": the first is taken
        JSON.writeValue(file.toFile(), cfg);
        assertEquals("WRONG", ChatTemplate.fromTokenizerConfig(file).source());
    }

    @Test
    void tokenizerConfigWithoutTemplateSaysWhatToDo(@TempDir Path dir) throws IOException {
        Path file = dir.resolve("tokenizer_config.json");
        Files.writeString(file, "{\"eos_token\": \"</s>\"}");
        var e = assertThrows(Peft4jException.ConfigException.class, () -> ChatTemplate.fromTokenizerConfig(file));
        assertTrue(e.getMessage().contains("--template NAME") && !e.getMessage().contains("ChatTemplate."), e.getMessage());
        Files.writeString(dir.resolve("chat_template.jinja"), "{{ eos_token }}\n");
        assertEquals("</s>", ChatTemplate.fromTokenizerConfig(file).render(List.of(), false));
        Files.writeString(file, "[1, 2");
        assertThrows(Peft4jException.FormatException.class, () -> ChatTemplate.fromTokenizerConfig(file));
    }

    @Test
    void raiseExceptionKeepsTheTemplatesMessage() throws IOException {
        ChatTemplate mistral = ChatTemplate.of(resource("templates/mistral-7b-instruct-v0.1.jinja"), "<s>", "</s>");
        var e = assertThrows(ChatTemplateException.class,
                () -> mistral.render(List.of(ChatMessage.user("a"), ChatMessage.user("b")), true));
        assertEquals("Conversation roles must alternate user/assistant/user/assistant/...", e.templateMessage());
        assertTrue(e.getMessage().contains(e.templateMessage()), e.getMessage());
        assertTrue(e instanceof Peft4jException);
    }

    @Test
    void brokenTemplateIsAFormatException() {
        var e = assertThrows(Peft4jException.FormatException.class,
                () -> ChatTemplate.of("{% for m in messages %}{{ m.content }}").render(List.of(ChatMessage.user("x")), false));
        assertTrue(e.getMessage().contains("line"), e.getMessage());
    }

    @Test
    void strftimeNowReadsTheGivenClock() throws IOException {
        Clock clock = Clock.fixed(Instant.parse("2024-12-25T18:30:00Z"), ZoneOffset.UTC);
        ChatTemplate t = ChatTemplate.of("{{ strftime_now('%d %b %Y|%A %B %j %I%p %H:%M:%S %y-%m-%e') }}").withClock(clock);
        // Python: datetime(2024,12,25,18,30).strftime('%d %b %Y|%A %B %j %I%p %H:%M:%S %y-%m-%e')
        assertEquals("25 Dec 2024|Wednesday December 360 06PM 18:30:00 24-12-25", t.render(List.of(), false));
        ChatTemplate llama32 = ChatTemplate.of(resource("templates/llama3.2-3b-instruct.jinja"), "<|begin_of_text|>",
                "<|eot_id|>").withClock(clock);
        assertTrue(llama32.render(SYSTEM_USER, true).contains("Today Date: 25 Dec 2024\n"));
        // an explicit date_string wins over the clock, as in transformers
        assertTrue(llama32.render(SYSTEM_USER, true, Map.of("date_string", "01 Jan 2000")).contains("Today Date: 01 Jan 2000\n"));
    }

    @Test
    void plainFallbackIsDocumentedFormat() {
        List<ChatMessage> conv = List.of(ChatMessage.system("Be brief."), ChatMessage.user("Hi"));
        assertEquals("System: Be brief.\nUser: Hi\nAssistant: ", ChatTemplate.plain().render(conv, true));
        assertEquals("System: Be brief.\nUser: Hi\n", ChatTemplate.plain().render(conv, false));
    }

    @Test
    void tojsonTakesPythonSeparators() { // json.dumps itself: formats' PyJsonTest
        Map<String, Object> empty = new LinkedHashMap<>();
        empty.put("b", List.of());
        empty.put("a", Map.of());
        // Python: json.dumps({'b': [], 'a': {}}, separators=(',', ':'))
        assertEquals("{\"b\":[],\"a\":{}}", ChatTemplate.of("{{ x | tojson(separators=(',', ':')) }}")
                .render(List.of(), false, Map.of("x", empty)));
    }

    @Test
    void notHasPythonPrecedence() {
        assertEquals(" if not (x|length == 1) ", JinjaSource.fixNot(" if not x|length == 1 "));
        assertEquals(" if not (tools is defined) ", JinjaSource.fixNot(" if not tools is defined "));
        assertEquals(" if a and not (b) or c ", JinjaSource.fixNot(" if a and not b or c "));
        assertEquals(" if x is not none and 'a' not in y ", JinjaSource.fixNot(" if x is not none and 'a' not in y "));
        assertEquals(" if not ((a == b)) -", JinjaSource.fixNot(" if not (a == b) -"));
        ChatTemplate t = ChatTemplate.of("{% if not xs|length == 1 %}many{% else %}one{% endif %}");
        assertEquals("many", t.render(List.of(), false, Map.of("xs", List.of(1, 2))));
        assertEquals("one", t.render(List.of(), false, Map.of("xs", List.of(1))));
    }

    @Test
    void whitespaceControlMatchesJinja2() {
        // Python: ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True).from_string(s).render(a=1)
        assertEquals("A: 1B\n  C", ChatTemplate.of("A: {% if a %}1{% endif %}\n  {% if a %}\nB\n{% endif %}\n  C\n")
                .render(List.of(), false, Map.of("a", 1)));
        assertEquals("x y", ChatTemplate.of("x {% if a %}y{% endif %}").render(List.of(), false, Map.of("a", 1)));
        assertEquals("ab", ChatTemplate.of("a\n  {#- c #}\nb").render(List.of(), false));
    }

    @Test
    void pythonStringMethods() {
        String src = "{{ s.strip() }}|{{ s.lstrip() }}|{{ s.rstrip() }}|{{ s.split() }}|{{ 'a,b,,c'.split(',') }}|"
                + "{% if s.strip().startswith('he') %}T{% endif %}|{% if s.strip().endswith(('x', 'lo wOrld')) %}T{% endif %}|{{ s.upper() }}|"
                + "{{ s.strip().title() }}|{{ s.replace('l', 'L') }}|{{ s|trim|capitalize }}";
        // Python: the same expressions with s = ' \u3000hello wOrld\xa0\n'
        assertEquals("hello wOrld|hello wOrld\u00a0\n| \u3000hello wOrld|['hello', 'wOrld']|['a', 'b', '', 'c']|"
                        + "T|T| \u3000HELLO WORLD\u00a0\n|Hello World| \u3000heLLo wOrLd\u00a0\n|Hello world",
                ChatTemplate.of(src).render(List.of(), false, Map.of("s", " \u3000hello wOrld\u00a0\n")));
    }
}
