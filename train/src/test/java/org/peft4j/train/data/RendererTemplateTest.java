package org.peft4j.train.data;

import org.junit.jupiter.api.Test;
import org.peft4j.core.Peft4jException.FormatException;

import java.util.List;
import java.util.function.Function;

import static org.junit.jupiter.api.Assertions.*;

/// The model's own chat template: masks from rendering prefixes. A ChatML renderer (what Qwen2's and SmolLM2's
/// Jinja templates produce without a generation prompt) must give the same ids and labels as the named `chatml`.
class RendererTemplateTest {
    static final Function<List<Message>, String> CHATML = messages -> {
        StringBuilder sb = new StringBuilder();
        for (Message m : messages)
            sb.append("<|im_start|>").append(m.role().name().toLowerCase()).append('\n').append(m.content()).append("<|im_end|>\n");
        return sb.toString();
    };

    @Test void sameAsNamedChatml() {
        FakeEncoder enc = new FakeEncoder();
        for (Conversation c : List.of(TemplateRenderTest.TWO_TURNS, TemplateRenderTest.NO_SYSTEM, Conversation.of("", "", "", "x", ""))) {
            assertEquals(Template.named("chatml").encodeMultiturn(enc, c), Template.fromRenderer("model", CHATML).encodeMultiturn(enc, c));
            var o = new Supervised.Options(64, false, false);
            assertEquals(Supervised.encode(Template.named("chatml"), enc, c, o), Supervised.encode(Template.fromRenderer("model", CHATML), enc, c, o));
        }
    }

    @Test void historyRewritingTemplatesAreRefused() {
        // a template that shows only the last assistant message in full changes earlier text: no stable prefix
        Function<List<Message>, String> rewriting = ms -> {
            StringBuilder sb = new StringBuilder();
            for (int i = 0; i < ms.size(); i++)
                sb.append(i == ms.size() - 1 || ms.get(i).role() != Role.ASSISTANT ? ms.get(i).content() : "…").append('|');
            return sb.toString();
        };
        var e = assertThrows(FormatException.class, () -> Template.fromRenderer("r", rewriting).encodeMultiturn(new FakeEncoder(), TemplateRenderTest.TWO_TURNS));
        assertTrue(e.getMessage().contains("prefix-stable"), e.getMessage());
    }
}
