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
                ObjectNode root = JSON.createObjectNode();
                ObjectNode model = root.putObject("model");
                model.put("type", "BPE");
                model.put("byte_fallback", false);
                ObjectNode vocab = model.putObject("vocab");
                ArrayNode added = root.putArray("added_tokens");
                for (int i = 0; i < n; i++) {
                    int t = types == null ? SpmVocab.NORMAL : types[i];
                    if (t == SpmVocab.CONTROL || t == SpmVocab.USER_DEFINED) {
                        ObjectNode a = added.addObject();
                        a.put("id", i).put("content", tokens[i]).put("special", t == SpmVocab.CONTROL).put("normalized", false);
                    }
                    if (!vocab.has(tokens[i])) vocab.put(tokens[i], i);
                }
                ArrayNode merges = model.putArray("merges");
                for (String m : f.require("tokenizer.ggml.merges").asStrings("tokenizer.ggml.merges")) merges.add(m);
                GgufValue pre = f.get("tokenizer.ggml.pre");
                root.set("pre_tokenizer", preTokenizer(pre == null ? "default" : pre.asString("tokenizer.ggml.pre"), f.path()));
                root.set("decoder", JSON.createObjectNode().put("type", "ByteLevel"));
                if (addBos != null && addBos && bos >= 0) {
                    ObjectNode pp = root.putObject("post_processor");
                    pp.put("type", "TemplateProcessing");
                    pp.putArray("single").addObject().putObject("SpecialToken").put("id", tokens[bos]);
                    ((ArrayNode) pp.get("single")).addObject().putObject("Sequence").put("id", "A");
                    pp.putObject("special_tokens").putObject(tokens[bos]).putArray("ids").add(bos);
                }
                return HfTokenizer.fromJson(root, f.path().toString(), config);
            }
            default -> throw new UnsupportedModelException(f.path() + ": GGUF tokenizer model '" + kind + "' is not supported; peft4j"
                    + " reads 'llama' (SentencePiece) and 'gpt2' (byte-level BPE) vocabularies");
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
