package org.peft4j.train.generate;

import java.util.List;

/// Stop strings over streamed text (OpenAI's `stop`, LLaMA-Factory's template stop words, `--stop`): text is released
/// only once no stop string can begin in it, and cut before the first stop string, which ends the stream. Each piece
/// is searched only where a stop string could newly end, so a long stream costs linear time.
public final class StopStrings {
    private final String[] stops;
    private final int longest;
    private final StringBuilder text = new StringBuilder();
    private int released;        // text[0 .. released) has been returned
    private String matched;      // the stop string found, or null

    /// Empty strings are ignored.
    public StopStrings(List<String> stops) {
        this.stops = stops.stream().filter(s -> !s.isEmpty()).distinct().toArray(String[]::new);
        int m = 0;
        for (String s : this.stops) m = Math.max(m, s.length());
        this.longest = m;
    }

    /// Appends a piece and returns the text it makes safe to release ("" when all of it could still begin a stop
    /// string). After a stop string, returns the text before it; later pieces are ignored.
    public String push(String piece) {
        if (matched != null || piece.isEmpty()) return "";
        int from = Math.max(0, text.length() - (longest - 1));
        text.append(piece);
        int cut = -1;
        for (String s : stops) {
            int i = text.indexOf(s, from);
            if (i >= 0 && (cut < 0 || i < cut)) { cut = i; matched = s; }
        }
        if (cut >= 0) {
            text.setLength(cut);
            return release(cut);
        }
        return release(text.length() - heldBack());
    }

    /// The text still held back (the beginning of a stop string that never completed), at the end of the stream.
    public String flush() { return matched != null ? "" : release(text.length()); }

    /// Whether a stop string ended the stream.
    public boolean stopped() { return matched != null; }

    /// The stop string that ended the stream, or null.
    public String matched() { return matched; }

    /// All the text so far, cut before the stop string.
    public String text() { return text.toString(); }

    private String release(int upTo) {
        if (upTo <= released) return "";
        String out = text.substring(released, upTo);
        released = upTo;
        return out;
    }

    /// Length of the longest suffix of the text that is a proper prefix of a stop string.
    private int heldBack() {
        int best = 0, n = text.length();
        for (String s : stops)
            for (int k = Math.min(s.length() - 1, n - released); k > best; k--)
                if (regionEquals(n - k, s, k)) { best = k; break; }
        return best;
    }

    private boolean regionEquals(int at, String s, int k) {
        for (int i = 0; i < k; i++) if (text.charAt(at + i) != s.charAt(i)) return false;
        return true;
    }
}
