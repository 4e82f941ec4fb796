package org.peft4j.tokenizer;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import org.peft4j.core.Peft4jException.FormatException;
import org.peft4j.core.Peft4jException.UnsupportedModelException;
import org.peft4j.formats.gguf.GgufFile;
import org.peft4j.formats.gguf.GgufValue;
import org.peft4j.formats.gguf.GgufWriter;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.HashMap;
import java.util.Map;

/// A tokenizer as GGUF `tokenizer.ggml.*` metadata, both ways (llama.cpp `llama-vocab.cpp`, gguf-py `vocab.py`,
/// specs.md §4.3). Two vocabulary kinds:
/// - `llama`: SentencePiece pieces with scores and types, encoded by score-driven BPE ([SpmTokenizer], which is
///   llama.cpp's `llm_tokenizer_spm`). From a `tokenizer.model` the scores are SentencePiece's own; from a
///   SentencePiece-style `tokenizer.json` (BPE with byte_fallback and the `▁` normalizer) a merged piece scores
///   −(rank of the merge that makes it), so that highest score first is lowest rank first, as HF's BPE merges.
/// - `gpt2`: byte-level BPE with the merges in rank order and a pre-tokenizer *name* (`tokenizer.ggml.pre`), which
///   llama.cpp maps to its split regexes; read back as an [HfTokenizer] over an equivalent tokenizer.json tree.
public final class GgufVocab {
    private GgufVocab() {}

    private static final ObjectMapper JSON = new ObjectMapper();
    static final String LLAMA3_SPLIT = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
    static final String QWEN2_SPLIT = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

    // ---- writing ---------------------------------------------------------------------------------------------

    /// Adds the tokenizer keys of the model folder `dir` (its tokenizer.json, else tokenizer.model, and
    /// tokenizer_config.json with the chat template). The token list is padded with `[PADi]` (type unused) up to
    /// `vocabSize`, the model's embedding rows, as the converter does.
    public static void put(GgufWriter w, Path dir, int vocabSize) {
        TokenizerConfig tc = TokenizerConfig.read(dir);
        Path json = dir.resolve("tokenizer.json"), model = dir.resolve("tokenizer.model");
        Map<String, Integer> ids;
        int unk;
        if (Files.exists(json)) {
            JsonNode root;
            try {
                root = JSON.readTree(json.toFile());
            } catch (IOException e) {
                throw new FormatException(json + " is not valid JSON: " + e.getMessage(), e);
            }
            JsonNode m = root.path("model");
            if (!"BPE".equals(m.path("type").asText("BPE")) || !m.path("vocab").isObject())
                throw new UnsupportedModelException(json + ": only BPE tokenizers can be written to GGUF (model type "
                        + m.path("type").asText() + ")");
            boolean spm = m.path("byte_fallback").asBoolean(false) || root.path("normalizer").toString().contains("\u2581");
            String[] tokens = new String[vocabSize];
            int[] types = new int[vocabSize];
            ids = new HashMap<>();
            m.get("vocab").properties().forEach(e -> ids.put(e.getKey(), e.getValue().asInt()));
            for (var e : ids.entrySet()) if (e.getValue() < vocabSize) {
                tokens[e.getValue()] = e.getKey();
                types[e.getValue()] = spm && e.getKey().matches("<0x[0-9A-F]{2}>") ? SpmVocab.BYTE : SpmVocab.NORMAL;
            }
            String unkToken = m.path("unk_token").isTextual() ? m.get("unk_token").asText() : null;
            for (JsonNode t : root.path("added_tokens")) {
                int id = t.path("id").asInt();
                if (id >= vocabSize) throw new FormatException(json + ": added token '" + t.path("content").asText() + "' has id " + id
                        + ", outside the model's " + vocabSize + " embedding rows");
                tokens[id] = t.path("content").asText();
                ids.put(tokens[id], id);
                types[id] = !t.path("special").asBoolean(false) ? SpmVocab.USER_DEFINED
                        : tokens[id].equals(unkToken) && spm ? SpmVocab.UNKNOWN : SpmVocab.CONTROL;
            }
            pad(tokens, types);
            unk = unkToken != null && ids.containsKey(unkToken) ? ids.get(unkToken) : -1;
            java.util.List<String> merges = new java.util.ArrayList<>();
            for (JsonNode mg : m.path("merges")) {
                String s = mg.isArray() ? mg.get(0).asText() + " " + mg.get(1).asText() : mg.asText();
                if (!s.startsWith("#version")) merges.add(s);
            }
            w.put("tokenizer.ggml.model", GgufValue.string(spm ? "llama" : "gpt2"));
            w.put("tokenizer.ggml.pre", GgufValue.string(spm ? "default" : preName(root.path("pre_tokenizer"), json)));
            w.put("tokenizer.ggml.tokens", GgufValue.strings(tokens));
            if (spm) {
                float[] scores = new float[vocabSize];
                Map<String, Integer> rank = new HashMap<>();
                for (int r = 0; r < merges.size(); r++) rank.putIfAbsent(merges.get(r).replace(" ", ""), r);
                for (int i = 0; i < vocabSize; i++) {
                    Integer r = rank.get(tokens[i]);
                    scores[i] = r != null ? -r : types[i] == SpmVocab.NORMAL && tokens[i].codePointCount(0, tokens[i].length()) > 1
                            ? -(merges.size() + i) : 0f;
                }
                w.put("tokenizer.ggml.scores", GgufValue.f32s(scores));
            }
            w.put("tokenizer.ggml.token_type", GgufValue.i32s(types));
            if (!spm) w.put("tokenizer.ggml.merges", GgufValue.strings(merges.toArray(String[]::new)));
        } else if (Files.exists(model)) {
            SpmVocab v = SpmVocab.read(model);
            String[] tokens = java.util.Arrays.copyOf(v.pieces, Math.max(vocabSize, v.size()));
            int[] types = java.util.Arrays.copyOf(v.types, tokens.length);
            float[] scores = java.util.Arrays.copyOf(v.scores, tokens.length);
            pad(tokens, types);
            ids = new HashMap<>(v.ids);
            unk = v.unkId;
            w.put("tokenizer.ggml.model", GgufValue.string("llama"));
            w.put("tokenizer.ggml.pre", GgufValue.string("default"));
            w.put("tokenizer.ggml.tokens", GgufValue.strings(tokens));
            w.put("tokenizer.ggml.scores", GgufValue.f32s(scores));
            w.put("tokenizer.ggml.token_type", GgufValue.i32s(types));
            if (!v.addDummyPrefix) w.put("tokenizer.ggml.add_space_prefix", GgufValue.bool(false));
            if (v.bosId >= 0 && tc.bosToken() == null) w.put("tokenizer.ggml.bos_token_id", GgufValue.u32(v.bosId));
            if (v.eosId >= 0 && tc.eosToken() == null) w.put("tokenizer.ggml.eos_token_id", GgufValue.u32(v.eosId));
        } else {
            throw new FormatException(dir + " has neither tokenizer.json nor tokenizer.model; a GGUF model needs its tokenizer");
        }
        putId(w, "bos", tc.bosToken(), ids);
        putId(w, "eos", tc.eosToken(), ids);
        if (unk >= 0) w.put("tokenizer.ggml.unknown_token_id", GgufValue.u32(unk));
        putId(w, "padding", tc.padToken(), ids);
        boolean llama = "llama".equals(w.metadataValue("tokenizer.ggml.model"));
        w.put("tokenizer.ggml.add_bos_token", GgufValue.bool(tc.addBosToken() != null ? tc.addBosToken() : llama));
        w.put("tokenizer.ggml.add_eos_token", GgufValue.bool(tc.addEosToken() != null && tc.addEosToken()));
        if (tc.chatTemplate() != null) w.put("tokenizer.chat_template", GgufValue.string(tc.chatTemplate()));
    }

    private static void pad(String[] tokens, int[] types) {
        for (int i = 0; i < tokens.length; i++)
            if (tokens[i] == null) { tokens[i] = "[PAD" + i + "]"; types[i] = SpmVocab.UNUSED; }
    }

    private static void putId(GgufWriter w, String what, String token, Map<String, Integer> ids) {
        if (token == null || !ids.containsKey(token)) return;
        w.put("tokenizer.ggml." + what + "_token_id", GgufValue.u32(ids.get(token)));
    }

    /// llama.cpp's pre-tokenizer name for a tokenizer.json `pre_tokenizer` (the converter finds it by hashing the
    /// tokenizer's output; the shapes here are those of the tokenizers it names).
    static String preName(JsonNode pre, Path file) {
        String s = pre.toString();
        if (s.contains("\"Digits\"") && s.contains("\"individual_digits\":true") && s.contains("ByteLevel")) return "smollm";
        if (s.contains("\"Split\"")) {
            String re = pre.findPath("pattern").path("Regex").asText();
            if (re.equals(LLAMA3_SPLIT)) return "llama-bpe";
            if (re.equals(QWEN2_SPLIT)) return "qwen2";
        }
        if (pre.path("type").asText().equals("ByteLevel") && pre.path("use_regex").asBoolean(true)) return "gpt-2";
        throw new UnsupportedModelException(file + ": its pre_tokenizer " + (s.length() > 200 ? s.substring(0, 200) + "..." : s)
                + " matches none of the GGUF pre-tokenizers peft4j writes (gpt-2, llama-bpe, qwen2, smollm)");
    }

    /// The tokenizer.json `pre_tokenizer` tree for a llama.cpp pre-tokenizer name.
    static JsonNode preTokenizer(String name, Path file) {
        String byteLevel = "{\"type\":\"ByteLevel\",\"add_prefix_space\":false,\"trim_offsets\":true,\"use_regex\":%s}";
        String split = "{\"type\":\"Sequence\",\"pretokenizers\":[{\"type\":\"Split\",\"pattern\":{\"Regex\":%s},"
                + "\"behavior\":\"Isolated\",\"invert\":false}," + byteLevel.formatted("false") + "]}";
        String json = switch (name) {
            case "gpt-2", "default" -> byteLevel.formatted("true");
            case "smollm" -> "{\"type\":\"Sequence\",\"pretokenizers\":[{\"type\":\"Digits\",\"individual_digits\":true},"
                    + byteLevel.formatted("true") + "]}";
            case "llama-bpe", "llama3" -> split.formatted(quote(LLAMA3_SPLIT));
            case "qwen2" -> split.formatted(quote(QWEN2_SPLIT));
            default -> throw new UnsupportedModelException(file + ": GGUF pre-tokenizer '" + name + "' is not supported; peft4j"
                    + " reads gpt-2, llama-bpe, qwen2 and smollm (or use the model's Hugging Face folder)");
        };
        try {
            return JSON.readTree(json);
        } catch (IOException e) {
            throw new IllegalStateException(e);
        }
    }

    private static String quote(String s) {
        try { return JSON.writeValueAsString(s); } catch (IOException e) { throw new IllegalStateException(e); }
    }

    // ---- reading ---------------------------------------------------------------------------------------------

    /// Opens `file` and reads its tokenizer.
    public static Tokenizer load(Path file) {
        try (GgufFile f = GgufFile.open(file)) {
            return load(f);
        }
    }

    /// The tokenizer described by `f`'s metadata.
    public static Tokenizer load(GgufFile f) {
        String kind = f.require("tokenizer.ggml.model").asString("tokenizer.ggml.model");
        String[] tokens = f.require("tokenizer.ggml.tokens").asStrings("tokenizer.ggml.tokens");
        int n = tokens.length;
        int[] types = f.get("tokenizer.ggml.token_type") != null ? f.get("tokenizer.ggml.token_type").asInts("tokenizer.ggml.token_type") : null;
        if (types != null && types.length != n) throw new FormatException(f.path() + ": tokenizer.ggml.token_type has " + types.length
                + " entries for " + n + " tokens; the file is corrupt");
        int bos = id(f, "bos", n), eos = id(f, "eos", n), unk = id(f, "unknown", n), pad = id(f, "padding", n);
        Boolean addBos = bool(f, "tokenizer.ggml.add_bos_token"), addEos = bool(f, "tokenizer.ggml.add_eos_token");
        GgufValue tpl = f.get("tokenizer.chat_template");
        TokenizerConfig config = new TokenizerConfig(bos >= 0 ? tokens[bos] : null, eos >= 0 ? tokens[eos] : null,
                pad >= 0 ? tokens[pad] : null, unk >= 0 ? tokens[unk] : null, addBos, addEos,
                tpl == null ? null : tpl.asString("tokenizer.chat_template"));
        switch (kind) {
            case "llama" -> {
                float[] scores = f.get("tokenizer.ggml.scores") != null ? f.get("tokenizer.ggml.scores").asFloats("tokenizer.ggml.scores") : new float[n];
                if (scores.length != n) throw new FormatException(f.path() + ": tokenizer.ggml.scores has " + scores.length
                        + " entries for " + n + " tokens; the file is corrupt");
                if (types == null) { types = new int[n]; java.util.Arrays.fill(types, SpmVocab.NORMAL); }
                Boolean space = bool(f, "tokenizer.ggml.add_space_prefix");
                return new SpmTokenizer(new SpmVocab(tokens, scores, types, unk, bos, eos, space == null || space, false), config);
            }
            case "gpt2" -> {
                ObjectNode root = gpt2Tree(f, tokens, types, addBos != null && addBos ? bos : -1);
                return HfTokenizer.fromJson(root, f.path().toString(), config);
            }
            default -> throw new UnsupportedModelException(f.path() + ": GGUF tokenizer model '" + kind + "' is not supported; peft4j"
                    + " reads 'llama' (SentencePiece) and 'gpt2' (byte-level BPE) vocabularies");
        }
    }

    /// A tokenizer.json tree equivalent to a `gpt2` vocabulary: byte-level BPE with the merges, CONTROL and
    /// USER_DEFINED tokens as added tokens, the pre-tokenizer of `tokenizer.ggml.pre`, BOS prepended when `bos` ≥ 0.
    static ObjectNode gpt2Tree(GgufFile f, String[] tokens, int[] types, int bos) {
        ObjectNode root = JSON.createObjectNode();
        ArrayNode added = addedTokens(root, tokens, types);
        root.putNull("normalizer");
        GgufValue pre = f.get("tokenizer.ggml.pre");
        root.set("pre_tokenizer", preTokenizer(pre == null ? "default" : pre.asString("tokenizer.ggml.pre"), f.path()));
        postProcessor(root, tokens, bos);
        root.set("decoder", JSON.createObjectNode().put("type", "ByteLevel").put("add_prefix_space", true).put("trim_offsets", true).put("use_regex", true));
        ObjectNode model = bpe(root, null, false);
        ObjectNode vocab = model.putObject("vocab");
        for (int i = 0; i < tokens.length; i++) if (!vocab.has(tokens[i])) vocab.put(tokens[i], i);
        ArrayNode merges = model.putArray("merges");
        for (String m : f.require("tokenizer.ggml.merges").asStrings("tokenizer.ggml.merges")) merges.add(m);
        return root;
    }

    /// A tokenizer.json tree equivalent to a `llama` (SentencePiece) vocabulary, as transformers' LlamaConverter
    /// writes it: `▁` normalizer, BPE with byte fallback whose merges are every split of a NORMAL piece into two
    /// pieces, ranked by the merged piece's score (highest first), and the SentencePiece decoder.
    static ObjectNode llamaTree(String[] tokens, float[] scores, int[] types, int unk, int bos, boolean spacePrefix) {
        ObjectNode root = JSON.createObjectNode();
        addedTokens(root, tokens, types);
        ArrayNode norms = root.putObject("normalizer").put("type", "Sequence").putArray("normalizers");
        if (spacePrefix) norms.addObject().put("type", "Prepend").put("prepend", "\u2581");
        norms.addObject().put("type", "Replace").<ObjectNode>set("pattern", JSON.createObjectNode().put("String", " ")).put("content", "\u2581");
        root.putNull("pre_tokenizer");
        postProcessor(root, tokens, bos);
        ArrayNode decoders = root.putObject("decoder").put("type", "Sequence").putArray("decoders");
        decoders.addObject().put("type", "Replace").<ObjectNode>set("pattern", JSON.createObjectNode().put("String", "\u2581")).put("content", " ");
        decoders.addObject().put("type", "ByteFallback");
        decoders.addObject().put("type", "Fuse");
        if (spacePrefix) decoders.addObject().put("type", "Strip").put("content", " ").put("start", 1).put("stop", 0);
        ObjectNode model = bpe(root, unk >= 0 ? tokens[unk] : null, true);
        ObjectNode vocab = model.putObject("vocab");
        Map<String, Integer> ids = new HashMap<>();
        for (int i = 0; i < tokens.length; i++) if (!vocab.has(tokens[i])) { vocab.put(tokens[i], i); ids.put(tokens[i], i); }
        record Merge(float score, int id, int left, String a, String b) {}
        java.util.List<Merge> merges = new java.util.ArrayList<>();
        for (int i = 0; i < tokens.length; i++) {
            if (types[i] != SpmVocab.NORMAL && types[i] != SpmVocab.USER_DEFINED) continue;
            String t = tokens[i];
            for (int k = t.offsetByCodePoints(0, 1); k < t.length(); k = t.offsetByCodePoints(k, 1)) {
                Integer l = ids.get(t.substring(0, k)), r = ids.get(t.substring(k));
                if (l != null && r != null) merges.add(new Merge(scores[i], i, l, t.substring(0, k), t.substring(k)));
            }
        }
        merges.sort(java.util.Comparator.comparingDouble((Merge m) -> -m.score()).thenComparingInt(Merge::id).thenComparingInt(Merge::left));
        ArrayNode mg = model.putArray("merges");
        for (Merge m : merges) mg.add(m.a() + " " + m.b());
        return root;
    }

    private static ArrayNode addedTokens(ObjectNode root, String[] tokens, int[] types) {
        root.put("version", "1.0");
        root.putNull("truncation");
        root.putNull("padding");
        ArrayNode added = root.putArray("added_tokens");
        for (int i = 0; i < tokens.length; i++) {
            int t = types == null ? SpmVocab.NORMAL : types[i];
            if (t == SpmVocab.CONTROL || t == SpmVocab.USER_DEFINED || t == SpmVocab.UNKNOWN)
                added.addObject().put("id", i).put("content", tokens[i]).put("single_word", false).put("lstrip", false)
                        .put("rstrip", false).put("normalized", false).put("special", t != SpmVocab.USER_DEFINED);
        }
        return added;
    }

    private static void postProcessor(ObjectNode root, String[] tokens, int bos) {
        if (bos < 0) { root.putNull("post_processor"); return; }
        ObjectNode pp = root.putObject("post_processor");
        pp.put("type", "TemplateProcessing");
        ArrayNode single = pp.putArray("single");
        single.addObject().putObject("SpecialToken").put("id", tokens[bos]).put("type_id", 0);
        single.addObject().putObject("Sequence").put("id", "A").put("type_id", 0);
        pp.putArray("pair");
        pp.putObject("special_tokens").putObject(tokens[bos]).put("id", tokens[bos]).putArray("ids").add(bos);
        ((ObjectNode) pp.get("special_tokens").get(tokens[bos])).putArray("tokens").add(tokens[bos]);
    }

    private static ObjectNode bpe(ObjectNode root, String unk, boolean byteFallback) {
        ObjectNode m = root.putObject("model");
        m.put("type", "BPE").putNull("dropout");
        if (unk == null) m.putNull("unk_token"); else m.put("unk_token", unk);
        m.putNull("continuing_subword_prefix").putNull("end_of_word_suffix");
        m.put("fuse_unk", byteFallback).put("byte_fallback", byteFallback).put("ignore_merges", false);
        return m;
    }

    /// Writes `tokenizer.json` and `tokenizer_config.json` (special tokens, add_bos/add_eos, chat template) for the
    /// tokenizer of `f` into `dir`, the other direction of [#put].
    public static void writeHf(GgufFile f, Path dir) {
        String kind = f.require("tokenizer.ggml.model").asString("tokenizer.ggml.model");
        String[] tokens = f.require("tokenizer.ggml.tokens").asStrings("tokenizer.ggml.tokens");
        int n = tokens.length;
        int[] types = f.get("tokenizer.ggml.token_type") != null ? f.get("tokenizer.ggml.token_type").asInts("tokenizer.ggml.token_type") : new int[n];
        if (f.get("tokenizer.ggml.token_type") == null) java.util.Arrays.fill(types, SpmVocab.NORMAL);
        int bos = id(f, "bos", n), eos = id(f, "eos", n), unk = id(f, "unknown", n), pad = id(f, "padding", n);
        Boolean addBos = bool(f, "tokenizer.ggml.add_bos_token"), addEos = bool(f, "tokenizer.ggml.add_eos_token");
        boolean llama = kind.equals("llama");
        boolean prependBos = addBos != null ? addBos : llama;
        ObjectNode tree = switch (kind) {
            case "llama" -> {
                float[] scores = f.get("tokenizer.ggml.scores") != null ? f.get("tokenizer.ggml.scores").asFloats("tokenizer.ggml.scores") : new float[n];
                Boolean space = bool(f, "tokenizer.ggml.add_space_prefix");
                yield llamaTree(tokens, scores, types, unk, prependBos ? bos : -1, space == null || space);
            }
            case "gpt2" -> gpt2Tree(f, tokens, types, prependBos ? bos : -1);
            default -> throw new UnsupportedModelException(f.path() + ": GGUF tokenizer model '" + kind + "' cannot be converted; peft4j"
                    + " converts 'llama' and 'gpt2' vocabularies");
        };
        ObjectNode tc = JSON.createObjectNode();
        tc.put("add_bos_token", prependBos).put("add_eos_token", addEos != null && addEos);
        if (bos >= 0) tc.put("bos_token", tokens[bos]);
        if (eos >= 0) tc.put("eos_token", tokens[eos]);
        if (unk >= 0) tc.put("unk_token", tokens[unk]);
        if (pad >= 0) tc.put("pad_token", tokens[pad]);
        GgufValue tpl = f.get("tokenizer.chat_template");
        if (tpl != null) tc.put("chat_template", tpl.asString("tokenizer.chat_template"));
        tc.put("tokenizer_class", llama ? "LlamaTokenizerFast" : "PreTrainedTokenizerFast");
        try {
            Files.writeString(dir.resolve("tokenizer.json"), JSON.writerWithDefaultPrettyPrinter().writeValueAsString(tree) + "\n");
            Files.writeString(dir.resolve("tokenizer_config.json"), JSON.writerWithDefaultPrettyPrinter().writeValueAsString(tc) + "\n");
        } catch (IOException e) {
            throw new java.io.UncheckedIOException("cannot write the tokenizer into " + dir + ": " + e.getMessage(), e);
        }
    }

    private static int id(GgufFile f, String what, int n) {
        String key = "tokenizer.ggml." + what + "_token_id";
        GgufValue v = f.get(key);
        if (v == null) return -1;
        long id = v.asLong(key);
        if (id < 0 || id >= n) throw new FormatException(f.path() + ": " + key + " = " + id + " is outside the " + n + " tokens");
        return (int) id;
    }

    private static Boolean bool(GgufFile f, String key) {
        GgufValue v = f.get(key);
        return v == null ? null : v.asBool(key);
    }
}
