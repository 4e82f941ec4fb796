package org.peft4j.train.data;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import org.junit.jupiter.api.DynamicTest;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestFactory;
import org.peft4j.core.Peft4jException.ConfigException;

import java.io.IOException;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeSet;
import java.util.stream.Stream;

import static org.junit.jupiter.api.Assertions.*;

/// Every LLaMA-Factory template against LLaMA-Factory's own encoder: `llamafactory-template-cases.json` holds the
/// (prompt, response) texts of `Template.encode_multiturn` run by `reference/llamafactory_templates.py` on
/// LLaMA-Factory's code (pinned commit in the file) for a two-turn conversation with a system prompt, a one-turn one
/// without (the default system), and for reasoning templates one whose first answer has a thought, each with
/// enable_thinking true and false. peft4j's [SlotTemplate#encodeMultiturn] must give the same pieces, token by token.
class TemplateTableTest {
    static final JsonNode CASES = read();

    static JsonNode read() {
        try (var in = TemplateTableTest.class.getResourceAsStream("llamafactory-template-cases.json")) {
            return new ObjectMapper().readTree(in);
        } catch (IOException e) {
            throw new java.io.UncheckedIOException(e);
        }
    }

    /// Text as one id per code point (offset 1000); BOS, EOS and named tokens get small ids and decode to their spelling.
    static final class SpellingEncoder implements TextEncoder {
        final Map<String, Integer> ids = new HashMap<>();
        final List<String> spellings = new ArrayList<>();

        int special(String s) { return ids.computeIfAbsent(s, k -> { spellings.add(k); return spellings.size() - 1; }); }
        @Override public int[] encode(String text) { return text.codePoints().map(c -> 1000 + c).toArray(); }
        @Override public int bosId() { return special("<BOS>"); }
        @Override public int eosId() { return special("<EOS>"); }
        @Override public int tokenId(String token) { return special(token); }

        String decode(int[] ids) {
            StringBuilder sb = new StringBuilder();
            for (int id : ids) {
                if (id >= 1000) sb.appendCodePoint(id - 1000);
                else sb.append(spellings.get(id));
            }
            return sb.toString();
        }
    }

    @TestFactory
    Stream<DynamicTest> everyTemplateEncodesAsLlamaFactory() {
        List<DynamicTest> tests = new ArrayList<>();
        for (JsonNode c : CASES.get("cases")) {
            String name = c.get("template").asText();
            JsonNode thinking = c.get("enable_thinking");
            List<String> contents = new ArrayList<>();
            c.get("messages").forEach(m -> contents.add(m.asText()));
            String label = name + (thinking.isNull() ? "" : " enable_thinking=" + thinking.asBoolean()) + " " + contents;
            tests.add(DynamicTest.dynamicTest(label, () -> {
                SlotTemplate t = SlotTemplate.named(name);
                if (!thinking.isNull()) t = t.withEnableThinking(thinking.asBoolean());
                SpellingEncoder enc = new SpellingEncoder();
                var turns = t.encodeMultiturn(enc, Conversation.of(c.get("system").asText(), contents.toArray(String[]::new)));
                assertEquals(c.get("turns").size(), turns.size());
                for (int i = 0; i < turns.size(); i++) {
                    assertEquals(c.get("turns").get(i).get(0).asText(), enc.decode(turns.get(i).prompt()), label + " prompt " + i);
                    assertEquals(c.get("turns").get(i).get(1).asText(), enc.decode(turns.get(i).response()), label + " response " + i);
                }
            }));
        }
        return tests.stream();
    }

    @Test
    void theTableIsLlamaFactorysTextTemplates() {
        TreeSet<String> cased = new TreeSet<>();
        CASES.get("cases").forEach(c -> cased.add(c.get("template").asText()));
        assertEquals(cased, new TreeSet<>(SlotTemplate.NAMES), "every template has cases");
        for (String n : List.of("qwen3", "qwen3_nothink", "qwen3_5", "qwen3_5_nothink", "qwen3_vl", "qwen3_vl_nothink", "qwen2_vl",
                "deepseek", "deepseek3", "deepseekr1", "gemma", "gemma2", "phi4", "glm4", "llama4", "mistral", "yi", "zephyr"))
            assertTrue(SlotTemplate.NAMES.contains(n), n);
        assertTrue(SlotTemplate.multimodal("qwen3_vl") && !SlotTemplate.multimodal("qwen3"));
        var e = assertThrows(ConfigException.class, () -> SlotTemplate.named("moss_vl"));
        assertTrue(e.getMessage().contains("text models only"), e.getMessage());
        assertEquals("You are Qwen, created by Alibaba Cloud. You are a helpful assistant.", SlotTemplate.named("qwen").defaultSystem());
        assertEquals(List.of("<|im_end|>"), SlotTemplate.named("qwen3_nothink").stopWords());
    }
}
