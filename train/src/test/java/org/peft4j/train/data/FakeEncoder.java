package org.peft4j.train.data;

import java.util.Map;

/// A tokenizer stand-in whose ids can be checked by hand: every code point c is id 1000 + c, BOS is 1, EOS is 2, and
/// a few special tokens have ids of their own (they are not recognized inside text, which these tests never need).
class FakeEncoder implements TextEncoder {
    static final int BOS = 1, EOS = 2, OFFSET = 1000;
    static final Map<String, Integer> SPECIAL = Map.of("<|im_end|>", 3, "<|eot_id|>", 4, "<|end_of_text|>", 5);

    private final boolean hasBos;

    FakeEncoder() { this(true); }
    FakeEncoder(boolean hasBos) { this.hasBos = hasBos; }

    @Override public int[] encode(String text) { return text.codePoints().map(c -> OFFSET + c).toArray(); }
    @Override public int bosId() { return hasBos ? BOS : -1; }
    @Override public int eosId() { return EOS; }
    @Override public int tokenId(String token) { return SPECIAL.getOrDefault(token, -1); }

    /// ids back to text, one character per id: BOS '^', EOS '$', IGNORE_INDEX '_'
    static String decode(int[] ids) {
        StringBuilder sb = new StringBuilder();
        for (int id : ids) {
            if (id == BOS) sb.append('^');
            else if (id == EOS) sb.append('$');
            else if (id == TokenizedExample.IGNORE_INDEX) sb.append('_');
            else if (id >= OFFSET) sb.appendCodePoint(id - OFFSET);
            else sb.append((char) ('0' + id)); // the special tokens 3, 4, 5
        }
        return sb.toString();
    }
}
