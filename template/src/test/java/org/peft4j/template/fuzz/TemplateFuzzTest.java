package org.peft4j.template.fuzz;

import com.code_intelligence.jazzer.junit.FuzzTest;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.peft4j.template.ChatMessage;
import org.peft4j.template.ChatTemplate;
import org.peft4j.testkit.Fuzz;

import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.assertNotNull;

/// Fuzz target for chat templates (issue 17): a tokenizer_config.json's `chat_template` is Jinja written by a
/// stranger. Rendering a conversation (with tools) gives a prompt or our own error; the time limit
/// ([ChatTemplate#withTimeLimit], 250 ms here) and the output limit keep a looping or exploding template from hanging or
/// filling the heap. Seeds in `TemplateFuzzTestInputs/chatTemplate/`: the real templates the oracle test renders, a
/// 10^9-iteration loop, a 10^11-character output, a doubling string, unbounded macro recursion.
class TemplateFuzzTest {
    static final Path INPUTS = Path.of("src/test/resources/org/peft4j/template/fuzz/TemplateFuzzTestInputs");
    static final List<ChatMessage> CONVERSATION = List.of(ChatMessage.system("Be brief."), ChatMessage.user("Hi there, who are you?"),
            ChatMessage.assistant("I am a model."), ChatMessage.user("Tell me a story."));
    static final Map<String, Object> EXTRA = Map.of("tools", List.of(Map.of("type", "function", "function",
            Map.of("name", "get_time", "description", "the time", "parameters", Map.of("type", "object", "properties", Map.of())))));

    @Tag("jazzer")
    @FuzzTest(maxDuration = "60s")
    void chatTemplate(byte[] data) {
        // what a render holds is capped by the output/string/list limits (8 Mi characters), but a template looping until
        // its time limit (wall clock) allocates garbage all along, the more the faster the machine: ~100 MB in one second
        // on a loaded VM, 430 MB within the 250 ms on an idle one (seen). The bound, 1 GiB, allows for that and still
        // catches what the limits exist for (a 10^11-character output, a doubling string).
        Fuzz.contract(data, 10_000, 1L << 30, d -> {
            ChatTemplate t = ChatTemplate.of(new String(d, StandardCharsets.UTF_8), "<s>", "</s>").withTimeLimit(Duration.ofMillis(250));
            assertNotNull(t.render(CONVERSATION, true, EXTRA));
        });
    }

    @Test
    void chatTemplateMutated() {
        Fuzz.run("chatTemplate", Fuzz.seeds(INPUTS.resolve("chatTemplate")), 150, Duration.ofSeconds(5), this::chatTemplate);
    }
}
