package org.peft4j.tokenizer;

import org.peft4j.core.Peft4jException.ConfigException;

import java.nio.file.Files;
import java.nio.file.Path;

/// Text ↔ token ids for a Llama-family model: a Hugging Face `tokenizer.json` (byte-level or SentencePiece-style BPE)
/// or a SentencePiece `tokenizer.model` (score-driven BPE, as llama.cpp encodes SPM vocabularies).
/// Instances are immutable and safe to share between threads.
public sealed interface Tokenizer permits HfTokenizer, SpmTokenizer {

    /// [#load(Path)] for a model with `modelVocabSize` embedding rows: a tokenizer whose ids reach past them (an added
    /// token with a too large id, or the tokenizer of another model) is refused before any text is encoded.
    static Tokenizer load(Path path, int modelVocabSize) {
        return checkVocab(load(path), path, modelVocabSize);
    }

    /// `t` (loaded from `path`) when its ids fit a model with `modelVocabSize` embedding rows; refused otherwise, as
    /// [#load(Path, int)] does (for a tokenizer loaded while the model loads).
    static Tokenizer checkVocab(Tokenizer t, Path path, int modelVocabSize) {
        if (t.vocabSize() > modelVocabSize)
            throw new ConfigException("the tokenizer of " + path + " has ids up to " + (t.vocabSize() - 1) + " ('" + t.idToToken(t.vocabSize() - 1)
                    + "'), but the model's vocab_size in config.json is " + modelVocabSize + "; fix the token's id in tokenizer.json, "
                    + "or use the tokenizer that belongs to this model");
        return t;
    }

    /// Loads from a model directory (its `tokenizer.json`, else its `tokenizer.model`) or from one of those files.
    /// `tokenizer_config.json` beside the file, when present, supplies the BOS/EOS tokens and the chat template.
    /// A `.gguf` file gives the tokenizer of its metadata ([GgufVocab]).
    static Tokenizer load(Path path) {
        if (Files.isRegularFile(path) && path.getFileName().toString().endsWith(".gguf")) return GgufVocab.load(path);
        Path file = path;
        if (Files.isDirectory(path)) {
            file = path.resolve("tokenizer.json");
            if (!Files.exists(file)) file = path.resolve("tokenizer.model");
            if (!Files.exists(file))
                throw new ConfigException("Directory " + path + " has neither tokenizer.json nor tokenizer.model; "
                        + "point at the model directory that holds the tokenizer files");
        } else if (!Files.exists(path)) {
            throw new ConfigException("Tokenizer file " + path + " does not exist; pass a model directory or its tokenizer.json / tokenizer.model");
        }
        Path dir = file.toAbsolutePath().getParent();
        TokenizerConfig config = TokenizerConfig.read(dir);
        return file.getFileName().toString().endsWith(".json")
                ? HfTokenizer.load(file, config)
                : SpmTokenizer.load(file, config);
    }

    /// The ids of `text`; with `addSpecial`, the post-processor's BOS (and EOS etc.) as the model's tokenizer adds
    /// them. Special tokens written inside `text` (such as `<|im_start|>`) always become their ids.
    int[] encode(String text, boolean addSpecial);

    /// The text of `ids`; with `skipSpecial`, special tokens (BOS, EOS, `<|im_end|>` …) are left out.
    /// Ids outside the vocabulary are skipped, as in HF tokenizers.
    String decode(int[] ids, boolean skipSpecial);

    /// Number of ids, counting added tokens (= largest id + 1).
    int vocabSize();

    /// The id of a token spelled as in the vocabulary (`"Ġthe"`, `"▁the"`, `"<s>"`), or -1.
    int tokenToId(String token);

    /// The vocabulary spelling of `id`, or `null` when out of range.
    String idToToken(int id);

    /// Whether `id` is a special token (dropped by `decode(ids, true)`).
    boolean isSpecial(int id);

    /// Beginning-of-sequence id, or -1 when the tokenizer has none.
    int bosId();

    /// End-of-sequence id (from `tokenizer_config.json`'s `eos_token`), or -1 when unknown.
    int eosId();

    /// The `tokenizer_config.json` beside the tokenizer (all fields null when there was none).
    TokenizerConfig config();

    /// A decoder for generation that turns ids, pushed one at a time, into text pieces.
    default StreamDecoder streamDecoder(boolean skipSpecial) { return new StreamDecoder(this, skipSpecial); }

    /// A stream decoder that leaves special tokens out, as chat output wants.
    default StreamDecoder streamDecoder() { return streamDecoder(true); }
}
