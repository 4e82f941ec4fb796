package org.peft4j.train.data;

import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Objects;

/// A supervised example in LLaMA-Factory's aligned form (`_prompt + _response`, `_system`, `_tools`):
/// messages alternate USER|OBSERVATION, ASSISTANT|FUNCTION and end with the response, so their count is even.
/// `system` is "" when absent (the template's default system is used then); `tools` is "" or a JSON array string.
public record Conversation(String system, String tools, List<Message> messages) {
    public Conversation {
        Objects.requireNonNull(system, "system");
        Objects.requireNonNull(tools, "tools");
        messages = List.copyOf(messages);
        if (messages.isEmpty() || messages.size() % 2 != 0)
            throw new IllegalArgumentException("a conversation needs an even, non-zero number of messages, got " + messages.size());
        for (int i = 0; i < messages.size(); i++) {
            Role r = messages.get(i).role();
            if (i % 2 == 0 ? !r.opensTurn() : !r.answersTurn())
                throw new IllegalArgumentException("message " + i + " has role " + r + "; expected "
                        + (i % 2 == 0 ? "USER or OBSERVATION" : "ASSISTANT or FUNCTION"));
        }
    }

    public static Conversation of(String system, String... userAssistant) {
        List<Message> m = new ArrayList<>();
        for (int i = 0; i < userAssistant.length; i++)
            m.add(i % 2 == 0 ? Message.user(userAssistant[i]) : Message.assistant(userAssistant[i]));
        return new Conversation(system, "", m);
    }

    /// The number of (prompt, response) turns.
    public int turns() { return messages.size() / 2; }

    /// Replaces `{{key}}` by `value` in the system prompt and every message, as LLaMA-Factory's identity.json
    /// expects its users to do for `{{name}}`/`{{author}}` before training.
    public Conversation fillPlaceholders(Map<String, String> values) {
        List<Message> m = new ArrayList<>(messages.size());
        for (Message x : messages) m.add(new Message(x.role(), fill(x.content(), values)));
        return new Conversation(fill(system, values), tools, m);
    }

    static String fill(String s, Map<String, String> values) {
        for (var e : values.entrySet()) s = s.replace("{{" + e.getKey() + "}}", e.getValue());
        return s;
    }
}
