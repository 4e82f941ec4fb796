package org.peft4j.tokenizer;

import com.fasterxml.jackson.databind.JsonNode;
import org.peft4j.core.Peft4jException.UnsupportedModelException;

import java.util.ArrayList;
import java.util.List;
import java.util.function.IntPredicate;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/// The `pre_tokenizer` of a tokenizer.json: splits normalized text into words that BPE encodes one by one.
/// Reference: HF tokenizers `pre_tokenizers/` and `NormalizedString::split` (`tokenizer/normalizer.rs`).
sealed interface PreTokenizer {
    /// A word; `atStart` marks the one that begins the original input (Metaspace's `prepend_scheme: first`).
    record Piece(String text, boolean atStart) {}

    /// How a split treats the matched stretches (`SplitDelimiterBehavior`).
    enum Behavior { REMOVED, ISOLATED, MERGED_WITH_PREVIOUS, MERGED_WITH_NEXT, CONTIGUOUS }

    /// Splits every piece of `in`, in order, into `out`; empty pieces are dropped.
    void apply(List<Piece> in, List<Piece> out);

    /// GPT-2 / Llama / SmolLM pre-token regex used by ByteLevel with `use_regex: true` (`byte_level.rs`).
    Pattern GPT2 = Pattern.compile("'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+",
            Patterns.FLAGS);

    record Sequence(List<PreTokenizer> steps) implements PreTokenizer {
        public void apply(List<Piece> in, List<Piece> out) {
            List<Piece> cur = in;
            for (PreTokenizer p : steps) {
                List<Piece> next = new ArrayList<>();
                p.apply(cur, next);
                cur = next;
            }
            out.addAll(cur);
        }
    }

    /// Optionally splits with the GPT-2 regex, then maps every UTF-8 byte through the byte↔char table.
    record ByteLevelSplit(boolean addPrefixSpace, boolean useRegex) implements PreTokenizer {
        public void apply(List<Piece> in, List<Piece> out) {
            for (Piece p : in) {
                String s = addPrefixSpace && !p.text().startsWith(" ") ? " " + p.text() : p.text();
                List<Piece> words = new ArrayList<>();
                if (useRegex) split(s, p.atStart(), regexMatches(GPT2, s, false), Behavior.ISOLATED, words);
                else words.add(new Piece(s, p.atStart()));
                for (Piece w : words) out.add(new Piece(ByteLevel.encode(w.text()), w.atStart()));
            }
        }
    }

    record Split(Pattern pattern, Behavior behavior, boolean invert) implements PreTokenizer {
        public void apply(List<Piece> in, List<Piece> out) {
            for (Piece p : in) split(p.text(), p.atStart(), regexMatches(pattern, p.text(), invert), behavior, out);
        }
    }

    /// Each numeric char alone (`individual_digits`) or runs of them; numeric = Rust `char::is_numeric` (Nd, Nl, No).
    record Digits(boolean individual) implements PreTokenizer {
        public void apply(List<Piece> in, List<Piece> out) {
            for (Piece p : in)
                split(p.text(), p.atStart(), charMatches(p.text(), Digits::isNumeric),
                        individual ? Behavior.ISOLATED : Behavior.CONTIGUOUS, out);
        }

        static boolean isNumeric(int cp) {
            int t = Character.getType(cp);
            return t == Character.DECIMAL_DIGIT_NUMBER || t == Character.LETTER_NUMBER || t == Character.OTHER_NUMBER;
        }
    }

    /// Spaces become `replacement`, which is prepended per `prepend_scheme` (always / first / never); with `split`,
    /// each `replacement` starts a new word.
    record Metaspace(char replacement, String prependScheme, boolean split) implements PreTokenizer {
        public void apply(List<Piece> in, List<Piece> out) {
            String rep = String.valueOf(replacement);
            for (Piece p : in) {
                String s = p.text().replace(" ", rep);
                boolean prepend = switch (prependScheme) {
                    case "always" -> true;
                    case "first" -> p.atStart();
                    default -> false;
                };
                if (prepend && !s.startsWith(rep)) s = rep + s;
                if (split) PreTokenizer.split(s, p.atStart(), charMatches(s, c -> c == replacement), Behavior.MERGED_WITH_NEXT, out);
                else out.add(new Piece(s, p.atStart()));
            }
        }
    }

    // ---- splitting machinery (NormalizedString::split) ----

    /// Spans `[start, end, isMatch]` covering `s`: the regex's matches and the gaps between them.
    static List<int[]> regexMatches(Pattern pattern, String s, boolean invert) {
        List<int[]> spans = new ArrayList<>();
        Matcher m = pattern.matcher(s);
        int prev = 0;
        while (m.find()) {
            if (m.end() == m.start()) continue;
            if (prev != m.start()) spans.add(new int[] {prev, m.start(), invert ? 1 : 0});
            spans.add(new int[] {m.start(), m.end(), invert ? 0 : 1});
            prev = m.end();
        }
        if (prev != s.length()) spans.add(new int[] {prev, s.length(), invert ? 1 : 0});
        return spans;
    }

    /// Every char satisfying `pred` is its own match; the stretches between are gaps.
    static List<int[]> charMatches(String s, IntPredicate pred) {
        List<int[]> spans = new ArrayList<>();
        int last = 0;
        for (int i = 0; i < s.length(); ) {
            int cp = s.codePointAt(i), n = Character.charCount(cp);
            if (pred.test(cp)) {
                if (last < i) spans.add(new int[] {last, i, 0});
                spans.add(new int[] {i, i + n, 1});
                last = i + n;
            }
            i += n;
        }
        if (last < s.length()) spans.add(new int[] {last, s.length(), 0});
        return spans;
    }

    /// Applies `behavior` to `spans` and appends the non-empty pieces of `s`.
    static void split(String s, boolean atStart, List<int[]> spans, Behavior behavior, List<Piece> out) {
        List<int[]> kept = new ArrayList<>(); // [start, end]
        boolean prevMatch = false;
        switch (behavior) {
            case ISOLATED -> { for (int[] sp : spans) kept.add(new int[] {sp[0], sp[1]}); }
            case REMOVED -> { for (int[] sp : spans) if (sp[2] == 0) kept.add(new int[] {sp[0], sp[1]}); }
            case MERGED_WITH_PREVIOUS -> {
                for (int[] sp : spans) {
                    boolean match = sp[2] == 1;
                    if (match && !prevMatch && !kept.isEmpty()) kept.getLast()[1] = sp[1];
                    else kept.add(new int[] {sp[0], sp[1]});
                    prevMatch = match;
                }
            }
            case MERGED_WITH_NEXT -> {
                for (int i = spans.size() - 1; i >= 0; i--) {
                    int[] sp = spans.get(i);
                    boolean match = sp[2] == 1;
                    if (match && !prevMatch && !kept.isEmpty()) kept.getFirst()[0] = sp[0];
                    else kept.addFirst(new int[] {sp[0], sp[1]});
                    prevMatch = match;
                }
            }
            case CONTIGUOUS -> {
                boolean first = true;
                for (int[] sp : spans) {
                    boolean match = sp[2] == 1;
                    if (!first && match == prevMatch) kept.getLast()[1] = sp[1];
                    else kept.add(new int[] {sp[0], sp[1]});
                    prevMatch = match;
                    first = false;
                }
            }
        }
        for (int[] k : kept) if (k[1] > k[0]) out.add(new Piece(s.substring(k[0], k[1]), atStart && k[0] == 0));
    }

    /// `null` for a JSON null or missing node.
    static PreTokenizer parse(JsonNode n) {
        if (n == null || n.isNull()) return null;
        String type = n.path("type").asText();
        return switch (type) {
            case "Sequence" -> {
                List<PreTokenizer> steps = new ArrayList<>();
                for (JsonNode c : n.path("pretokenizers")) steps.add(parse(c));
                yield new Sequence(List.copyOf(steps));
            }
            case "ByteLevel" -> new ByteLevelSplit(n.path("add_prefix_space").asBoolean(true), n.path("use_regex").asBoolean(true));
            case "Split" -> new Split(Patterns.of(n.path("pattern")), behavior(n.path("behavior").asText()), n.path("invert").asBoolean(false));
            case "Digits" -> new Digits(n.path("individual_digits").asBoolean(false));
            case "Metaspace" -> {
                String rep = n.path("replacement").asText("\u2581");
                String scheme = n.has("prepend_scheme") ? n.get("prepend_scheme").asText()
                        : n.path("add_prefix_space").asBoolean(true) ? "always" : "never";
                yield new Metaspace(rep.charAt(0), scheme, n.path("split").asBoolean(true));
            }
            default -> throw new UnsupportedModelException("tokenizer.json pre_tokenizer type '" + type
                    + "' is not supported; supported: Sequence, ByteLevel, Split, Digits, Metaspace");
        };
    }

    private static Behavior behavior(String name) {
        return switch (name) {
            case "Removed" -> Behavior.REMOVED;
            case "Isolated" -> Behavior.ISOLATED;
            case "MergedWithPrevious" -> Behavior.MERGED_WITH_PREVIOUS;
            case "MergedWithNext" -> Behavior.MERGED_WITH_NEXT;
            case "Contiguous" -> Behavior.CONTIGUOUS;
            default -> throw new UnsupportedModelException("tokenizer.json Split behavior '" + name + "' is unknown");
        };
    }
}
