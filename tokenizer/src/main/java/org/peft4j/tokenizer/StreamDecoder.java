package org.peft4j.tokenizer;

import java.util.Arrays;

/// Turns ids pushed one at a time into text pieces, for streaming generation. A piece is released only once it is
/// complete: a character split across byte tokens waits for its last byte, and the leading-space strip of a
/// SentencePiece decoder is applied once, as when decoding the whole sequence. Reference: HF tokenizers `DecodeStream`
/// (decode a short window of recent ids, emit what grew beyond the window's previous text).
public final class StreamDecoder {
    private final Tokenizer tokenizer;
    private final boolean skipSpecial;
    private int[] ids = new int[0]; // (window) recent ids: context, then ids not yet emitted
    private String prefix = "";     // decode of ids[0 .. prefixIndex)
    private int prefixIndex;

    StreamDecoder(Tokenizer tokenizer, boolean skipSpecial) {
        this.tokenizer = tokenizer;
        this.skipSpecial = skipSpecial;
    }

    /// The text completed by `id`, or "" when it is still pending (an incomplete UTF-8 character).
    public String push(int id) {
        ids = Arrays.copyOf(ids, ids.length + 1);
        ids[ids.length - 1] = id;
        String text = tokenizer.decode(ids, skipSpecial);
        if (text.length() <= prefix.length() || text.endsWith("\uFFFD") || !text.startsWith(prefix)) return "";
        String fresh = text.substring(prefix.length());
        int[] window = Arrays.copyOfRange(ids, prefixIndex, ids.length);
        prefixIndex = ids.length - prefixIndex;
        ids = window;
        prefix = tokenizer.decode(ids, skipSpecial);
        return fresh;
    }
}
