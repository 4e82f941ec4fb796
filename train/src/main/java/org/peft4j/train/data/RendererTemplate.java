package org.peft4j.train.data;

import org.peft4j.core.Peft4jException.ConfigException;
import org.peft4j.core.Peft4jException.FormatException;

import java.util.ArrayList;
import java.util.List;
import java.util.function.Function;

/// The model's own chat template (e.g. `tokenizer_config.json`'s Jinja), given as a renderer. Turn masks come from
/// rendering prefixes of the conversation: turn i's text is render(messages through response i) minus
/// render(messages through response i-1); a second render with response i replaced by a marker splits that text into
/// the prompt part and the response part (the response keeps the template's end-of-turn text, e.g. `<|im_end|>\n`, as
/// LLaMA-Factory's `parse_template` puts it in the assistant slot). Prompt and response texts are encoded separately;
/// special tokens written as text (`<s>`, `<|im_start|>`) must be recognized by the [TextEncoder].
record RendererTemplate(String name, Function<List<Message>, String> renderer) implements Template {
    private static final String MARKER = "\uE000peft4j-response\uE000";   // private-use characters: a Jinja engine passes them through (it escapes NUL)

    @Override public boolean efficientEos() { return false; }

    @Override public int eosId(TextEncoder encoder) { return encoder.eosId(); }

    @Override public List<EncodedTurn> encodeMultiturn(TextEncoder encoder, Conversation c) {
        if (!c.tools().isEmpty())
            throw new ConfigException("rows with tools need one of LLaMA-Factory's named templates (`template: qwen`, ...); "
                    + "the model's own chat template is used without tools in peft4j");
        List<Message> messages = new ArrayList<>();
        if (!c.system().isEmpty()) messages.add(Message.system(c.system()));
        int offset = messages.size();
        messages.addAll(c.messages());
        List<EncodedTurn> turns = new ArrayList<>();
        String before = "";
        for (int r = offset + 1; r < messages.size(); r += 2) {
            List<Message> upTo = messages.subList(0, r + 1);
            String full = renderer.apply(upTo);
            List<Message> probe = new ArrayList<>(upTo);
            probe.set(r, new Message(upTo.get(r).role(), MARKER));
            String marked = renderer.apply(probe);
            if (!full.startsWith(before) || !marked.startsWith(before))
                throw new FormatException("chat template '" + name + "' is not prefix-stable: rendering turn " + turns.size()
                        + " changes the text of earlier turns (templates that rewrite history, e.g. dropping <think> blocks, "
                        + "need a named template)");
            String turn = full.substring(before.length()), markedTurn = marked.substring(before.length());
            int at = markedTurn.indexOf(MARKER);
            String prompt = at < 0 ? null : markedTurn.substring(0, at);
            String suffix = at < 0 ? null : markedTurn.substring(at + MARKER.length());
            if (prompt == null || !turn.startsWith(prompt) || !turn.endsWith(suffix) || turn.length() < prompt.length() + suffix.length())
                throw new FormatException("chat template '" + name + "' does not render the response of turn " + turns.size()
                        + " verbatim, so its tokens cannot be located for the loss mask");
            turns.add(new EncodedTurn(encoder.encode(prompt), encoder.encode(turn.substring(prompt.length()))));
            before = full;
        }
        return turns;
    }
}
