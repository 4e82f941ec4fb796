package org.peft4j.tokenizer;

import com.fasterxml.jackson.databind.JsonNode;
import org.peft4j.core.Peft4jException.FormatException;
import org.peft4j.core.Peft4jException.UnsupportedModelException;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

/// A Hugging Face `tokenizer.json` with a BPE model: added tokens → normalizer → pre-tokenizer → BPE → post-processor,
/// and the decoder chain back. Covers byte-level BPE (GPT-2, Llama 3, Qwen2, SmolLM) and SentencePiece-style BPE
/// (Llama 2 conversions). Reference: HF tokenizers `tokenizer/mod.rs` (`encode_single_sequence`, `decode`).
public final class HfTokenizer implements Tokenizer {
    private final AddedTokens rawAdded;        // added tokens with normalized=false: matched on the raw text
    private final AddedTokens normalizedAdded; // normalized=true: matched after the normalizer
    private final Normalizer normalizer;       // or null
    private final PreTokenizer preTokenizer;   // or null
    private final BpeModel model;
    private final TokenDecoder decoder;        // or null: tokens joined with spaces
    private final int[] prefix, suffix;        // post-processor ids around a single sequence
    private final String[] idToToken;          // (vocabSize) added tokens win over the model vocab
    private final boolean[] special;           // (vocabSize)
    private final Map<String, Integer> addedIds;
    private final TokenizerConfig config;
    private final int bosId, eosId;

    private HfTokenizer(List<AddedTokens.AddedToken> added, Normalizer normalizer, PreTokenizer preTokenizer, BpeModel model,
                        TokenDecoder decoder, int[] prefix, int[] suffix, TokenizerConfig config, String file) {
        this.rawAdded = new AddedTokens(added.stream().filter(t -> !t.normalized()).toList());
        // normalized=true tokens are searched for in their normalized spelling (Prepend "▁" makes "▁<unk>")
        this.normalizedAdded = new AddedTokens(added.stream().filter(AddedTokens.AddedToken::normalized)
                .map(t -> normalizer == null ? t : new AddedTokens.AddedToken(t.id(), normalizer.apply(t.content()),
                        t.singleWord(), t.lstrip(), t.rstrip(), true, t.special()))
                .toList());
        this.normalizer = normalizer; this.preTokenizer = preTokenizer; this.model = model; this.decoder = decoder;
        this.prefix = prefix; this.suffix = suffix; this.config = config;
        // ids index tables: a negative id, or one far past the number of tokens (real vocabularies are dense), would
        // throw or allocate gigabytes, so it is refused with the numbers
        long tokens = (long) model.vocab.size() + added.size(), limit = 4 * tokens + 65_536;
        int size = 0;
        for (Map.Entry<String, Integer> e : model.vocab.entrySet()) size = Math.max(size, checkId(e.getValue(), e.getKey(), tokens, limit, file) + 1);
        for (AddedTokens.AddedToken t : added) size = Math.max(size, checkId(t.id(), t.content(), tokens, limit, file) + 1);
        idToToken = new String[size];
        special = new boolean[size];
        for (Map.Entry<String, Integer> e : model.vocab.entrySet()) idToToken[e.getValue()] = e.getKey();
        addedIds = new HashMap<>();
        for (AddedTokens.AddedToken t : added) {
            idToToken[t.id()] = t.content();
            special[t.id()] = t.special();
            addedIds.put(t.content(), t.id());
        }
        int bos = config.bosToken() != null ? tokenToId(config.bosToken()) : -1;
        this.bosId = bos >= 0 ? bos : prefix.length > 0 ? prefix[0] : -1;
        this.eosId = config.eosToken() != null ? tokenToId(config.eosToken()) : -1;
    }

    private static int checkId(int id, String token, long tokens, long limit, String file) {
        if (id < 0 || id >= limit)
            throw new FormatException(file + ": token '" + (token.length() > 40 ? token.substring(0, 40) + "..." : token) + "' has id " + id
                    + ", outside [0, " + limit + ") for a vocabulary of " + tokens + " tokens; the file is corrupt, re-download it");
        return id;
    }

    /// Reads a tokenizer.json; `config` is the tokenizer_config.json beside it (or [TokenizerConfig#EMPTY]).
    /// The file is read with a streaming parser ([TokenizerJson]): no JSON tree of its vocabulary and merges.
    public static HfTokenizer load(Path file, TokenizerConfig config) {
        return fromParts(TokenizerJson.read(file), file.toString(), config);
    }

    /// A tokenizer from a parsed tokenizer.json tree; `file` names its origin in error messages (a path, or a GGUF
    /// file whose metadata the tree was built from).
    static HfTokenizer fromJson(JsonNode root, String file, TokenizerConfig config) {
        if (root == null || !root.isObject())
            throw new FormatException(file + " has no 'model' object, so it is not a Hugging Face tokenizer.json; "
                    + "re-download it from the model repository");
        return fromParts(TokenizerJson.read(root, file), file, config);
    }

    private static HfTokenizer fromParts(TokenizerJson json, String file, TokenizerConfig config) {
        JsonNode root = json.rest();
        if (!root.path("model").isObject())
            throw new FormatException(file + " has no 'model' object, so it is not a Hugging Face tokenizer.json; "
                    + "re-download it from the model repository");
        JsonNode m = root.get("model");
        String type = m.path("type").asText("BPE");
        if (!type.equals("BPE"))
            throw new UnsupportedModelException(file + ": tokenizer model type '" + type + "' is not supported; only BPE is "
                    + "(byte-level or SentencePiece-style). For a SentencePiece model use its tokenizer.model");
        if (!m.path("continuing_subword_prefix").isNull() && m.has("continuing_subword_prefix")
                || !m.path("end_of_word_suffix").isNull() && m.has("end_of_word_suffix"))
            throw new UnsupportedModelException(file + ": BPE with continuing_subword_prefix/end_of_word_suffix is not supported");
        if (json.vocab() == null || json.merges() == null)
            throw new FormatException(file + ": model.vocab must be an object and model.merges a list; the file is corrupt");
        Map<String, Integer> vocab = json.vocab();
        List<String[]> pairs = json.merges();
        String unk = m.path("unk_token").isTextual() ? m.get("unk_token").asText() : null;
        int unkId = -1;
        if (unk != null) {
            Integer id = vocab.get(unk);
            if (id == null) throw new FormatException(file + ": unk_token '" + unk + "' is not in the vocab");
            unkId = id;
        }
        if (m.path("dropout").isNumber() && m.get("dropout").asDouble() > 0)
            throw new UnsupportedModelException(file + ": BPE dropout " + m.get("dropout") + " is for training tokenizers; set it to null");
        BpeModel model = new BpeModel(vocab, BpeModel.mergeTable(vocab, pairs, file), unkId,
                m.path("fuse_unk").asBoolean(false), m.path("byte_fallback").asBoolean(false), m.path("ignore_merges").asBoolean(false));

        List<AddedTokens.AddedToken> added = new ArrayList<>();
        for (JsonNode t : root.path("added_tokens")) {
            if (!t.path("id").canConvertToInt() || !t.path("content").isTextual())
                throw new FormatException(file + ": added token " + t + " needs an integer 'id' and a string 'content'");
            added.add(new AddedTokens.AddedToken(t.get("id").asInt(), t.get("content").asText(), t.path("single_word").asBoolean(false),
                    t.path("lstrip").asBoolean(false), t.path("rstrip").asBoolean(false), t.path("normalized").asBoolean(false),
                    t.path("special").asBoolean(false)));
        }
        List<Integer> pre = new ArrayList<>(), post = new ArrayList<>();
        readPostProcessor(root.get("post_processor"), pre, post, file);
        return new HfTokenizer(added, Normalizer.parse(root.get("normalizer")), PreTokenizer.parse(root.get("pre_tokenizer")),
                model, TokenDecoder.parse(root.get("decoder")),
                pre.stream().mapToInt(Integer::intValue).toArray(), post.stream().mapToInt(Integer::intValue).toArray(), config, file);
    }

    /// The ids a post-processor puts before (`pre`) and after (`post`) a single sequence.
    private static void readPostProcessor(JsonNode n, List<Integer> pre, List<Integer> post, String file) {
        if (n == null || n.isNull()) return;
        String type = n.path("type").asText();
        switch (type) {
            case "ByteLevel" -> { }
            case "Sequence" -> { for (JsonNode p : n.path("processors")) readPostProcessor(p, pre, post, file); }
            case "TemplateProcessing" -> {
                boolean seenSequence = false;
                for (JsonNode item : n.path("single")) {
                    if (item.has("Sequence")) { seenSequence = true; continue; }
                    String id = item.path("SpecialToken").path("id").asText();
                    JsonNode ids = n.path("special_tokens").path(id).path("ids");
                    if (!ids.isArray() || ids.isEmpty())
                        throw new FormatException(file + ": TemplateProcessing uses special token '" + id + "' that special_tokens does not define");
                    for (JsonNode i : ids) (seenSequence ? post : pre).add(i.asInt());
                }
            }
            case "RobertaProcessing", "BertProcessing" -> {
                pre.add(n.path("cls").path(1).asInt());
                post.add(n.path("sep").path(1).asInt());
            }
            default -> throw new UnsupportedModelException(file + ": post_processor type '" + type
                    + "' is not supported; supported: TemplateProcessing, ByteLevel, Sequence, RobertaProcessing, BertProcessing");
        }
    }

    @Override
    public int[] encode(String text, boolean addSpecial) {
        IntList out = new IntList();
        if (addSpecial) out.addAll(prefix);
        for (AddedTokens.Span raw : rawAdded.split(text)) {
            if (raw.id() >= 0) { out.add(raw.id()); continue; }
            String piece = text.substring(raw.start(), raw.end());
            String norm = normalizer == null ? piece : normalizer.apply(piece);
            for (AddedTokens.Span sp : normalizedAdded.split(norm)) {
                if (sp.id() >= 0) out.add(sp.id());
                else encodeWords(norm.substring(sp.start(), sp.end()), raw.start() == 0 && sp.start() == 0, out);
            }
        }
        if (addSpecial) out.addAll(suffix);
        return out.toArray();
    }

    private void encodeWords(String text, boolean atStart, IntList out) {
        List<PreTokenizer.Piece> pieces = List.of(new PreTokenizer.Piece(text, atStart));
        if (preTokenizer != null) {
            List<PreTokenizer.Piece> words = new ArrayList<>();
            preTokenizer.apply(pieces, words);
            pieces = words;
        }
        for (PreTokenizer.Piece p : pieces) model.encode(p.text(), out);
    }

    @Override
    public String decode(int[] ids, boolean skipSpecial) {
        List<String> tokens = new ArrayList<>(ids.length);
        for (int id : ids) {
            if (id < 0 || id >= idToToken.length || idToToken[id] == null) continue;
            if (skipSpecial && special[id]) continue;
            tokens.add(idToToken[id]);
        }
        return decoder == null ? String.join(" ", tokens) : TokenDecoder.join(decoder, tokens);
    }

    @Override public int vocabSize() { return idToToken.length; }

    @Override
    public int tokenToId(String token) {
        Integer id = addedIds.get(token);
        if (id == null) id = model.vocab.get(token);
        return id == null ? -1 : id;
    }

    @Override public String idToToken(int id) { return id >= 0 && id < idToToken.length ? idToToken[id] : null; }
    @Override public boolean isSpecial(int id) { return id >= 0 && id < special.length && special[id]; }
    @Override public int bosId() { return bosId; }
    @Override public int eosId() { return eosId; }
    @Override public TokenizerConfig config() { return config; }
}
