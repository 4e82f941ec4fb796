package org.peft4j.template;

import org.junit.jupiter.api.Test;
import org.peft4j.core.Peft4jException;

import java.time.Duration;
import java.util.List;

import static org.junit.jupiter.api.Assertions.*;

/// A chat template comes from a stranger's tokenizer_config.json and runs Jinja: a render is bounded in time
/// ([ChatTemplate#withTimeLimit]) and in the characters, strings and lists it produces (issue 17).
class ChatTemplateLimitsTest {
    static final List<ChatMessage> HI = List.of(ChatMessage.user("Hi"));

    @Test
    void aTemplateThatLoopsTooLongIsStoppedByTheTimeLimit() {
        // 10^9 iterations of an empty body: minutes of work without a limit
        String loop = "{% for i in range(1000) %}{% for j in range(1000) %}{% for k in range(1000) %}{% endfor %}{% endfor %}{% endfor %}done";
        long t0 = System.nanoTime();
        var e = assertThrows(Peft4jException.FormatException.class,
                () -> ChatTemplate.of(loop).withTimeLimit(Duration.ofMillis(300)).render(HI, true));
        double seconds = (System.nanoTime() - t0) / 1e9;
        assertTrue(e.getMessage().contains("did not finish rendering within 300 ms"), e.getMessage());
        assertTrue(seconds < 5, "stopped after " + seconds + " s");
        // the default limit leaves a normal template alone
        assertEquals("Hi", ChatTemplate.of("{% for m in messages %}{{ m.content }}{% endfor %}").render(HI, false));
    }

    @Test
    void aTemplateWithHugeOutputIsRefused() {
        // a 100 000-character message printed 1000 x 1000 times: 10^11 characters without a limit
        List<ChatMessage> big = List.of(ChatMessage.user("x".repeat(100_000)));
        String huge = "{% for i in range(1000) %}{% for j in range(1000) %}{{ messages[0].content }}{% endfor %}{% endfor %}";
        long t0 = System.nanoTime();
        var e = assertThrows(Peft4jException.FormatException.class, () -> ChatTemplate.of(huge).render(big, true));
        assertTrue(e.getMessage().contains("grew past the limit of 8388608 characters"), e.getMessage());
        assertTrue((System.nanoTime() - t0) / 1e9 < 10, "the limit should stop it early");
    }

    @Test
    void aStringDoubledInALoopIsRefused() {
        String doubling = "{% set ns = namespace(s='x') %}{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s|length }}";
        var e = assertThrows(Peft4jException.class, () -> ChatTemplate.of(doubling).withTimeLimit(Duration.ofSeconds(5)).render(HI, true));
        assertNotNull(e.getMessage());
        assertFalse(e.getMessage().isBlank());
    }
}
