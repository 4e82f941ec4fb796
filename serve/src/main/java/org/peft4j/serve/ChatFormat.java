package org.peft4j.serve;

import org.peft4j.core.Peft4jException;
import org.peft4j.template.ChatMessage;
import org.peft4j.template.ChatTemplate;
import org.peft4j.tokenizer.Tokenizer;
import org.peft4j.train.TrainData;
import org.peft4j.train.data.Conversation;
import org.peft4j.train.data.EncodedTurn;
import org.peft4j.train.data.Message;
import org.peft4j.train.data.SlotTemplate;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

/// How `/v1/chat/completions` turns messages into prompt ids, as `peft4j chat` does: the model's Jinja chat template
/// (transformers `apply_chat_template(add_generation_prompt=True)`), a LLaMA-Factory template by name (the ids training
/// put before a response), or a plain `User:`/`Assistant:` format for models without a template; with the stop
/// strings and ids the format needs.
final class ChatFormat {
    private final String name;
    private final Tokenizer tokenizer;
    private final ChatTemplate jinja;     // or null
    private final boolean plain;
    private final SlotTemplate slots;     // or null

    private ChatFormat(String name, Tokenizer tokenizer, ChatTemplate jinja, boolean plain, SlotTemplate slots) {
        this.name = name; this.tokenizer = tokenizer; this.jinja = jinja; this.plain = plain; this.slots = slots;
    }

    /// `template`: null (the model's chat template when it has one, else plain), `model`, or a LLaMA-Factory name.
    static ChatFormat of(String template, Tokenizer tokenizer, Path modelDir) {
        Path config = modelDir.resolve("tokenizer_config.json");
        boolean has = Files.exists(config) && tokenizer.config().chatTemplate() != null;
        if (template == null)
            return has ? new ChatFormat("model", tokenizer, ChatTemplate.fromTokenizerConfig(config), false, null)
                       : new ChatFormat("plain", tokenizer, ChatTemplate.plain(), true, null);
        if (template.equals("model")) {
            if (!has) throw new Peft4jException.ConfigException("--template model needs a chat template in " + config
                    + "; this model has none: pick a named template (" + String.join(", ", SlotTemplate.NAMES) + ")");
            return new ChatFormat("model", tokenizer, ChatTemplate.fromTokenizerConfig(config), false, null);
        }
        return new ChatFormat(template, tokenizer, null, false, SlotTemplate.named(template));
    }

    String name() { return name; }

    /// Prompt ids for the assistant's next turn after `messages`.
    int[] encode(List<ChatMessage> messages) {
        if (slots == null) return tokenizer.encode(jinja.render(messages, true), plain);
        String system = "";
        List<Message> ms = new ArrayList<>();
        for (ChatMessage m : messages) {
            switch (m.role()) {
                case "system" -> system = m.content();
                case "user" -> ms.add(Message.user(m.content()));
                case "assistant" -> ms.add(Message.assistant(m.content()));
                default -> throw ApiException.invalid("messages", "message role '" + m.role() + "' is not supported by template '" + name
                        + "'; use system, user or assistant");
            }
        }
        ms.add(Message.assistant(""));
        Conversation c;
        try {
            c = new Conversation(system, "", ms);
        } catch (IllegalArgumentException e) {
            throw ApiException.invalid("messages", "template '" + name + "' needs user and assistant messages alternating, starting and "
                    + "ending with user, after an optional system message: " + e.getMessage());
        }
        List<EncodedTurn> turns = slots.encodeMultiturn(TrainData.encoder(tokenizer), c);
        List<Integer> out = new ArrayList<>();
        for (int i = 0; i < turns.size(); i++) {
            for (int id : turns.get(i).prompt()) out.add(id);
            if (i < turns.size() - 1) for (int id : turns.get(i).response()) out.add(id);
        }
        return out.stream().mapToInt(Integer::intValue).toArray();
    }

    /// Stop strings the format needs (LLaMA-Factory's stop words, `\nUser:` for the plain format).
    List<String> stopStrings() {
        if (slots != null) return slots.stopWords();
        return plain ? List.of("\nUser:") : List.of();
    }

    /// Stop ids beyond the model's EOS: the format's stop words that are single tokens (`<|im_end|>`).
    int[] stopIds() {
        if (slots == null) return new int[0];
        return slots.stopWords().stream().mapToInt(tokenizer::tokenToId).filter(id -> id >= 0).distinct().toArray();
    }
}
