package org.peft4j.train.data;

import org.junit.jupiter.api.DynamicTest;
import org.junit.jupiter.api.TestFactory;
import org.peft4j.template.ChatMessage;
import org.peft4j.template.ChatTemplate;

import java.util.ArrayList;
import java.util.List;
import java.util.stream.Stream;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/// [SlotTemplate#jinja] (what a saved model folder gets as its chat template, LLaMA-Factory `fix_jinja_template`)
/// rendered by the template module's Jinja engine gives the same text as the slot renderer training uses, for every
/// named template, with and without a system prompt, on one and two turns.
class TemplateJinjaTest {
    static final List<Conversation> CONVERSATIONS = List.of(Conversation.of("SYS 'quoted'", "Q1", "A1", "Q2", "A2"),
            Conversation.of("", "Q1", "A1"));

    static List<ChatMessage> messages(Conversation c) {
        List<ChatMessage> out = new ArrayList<>();
        if (!c.system().isEmpty()) out.add(new ChatMessage("system", c.system()));
        for (Message m : c.messages()) out.add(new ChatMessage(m.role() == Role.USER ? "user" : "assistant", m.content()));
        return out;
    }

    @TestFactory
    Stream<DynamicTest> jinjaRendersAsTheSlots() {
        return SlotTemplate.NAMES.stream().map(name -> DynamicTest.dynamicTest(name, () -> {
            SlotTemplate t = SlotTemplate.named(name);
            String eos = t.replaceEos() ? t.stopWords().getFirst() : "<EOS>";
            if (t.jinja("<BOS>", eos) == null) {   // token slots: LLaMA-Factory writes no Jinja either
                assertTrue(t.prefix().stream().anyMatch(s -> s instanceof SlotTemplate.Token) || t.user().stream().anyMatch(s -> s instanceof SlotTemplate.Token), name);
                return;
            }
            ChatTemplate jinja = ChatTemplate.of(t.jinja("<BOS>", eos), "<BOS>", eos);
            for (Conversation c : CONVERSATIONS)
                assertEquals(t.render(c, "<BOS>", eos), jinja.render(messages(c), false), name + ": " + t.jinja("<BOS>", eos));
        }));
    }
}
