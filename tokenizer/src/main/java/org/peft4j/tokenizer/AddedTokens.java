package org.peft4j.tokenizer;

import java.util.ArrayList;
import java.util.Comparator;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

/// Finds added tokens in text: leftmost-longest matches, with the `single_word`, `lstrip` and `rstrip` flags.
/// Reference: HF tokenizers `tokenizer/added_vocabulary.rs` (`find_matches`).
final class AddedTokens {
    /// One entry of tokenizer.json `added_tokens`.
    record AddedToken(int id, String content, boolean singleWord, boolean lstrip, boolean rstrip, boolean normalized, boolean special) {}

    /// A stretch `[start, end)` of the text: an added token (`id >= 0`) or plain text (`id == -1`).
    record Span(int id, int start, int end) {}

    private final Map<Character, List<AddedToken>> byFirstChar = new HashMap<>(); // longest first

    AddedTokens(List<AddedToken> tokens) {
        for (AddedToken t : tokens)
            if (!t.content().isEmpty()) byFirstChar.computeIfAbsent(t.content().charAt(0), k -> new ArrayList<>()).add(t);
        for (List<AddedToken> l : byFirstChar.values()) l.sort(Comparator.comparingInt((AddedToken t) -> -t.content().length()));
    }

    boolean isEmpty() { return byFirstChar.isEmpty(); }

    /// Splits `s` into token spans and text gaps (empty gaps omitted; an empty `s` gives no spans).
    List<Span> split(String s) {
        List<Span> out = new ArrayList<>();
        int startOffset = 0;
        for (int i = 0; i < s.length(); ) {
            AddedToken t = longestAt(s, i);
            if (t == null) { i++; continue; }
            int start = i, stop = i + t.content().length();
            i = stop; // a rejected match still consumes its text, as Aho-Corasick's find_iter does
            if (t.singleWord()) {
                boolean startSpace = start == 0 || !isWordChar(s.codePointBefore(start));
                boolean stopSpace = stop == s.length() || !isWordChar(s.codePointAt(stop));
                if (!startSpace || !stopSpace) continue;
            }
            if (t.lstrip()) {
                int ns = start;
                while (ns > 0 && isWhiteSpace(s.codePointBefore(ns))) ns -= Character.charCount(s.codePointBefore(ns));
                start = Math.max(ns, startOffset);
            }
            if (t.rstrip()) {
                while (stop < s.length() && isWhiteSpace(s.codePointAt(stop))) stop += Character.charCount(s.codePointAt(stop));
                i = stop;
            }
            if (startOffset < start) out.add(new Span(-1, startOffset, start));
            out.add(new Span(t.id(), start, stop));
            startOffset = stop;
        }
        if (startOffset < s.length()) out.add(new Span(-1, startOffset, s.length()));
        return out;
    }

    private AddedToken longestAt(String s, int i) {
        List<AddedToken> cands = byFirstChar.get(s.charAt(i));
        if (cands == null) return null;
        for (AddedToken t : cands) if (s.startsWith(t.content(), i)) return t;
        return null;
    }

    /// Unicode White_Space, as Rust's `char::is_whitespace` (Java's `isWhitespace` differs on U+00A0, U+001C..1F).
    static boolean isWhiteSpace(int cp) { return Character.isSpaceChar(cp) || (cp >= 9 && cp <= 13) || cp == 0x85; }

    /// Rust `char::is_alphanumeric`.
    private static boolean isWordChar(int cp) { return Character.isLetter(cp) || PreTokenizer.Digits.isNumeric(cp); }
}
