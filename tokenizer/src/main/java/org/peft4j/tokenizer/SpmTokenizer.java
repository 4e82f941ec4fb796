package org.peft4j.tokenizer;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.PriorityQueue;

/// SentencePiece BPE driven by piece scores, as llama.cpp encodes SPM vocabularies (`llm_tokenizer_spm`): start from
/// the UTF-8 characters, repeatedly merge the adjacent pair whose concatenation is a piece with the highest score
/// (leftmost on ties), and spell characters that never became a piece as `<0xAB>` byte pieces.
/// Control, unknown and user-defined pieces written in the text are matched first; each text stretch after one of
/// them (or at the start) gets the dummy-prefix space; spaces are escaped to `▁`.
public final class SpmTokenizer implements Tokenizer {
    private static final char SPACE = '\u2581';

    private final SpmVocab vocab;
    private final AddedTokens specials;
    private final TokenDecoder decoder;
    private final TokenizerConfig config;
    private final int bosId, eosId;
    private final boolean addBos, addEos;

    /// `config` supplies bos/eos token overrides and `add_bos_token` / `add_eos_token` (defaults: BOS yes, EOS no).
    public SpmTokenizer(SpmVocab vocab, TokenizerConfig config) {
        this.vocab = vocab;
        this.config = config;
        List<AddedTokens.AddedToken> sp = new ArrayList<>();
        for (int i = 0; i < vocab.size(); i++) {
            int t = vocab.types[i];
            if (t == SpmVocab.CONTROL || t == SpmVocab.UNKNOWN || t == SpmVocab.USER_DEFINED)
                sp.add(new AddedTokens.AddedToken(i, vocab.pieces[i], false, false, false, false, t != SpmVocab.USER_DEFINED));
        }
        specials = new AddedTokens(sp);
        decoder = new TokenDecoder.Sequence(List.of(new TokenDecoder.Replace(String.valueOf(SPACE), " "),
                new TokenDecoder.ByteFallback(), new TokenDecoder.Fuse(), new TokenDecoder.Strip(' ', vocab.addDummyPrefix ? 1 : 0, 0)));
        int bos = config.bosToken() != null ? tokenToId(config.bosToken()) : -1;
        int eos = config.eosToken() != null ? tokenToId(config.eosToken()) : -1;
        bosId = bos >= 0 ? bos : vocab.bosId;
        eosId = eos >= 0 ? eos : vocab.eosId;
        addBos = config.addBosToken() == null || config.addBosToken();
        addEos = config.addEosToken() != null && config.addEosToken();
    }

    public static SpmTokenizer load(Path file, TokenizerConfig config) { return new SpmTokenizer(SpmVocab.read(file), config); }

    @Override
    public int[] encode(String text, boolean addSpecial) {
        IntList out = new IntList();
        if (addSpecial && addBos && bosId >= 0) out.add(bosId);
        if (vocab.removeExtraWhitespaces) text = removeExtraWhitespaces(text);
        boolean prevSpecial = true;
        for (AddedTokens.Span s : specials.split(text)) {
            if (s.id() >= 0) {
                out.add(s.id());
                prevSpecial = true;
                continue;
            }
            String t = text.substring(s.start(), s.end());
            if (vocab.addDummyPrefix && prevSpecial) t = " " + t;
            encodeFragment(t.replace(' ', SPACE), out);
            prevSpecial = false;
        }
        if (addSpecial && addEos && eosId >= 0) out.add(eosId);
        return out.toArray();
    }

    /// A candidate merge of symbols `left` and `right` (= left's next) whose text, `size` chars long, is a piece.
    private record Bigram(int left, int right, float score, int size) {}

    /// llama.cpp `llm_tokenizer_spm_session::tokenize` over one escaped text fragment.
    private void encodeFragment(String text, IntList out) {
        int n = text.codePointCount(0, text.length());
        int[] start = new int[n], len = new int[n], prev = new int[n], next = new int[n]; // (n) symbols, in chars
        for (int i = 0, off = 0; i < n; i++) {
            start[i] = off;
            len[i] = Character.charCount(text.codePointAt(off));
            off += len[i];
            prev[i] = i - 1;
            next[i] = i + 1 < n ? i + 1 : -1;
        }
        PriorityQueue<Bigram> queue = new PriorityQueue<>((a, b) ->
                a.score() != b.score() ? Float.compare(b.score(), a.score()) : Integer.compare(a.left(), b.left()));
        for (int i = 1; i < n; i++) addBigram(text, start, len, i - 1, i, queue);
        while (!queue.isEmpty()) {
            Bigram b = queue.poll();
            if (len[b.left()] == 0 || len[b.right()] == 0 || len[b.left()] + len[b.right()] != b.size()) continue; // stale
            len[b.left()] += len[b.right()];
            len[b.right()] = 0;
            next[b.left()] = next[b.right()];
            if (next[b.right()] >= 0) prev[next[b.right()]] = b.left();
            addBigram(text, start, len, prev[b.left()], b.left(), queue);
            addBigram(text, start, len, b.left(), next[b.left()], queue);
        }
        for (int i = n > 0 ? 0 : -1; i >= 0; i = next[i]) {
            String piece = text.substring(start[i], start[i] + len[i]);
            Integer id = vocab.ids.get(piece);
            if (id != null) { out.add(id); continue; }
            for (byte b : piece.getBytes(java.nio.charset.StandardCharsets.UTF_8)) {
                int bid = vocab.byteIds[b & 0xFF];
                out.add(bid >= 0 ? bid : vocab.unkId);
            }
        }
    }

    private void addBigram(String text, int[] start, int[] len, int left, int right, PriorityQueue<Bigram> queue) {
        if (left < 0 || right < 0) return;
        int size = len[left] + len[right];
        Integer id = vocab.ids.get(text.substring(start[left], start[left] + size));
        if (id != null) queue.add(new Bigram(left, right, vocab.scores[id], size));
    }

    /// SentencePiece's `remove_extra_whitespaces`: no leading or trailing spaces, runs of spaces become one.
    private static String removeExtraWhitespaces(String s) {
        StringBuilder b = new StringBuilder(s.length());
        for (int i = 0; i < s.length(); i++) {
            char c = s.charAt(i);
            if (c == ' ' && (b.isEmpty() || b.charAt(b.length() - 1) == ' ')) continue;
            b.append(c);
        }
        if (!b.isEmpty() && b.charAt(b.length() - 1) == ' ') b.setLength(b.length() - 1);
        return b.toString();
    }

    @Override
    public String decode(int[] ids, boolean skipSpecial) {
        List<String> tokens = new ArrayList<>(ids.length);
        for (int id : ids) {
            if (id < 0 || id >= vocab.size() || skipSpecial && isSpecial(id)) continue;
            tokens.add(vocab.pieces[id]);
        }
        return TokenDecoder.join(decoder, tokens);
    }

    @Override public int vocabSize() { return vocab.size(); }

    @Override
    public int tokenToId(String token) {
        Integer id = vocab.ids.get(token);
        return id == null ? -1 : id;
    }

    @Override public String idToToken(int id) { return id >= 0 && id < vocab.size() ? vocab.pieces[id] : null; }

    @Override
    public boolean isSpecial(int id) {
        return id >= 0 && id < vocab.size() && (vocab.types[id] == SpmVocab.CONTROL || vocab.types[id] == SpmVocab.UNKNOWN);
    }

    @Override public int bosId() { return bosId; }
    @Override public int eosId() { return eosId; }
    @Override public TokenizerConfig config() { return config; }
    /// The vocabulary this tokenizer encodes with.
    public SpmVocab vocab() { return vocab; }
}
