package org.peft4j.train.generate;

import org.peft4j.core.Peft4jException.ConfigException;
import org.peft4j.template.ChatMessage;
import org.peft4j.template.ChatTemplate;
import org.peft4j.tokenizer.Tokenizer;
import org.peft4j.train.TrainData;
import org.peft4j.train.data.Conversation;
import org.peft4j.train.data.EncodedTurn;
import org.peft4j.train.data.IntArray;
import org.peft4j.train.data.Message;
import org.peft4j.train.data.Role;
import org.peft4j.train.data.SlotTemplate;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

/// How a conversation becomes the prompt ids of the assistant's next answer, and what ends that answer: the model's
/// own Jinja chat template (transformers `apply_chat_template(add_generation_prompt=True)`), one of LLaMA-Factory's
/// named templates (exactly the ids training put before a response, `Template.encode_multiturn`), or a plain
/// `User:`/`Assistant:` format for base models without a template.
public sealed interface ChatPrompt permits ChatPrompt.Jinja, ChatPrompt.Slots {
    /// "model", "plain" or the LLaMA-Factory template name.
    String name();

    /// The ids of `messages` (system?, then user and assistant turns, ending with a user turn) followed by the opening
    /// of the assistant's turn.
    int[] encode(List<ChatMessage> messages);

    /// Stop strings the format needs (LLaMA-Factory's stop words, `\nUser:` for the plain format).
    List<String> stopStrings();

    /// Stop ids the format needs beyond the model's EOS: its stop words that are single tokens (`<|im_end|>`,
    /// `<|eot_id|>`), which a decode without special tokens would never show as text.
    int[] stopIds();

    /// The chat format for `template` as the CLI's `--template` and the server's option take it: null for the model's
    /// chat template when it has one (`tokenizer_config.json` or `chat_template.jinja`), else the plain format;
    /// `model` for the model's template (an error without one); any other name for LLaMA-Factory's template.
    static ChatPrompt of(String template, Tokenizer tokenizer, Path modelDir) {
        if (Files.isRegularFile(modelDir)) {   // a GGUF file: the template is its tokenizer.chat_template
            String src = tokenizer.config().chatTemplate();
            if (template != null && !template.equals("model")) return new Slots(SlotTemplate.named(template), tokenizer);
            if (src == null && template == null) return plain(tokenizer);
            if (src == null) throw new ConfigException("template 'model' needs a chat template; " + modelDir + " has no tokenizer.chat_template:"
                    + " pick a named template (" + String.join(", ", SlotTemplate.NAMES) + ")");
            return new Jinja("model", ChatTemplate.of(src, tokenizer.config().bosToken(), tokenizer.config().eosToken()), tokenizer, false);
        }
        Path config = modelDir.resolve("tokenizer_config.json");
        boolean has = Files.exists(config) && (tokenizer.config().chatTemplate() != null || Files.exists(modelDir.resolve("chat_template.jinja")));
        if (template == null) return has ? new Jinja("model", ChatTemplate.fromTokenizerConfig(config), tokenizer, false) : plain(tokenizer);
        if (template.equals("model")) {
            if (!has) throw new ConfigException("template 'model' needs a chat template in " + config + " (or chat_template.jinja); "
                    + "this model has none: pick a named template (" + String.join(", ", SlotTemplate.NAMES) + ")");
            return new Jinja("model", ChatTemplate.fromTokenizerConfig(config), tokenizer, false);
        }
        return new Slots(SlotTemplate.named(template), tokenizer);
    }

    /// `System: …\nUser: …\nAssistant: ` with BOS, for models without a chat template.
    static ChatPrompt plain(Tokenizer tokenizer) { return new Jinja("plain", ChatTemplate.plain(), tokenizer, true); }

    /// A Jinja template rendered with a generation prompt. The model's template writes BOS itself when the model has
    /// one (so the text is encoded without added special tokens, as `apply_chat_template` does); the plain one does
    /// not, so BOS is added for it.
    record Jinja(String name, ChatTemplate template, Tokenizer tokenizer, boolean plain) implements ChatPrompt {
        @Override public int[] encode(List<ChatMessage> messages) {
            return tokenizer.encode(template.render(messages, true), plain);
        }

        @Override public List<String> stopStrings() { return plain ? List.of("\nUser:") : List.of(); }

        @Override public int[] stopIds() { return new int[0]; }
    }

    /// A LLaMA-Factory template: the conversation as training encodes it, the last turn's response left open.
    record Slots(SlotTemplate template, Tokenizer tokenizer) implements ChatPrompt {
        @Override public String name() { return template.name(); }

        @Override public int[] encode(List<ChatMessage> messages) {
            String system = "";
            List<Message> ms = new ArrayList<>();
            for (ChatMessage m : messages) {
                switch (m.role()) {
                    case "system" -> system = m.content();
                    case "user" -> ms.add(Message.user(m.content()));
                    case "assistant" -> ms.add(Message.assistant(m.content()));
                    case "tool" -> ms.add(new Message(Role.OBSERVATION, m.content()));
                    default -> throw new ConfigException("message role '" + m.role() + "' is not known to template '" + name()
                            + "'; use system, user, assistant or tool");
                }
            }
            ms.add(Message.assistant(""));
            Conversation c;
            try {
                c = new Conversation(system, "", ms);
            } catch (IllegalArgumentException e) {
                throw new ConfigException("template '" + name() + "' needs user (or tool) and assistant messages alternating, "
                        + "starting with user and ending with user, after an optional system message: " + e.getMessage());
            }
            List<EncodedTurn> turns = template.encodeMultiturn(TrainData.encoder(tokenizer), c);
            IntArray out = new IntArray();
            for (int i = 0; i < turns.size(); i++) {
                out.addAll(turns.get(i).prompt());
                if (i < turns.size() - 1) out.addAll(turns.get(i).response());
            }
            return out.toArray();
        }

        @Override public List<String> stopStrings() { return template.stopWords(); }

        @Override public int[] stopIds() {
            IntArray ids = new IntArray();
            for (String w : template.stopWords()) {
                int id = tokenizer.tokenToId(w);
                if (id >= 0) ids.add(id);
            }
            // replace_eos's EOS is the first stop word, added above when the tokenizer has it; without it the stop string ends the answer
            return java.util.Arrays.stream(ids.toArray()).distinct().toArray();
        }
    }
}
