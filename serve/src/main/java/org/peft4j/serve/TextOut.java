package org.peft4j.serve;

import org.peft4j.tokenizer.StreamDecoder;
import org.peft4j.tokenizer.Tokenizer;
import org.peft4j.train.generate.StopStrings;

import java.util.List;

/// One sequence's text as the engine thread produces it: ids become pieces that add up to decode(prompt + ids) minus
/// decode(prompt) (the tokenizer's [StreamDecoder] primed with the prompt), and [StopStrings] holds back what could
/// begin a stop string and cuts the text before the first one (OpenAI's `stop`: the stop string is not returned).
/// The same pieces as `org.peft4j.train.generate.TextStream`, pulled one token at a time by [Engine.Stream], which also
/// times the tokens.
final class TextOut {
    private final StreamDecoder decoder;
    private final StopStrings stops;

    TextOut(Tokenizer tokenizer, int[] prompt, List<String> stops) {
        this.decoder = tokenizer.streamDecoder(true).prefill(prompt);
        this.stops = new StopStrings(stops);
    }

    /// The text that id makes safe to release ("" while held back).
    String push(int id) { return stops.push(decoder.push(id)); }

    /// What is left at the end of the sequence.
    String flush() {
        if (stops.stopped()) return "";
        String s = stops.push(decoder.flush());
        return stops.stopped() ? s : s + stops.flush();
    }

    /// Whether a stop string ended the text.
    boolean stopped() { return stops.stopped(); }
}
