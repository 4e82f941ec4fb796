package org.peft4j.template;

import org.peft4j.core.Peft4jException;

/// A chat template refused the conversation by calling `raise_exception(message)`, e.g. Mistral's
/// "Conversation roles must alternate user/assistant/user/assistant/...". The template's own text is kept in
/// [#templateMessage()]; a server can answer 400 with [#getMessage()].
public final class ChatTemplateException extends Peft4jException {
    private final String templateMessage;

    public ChatTemplateException(String templateMessage) {
        super("The model's chat template rejected the conversation: \"" + templateMessage + "\"; reorder or merge "
                + "the messages as the template requires (most accept system?, then user/assistant turns "
                + "alternating, starting with user)");
        this.templateMessage = templateMessage;
    }

    /// The message exactly as the template passed it to `raise_exception`.
    public String templateMessage() { return templateMessage; }
}
