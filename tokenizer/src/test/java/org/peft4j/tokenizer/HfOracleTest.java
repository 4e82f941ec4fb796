package org.peft4j.tokenizer;

import ai.djl.huggingface.tokenizers.HuggingFaceTokenizer;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.peft4j.testkit.Shared;

import java.io.InputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.fail;

/// Our tokenizer.json pipeline against the Rust HF tokenizers (DJL's JNI build, the library transformers uses):
/// ids with and without special tokens, and decoded text, on a committed file of tricky strings.
@Tag("slow")
class HfOracleTest {
    static final ObjectMapper JSON = new ObjectMapper();
    static List<String> tricky;

    /// Llama 3's and Qwen2's pre-token regexes, copied from their tokenizer.json files (specs.md §6.2).
    static final String LLAMA3_REGEX = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
    static final String QWEN2_REGEX = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

    @BeforeAll
    static void readStrings() throws Exception {
        try (InputStream in = HfOracleTest.class.getResourceAsStream("tricky-strings.json")) {
            tricky = Arrays.asList(JSON.readValue(in, String[].class));
        }
    }

    @Test
    void smolLm2() throws Exception {
        compare(Shared.require("tokenizers/smollm2-135m-instruct/tokenizer.json"), true);
    }

    @Test
    void tinyStories656k() throws Exception {
        compare(Shared.require("models/tinystories-656k/tokenizer.json"), false);
    }

    @Test
    void stories260k() throws Exception {
        compare(Shared.require("models/stories260K-hf/tokenizer.json"), true);
    }

    /// SmolLM2's vocab and merges under Llama 3's pre-tokenizer (Split regex + ByteLevel without regex),
    /// `ignore_merges`, and a TemplateProcessing BOS.
    @Test
    void llama3Split(@TempDir Path dir) throws Exception {
        ObjectNode root = splitVariant(LLAMA3_REGEX);
        ((ObjectNode) root.get("model")).put("ignore_merges", true);
        root.set("post_processor", JSON.readTree("""
                {"type": "Sequence", "processors": [
                  {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": false, "use_regex": true},
                  {"type": "TemplateProcessing",
                   "single": [{"SpecialToken": {"id": "<|endoftext|>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
                   "pair": [{"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}],
                   "special_tokens": {"<|endoftext|>": {"id": "<|endoftext|>", "ids": [0], "tokens": ["<|endoftext|>"]}}}]}
                """));
        compare(write(dir, root), true);
    }

    /// SmolLM2's vocab and merges under Qwen2's pre-tokenizer and NFC normalizer.
    @Test
    void qwen2Split(@TempDir Path dir) throws Exception {
        ObjectNode root = splitVariant(QWEN2_REGEX);
        root.set("normalizer", JSON.readTree("{\"type\": \"NFC\"}"));
        compare(write(dir, root), true);
    }

    /// stories260K with the newer Metaspace pre-tokenizer (prepend_scheme "first") instead of the Prepend normalizer.
    @Test
    void stories260kMetaspace(@TempDir Path dir) throws Exception {
        ObjectNode root = (ObjectNode) JSON.readTree(Shared.require("models/stories260K-hf/tokenizer.json").toFile());
        root.putNull("normalizer");
        root.set("pre_tokenizer", JSON.readTree("{\"type\": \"Metaspace\", \"replacement\": \"\u2581\", \"prepend_scheme\": \"first\", \"split\": false}"));
        root.set("decoder", JSON.readTree("{\"type\": \"Sequence\", \"decoders\": [{\"type\": \"Metaspace\", \"replacement\": \"\u2581\", \"prepend_scheme\": \"first\", \"split\": false}, {\"type\": \"ByteFallback\"}, {\"type\": \"Fuse\"}]}"));
        compare(write(dir, root), true);
    }

    /// Added tokens with lstrip / rstrip / single_word, and merges given as legacy "a b" strings.
    @Test
    void addedTokenFlagsAndLegacyMerges(@TempDir Path dir) throws Exception {
        ObjectNode root = (ObjectNode) JSON.readTree(Shared.require("tokenizers/smollm2-135m-instruct/tokenizer.json").toFile());
        ArrayNode added = (ArrayNode) root.get("added_tokens");
        ((ObjectNode) added.get(1)).put("lstrip", true).put("rstrip", true);      // <|im_start|>
        ((ObjectNode) added.get(2)).put("single_word", true);                      // <|im_end|>
        ((ObjectNode) added.get(0)).put("special", false).put("rstrip", true);     // <|endoftext|>
        ArrayNode merges = JSON.createArrayNode();
        for (var m : root.get("model").get("merges"))
            merges.add(m.isArray() ? m.get(0).asText() + " " + m.get(1).asText() : m.asText());
        ((ObjectNode) root.get("model")).set("merges", merges);
        Path file = write(dir, root);
        List<String> extra = List.of("a <|im_start|>  b", "x<|im_end|>y", "x <|im_end|> y", "<|im_end|>", "é<|im_end|>",
                "a<|endoftext|>   b", "\t<|im_start|>\n<|im_end|>\n");
        compare(file, true, extra);
    }

    private static ObjectNode splitVariant(String regex) throws Exception {
        ObjectNode root = (ObjectNode) JSON.readTree(Shared.require("tokenizers/smollm2-135m-instruct/tokenizer.json").toFile());
        ObjectNode split = JSON.createObjectNode();
        split.put("type", "Split");
        split.set("pattern", JSON.createObjectNode().put("Regex", regex));
        split.put("behavior", "Isolated").put("invert", false);
        ObjectNode byteLevel = JSON.createObjectNode().put("type", "ByteLevel").put("add_prefix_space", false)
                .put("trim_offsets", false).put("use_regex", false);
        ObjectNode seq = JSON.createObjectNode().put("type", "Sequence");
        seq.set("pretokenizers", JSON.createArrayNode().add(split).add(byteLevel));
        root.set("pre_tokenizer", seq);
        return root;
    }

    private static Path write(Path dir, ObjectNode root) throws Exception {
        Path f = dir.resolve("tokenizer.json");
        JSON.writeValue(f.toFile(), root);
        return f;
    }

    static void compare(Path file, boolean roundTrips) throws Exception {
        compare(file, roundTrips, List.of());
    }

    /// Every string, with and without special tokens: our ids = HF ids, our decode = HF decode (both skip modes);
    /// with `roundTrips` (byte-level or full byte fallback), decode(encode(s)) = s where HF's round trip holds too.
    static void compare(Path file, boolean roundTrips, List<String> extra) throws Exception {
        Tokenizer ours = HfTokenizer.load(file, TokenizerConfig.EMPTY);
        List<String> failures = new ArrayList<>();
        List<String> strings = new ArrayList<>(tricky);
        strings.addAll(extra);
        try (InputStream in = Files.newInputStream(file);
             HuggingFaceTokenizer hf = HuggingFaceTokenizer.newInstance(in, Map.of())) {
            for (String s : strings) {
                for (boolean special : new boolean[] {false, true}) {
                    long[] expected = hf.encode(s, special, false).getIds();
                    int[] got = ours.encode(s, special);
                    if (!Arrays.equals(expected, Arrays.stream(got).asLongStream().toArray())) {
                        failures.add("encode(" + JSON.writeValueAsString(s) + ", addSpecial=" + special + ")\n   HF:   "
                                + Arrays.toString(expected) + "\n   ours: " + Arrays.toString(got));
                        continue;
                    }
                    for (boolean skip : new boolean[] {false, true}) {
                        String hd = hf.decode(expected, skip), od = ours.decode(got, skip);
                        if (!hd.equals(od))
                            failures.add("decode(" + Arrays.toString(got) + ", skip=" + skip + ")\n   HF:   "
                                    + JSON.writeValueAsString(hd) + "\n   ours: " + JSON.writeValueAsString(od));
                    }
                    String back = ours.decode(got, false);
                    if (roundTrips && !special && !back.equals(s) && hf.decode(expected, false).equals(s))
                        failures.add("round trip of " + JSON.writeValueAsString(s) + " gave " + JSON.writeValueAsString(back));
                }
            }
        }
        if (!failures.isEmpty()) fail(file + ": " + failures.size() + " mismatches\n" + String.join("\n", failures));
        assertEquals(ours.vocabSize(), (int) ours.vocabSize());
    }
}
