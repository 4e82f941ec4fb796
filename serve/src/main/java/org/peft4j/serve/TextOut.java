package org.peft4j.serve;

import org.peft4j.tokenizer.StreamDecoder;
import org.peft4j.tokenizer.Tokenizer;

import java.util.List;

/// One sequence's text as it is generated: ids become pieces that add up to decode(prompt + ids) minus decode(prompt)
/// (the tokenizer's [StreamDecoder] primed with the prompt), text that could begin a stop string is held back, and the
/// text is cut before the first stop string, which ends the sequence. Reference: OpenAI's `stop` (the stop string is
/// not returned), transformers `TextStreamer(skip_prompt=True)`.
final class TextOut {
    private final StreamDecoder decoder;
    private final String[] stops;
    private final int longest;
    private final StringBuilder text = new StringBuilder();
    private int released;
    private boolean stopped;

    TextOut(Tokenizer tokenizer, int[] prompt, List<String> stops) {
        this.decoder = tokenizer.streamDecoder(true).prefill(prompt);
        this.stops = stops.stream().filter(s -> !s.isEmpty()).distinct().toArray(String[]::new);
        int m = 0;
        for (String s : this.stops) m = Math.max(m, s.length());
        this.longest = m;
    }

    /// The text that id makes safe to release ("" while held back).
    String push(int id) { return add(decoder.push(id)); }

    /// What is left at the end of the sequence.
    String flush() {
        String s = add(decoder.flush());
        return stopped ? s : s + release(text.length());
    }

    /// Whether a stop string ended the text.
    boolean stopped() { return stopped; }

    private String add(String piece) {
        if (stopped || piece.isEmpty()) return "";
        int from = Math.max(0, text.length() - Math.max(0, longest - 1));
        text.append(piece);
        int cut = -1;
        for (String s : stops) {
            int i = text.indexOf(s, from);
            if (i >= 0 && (cut < 0 || i < cut)) cut = i;
        }
        if (cut >= 0) {
            stopped = true;
            text.setLength(cut);
            return release(cut);
        }
        return release(text.length() - heldBack());
    }

    private String release(int upTo) {
        if (upTo <= released) return "";
        String out = text.substring(released, upTo);
        released = upTo;
        return out;
    }

    /// Length of the longest suffix of the unreleased text that is a proper prefix of a stop string.
    private int heldBack() {
        int best = 0, n = text.length();
        for (String s : stops)
            for (int k = Math.min(s.length() - 1, n - released); k > best; k--)
                if (endsWith(n - k, s, k)) { best = k; break; }
        return best;
    }

    private boolean endsWith(int at, String s, int k) {
        for (int i = 0; i < k; i++) if (text.charAt(at + i) != s.charAt(i)) return false;
        return true;
    }
}
