package org.peft4j.train.data;

import java.util.Objects;

/// One message of a conversation.
public record Message(Role role, String content) {
    public Message {
        Objects.requireNonNull(role, "role");
        Objects.requireNonNull(content, "content");
    }

    public static Message user(String content) { return new Message(Role.USER, content); }
    public static Message assistant(String content) { return new Message(Role.ASSISTANT, content); }
    public static Message system(String content) { return new Message(Role.SYSTEM, content); }
}
