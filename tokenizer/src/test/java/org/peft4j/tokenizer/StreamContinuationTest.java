package org.peft4j.tokenizer;

import com.fasterxml.jackson.databind.ObjectMapper;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;
import org.peft4j.testkit.Shared;

import java.io.InputStream;
import java.util.SplittableRandom;
import java.util.stream.IntStream;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

/// A streamed continuation is what transformers' TextStreamer and llama.cpp print: the pieces add up to
/// `decode(prompt + ids)` minus `decode(prompt)`, the right side computed here from whole-sequence decodes only
/// (themselves checked against HF in [HfOracleTest] and against llama.cpp's vectors), for SentencePiece-style
/// vocabularies (byte fallback, leading-space strip) and byte-level BPE, after each token and at the end.
@Tag("slow")
class StreamContinuationTest {
    static final String[] TOKENIZERS = {"models/stories260K-hf", "models/tinystories-656k", "tokenizers/llama2/tokenizer.model",
            "tokenizers/smollm2-135m-instruct/tokenizer.json"};
    static final String[] PROMPTS = {"Once there was a cat", "Once upon a time", "Hi", "", "The café served crème brûlée",
            "Emoji at the end 🚀", "Two spaces  ", "line\n", "我想"};

    /// The bug report: the continuation of "Once there was a cat" keeps the space before "named".
    @ParameterizedTest
    @ValueSource(strings = {"models/stories260K-hf", "models/tinystories-656k", "tokenizers/llama2/tokenizer.model",
            "tokenizers/smollm2-135m-instruct/tokenizer.json"})
    void continuationKeepsItsLeadingSpace(String path) {
        Tokenizer tok = Tokenizer.load(Shared.require(path));
        int[] prompt = tok.encode("Once there was a cat", true);
        // SentencePiece-style encoders put the space before the first word themselves
        int[] ids = tok.encode("named Tom.", false);
        int[] all = IntStream.concat(IntStream.of(prompt), IntStream.of(ids)).toArray();
        if (!tok.decode(all, true).endsWith(" named Tom.")) {
            ids = tok.encode(" named Tom.", false);
            all = IntStream.concat(IntStream.of(prompt), IntStream.of(ids)).toArray();
        }
        assertEquals("Once there was a cat named Tom.", tok.decode(all, true), "the ids spell the sentence");
        assertEquals(" named Tom.", streamed(tok, prompt, ids, true), path);
    }

    /// Real continuations: prompts cut from the tricky strings (CJK, emoji, whitespace runs, special tokens), at every
    /// token boundary of the whole string.
    @ParameterizedTest
    @ValueSource(strings = {"models/stories260K-hf", "models/tinystories-656k", "tokenizers/llama2/tokenizer.model",
            "tokenizers/smollm2-135m-instruct/tokenizer.json"})
    void everySplitOfRealText(String path) throws Exception {
        Tokenizer tok = Tokenizer.load(Shared.require(path));
        String[] strings;
        try (InputStream in = getClass().getResourceAsStream("tricky-strings.json")) {
            strings = new ObjectMapper().readValue(in, String[].class);
        }
        int checked = 0;
        for (String s : strings) {
            int[] all = tok.encode(s, true);
            for (int cut = 0; cut <= all.length; cut++) {
                int[] prompt = java.util.Arrays.copyOf(all, cut), ids = java.util.Arrays.copyOfRange(all, cut, all.length);
                for (boolean skip : new boolean[] {true, false}) {
                    if (!expectable(tok, prompt, ids, skip)) continue;
                    assertEquals(expected(tok, prompt, ids, skip), streamed(tok, prompt, ids, skip),
                            path + ": " + s + " cut at token " + cut + " skipSpecial " + skip);
                    checked++;
                }
            }
        }
        assertTrue(checked > 500, "only " + checked + " cases");
    }

    /// Random continuations: for SentencePiece-style vocabularies random non-byte tokens mixed with whole characters
    /// spelled in byte tokens (a run that becomes invalid later would rewrite text already printed, which no stream
    /// can do, so those are left out), sometimes ending inside a character (released by `flush`); for byte-level BPE
    /// any ids. Special tokens included.
    @ParameterizedTest
    @ValueSource(strings = {"models/stories260K-hf", "models/tinystories-656k", "tokenizers/llama2/tokenizer.model",
            "tokenizers/smollm2-135m-instruct/tokenizer.json"})
    void randomContinuations(String path) {
        Tokenizer tok = Tokenizer.load(Shared.require(path));
        boolean byteFallback = tok.tokenToId("<0xE2>") >= 0;
        SplittableRandom rnd = new SplittableRandom(path.hashCode());
        String[] chars = {"é", "€", "🚀", "我", "ß", "😶\u200d🌫️", "ñ"};
        for (int trial = 0; trial < 300; trial++) {
            int[] prompt = tok.encode(PROMPTS[trial % PROMPTS.length], true);
            IntStream.Builder b = IntStream.builder();
            int len = 1 + rnd.nextInt(30);
            for (int i = 0; i < len; i++) {
                if (byteFallback && rnd.nextInt(5) == 0) {
                    for (int id : bytesOf(tok, chars[rnd.nextInt(chars.length)])) b.add(id);
                } else {
                    int id = rnd.nextInt(tok.vocabSize());
                    if (byteFallback && isByte(tok, id)) continue;
                    b.add(id);
                }
            }
            if (byteFallback && trial % 7 == 0) {   // ends inside a character, after a word (a byte run before it would be rewritten)
                for (int id : tok.encode("x", false)) b.add(id);
                b.add(tok.tokenToId("<0xE2>"));
                b.add(tok.tokenToId("<0x82>"));
            }
            int[] ids = b.build().toArray();
            for (boolean skip : new boolean[] {true, false}) {
                assertTrue(expectable(tok, prompt, ids, skip), "a case the stream cannot follow: " + java.util.Arrays.toString(ids));
                assertEquals(expected(tok, prompt, ids, skip), streamed(tok, prompt, ids, skip),
                        path + " trial " + trial + " prompt " + PROMPTS[trial % PROMPTS.length] + " ids " + java.util.Arrays.toString(ids));
            }
        }
    }

    /// A character split across byte tokens is released whole, with its last byte, never as U+FFFD.
    @Test
    void multiByteCharacterWaitsForItsLastByte() {
        Tokenizer tok = Tokenizer.load(Shared.require("models/stories260K-hf"));
        int[] prompt = tok.encode("Look", true);
        int[] rocket = bytesOf(tok, "🚀");
        assertEquals(4, rocket.length, "🚀 is four byte tokens in a 512-token vocabulary");
        StreamDecoder d = tok.streamDecoder(true).prefill(prompt);
        int[] space = tok.encode(" ", false);
        StringBuilder sb = new StringBuilder();
        for (int id : space) sb.append(d.push(id));
        for (int i = 0; i < 3; i++) assertEquals("", d.push(rocket[i]), "byte " + i + " of 4 is held back");
        sb.append(d.push(rocket[3]));
        assertFalse(sb.toString().contains("\uFFFD"), sb.toString());
        int[] all = IntStream.concat(IntStream.concat(IntStream.of(prompt), IntStream.of(space)), IntStream.of(rocket)).toArray();
        assertEquals(tok.decode(all, true).substring(tok.decode(prompt, true).length()), sb.toString());
        assertTrue(sb.toString().endsWith("🚀"), sb.toString());
    }

    /// Without a prompt the stream is the whole decode, as before (the leading-space strip applies to the first word).
    @ParameterizedTest
    @ValueSource(strings = {"models/stories260K-hf", "tokenizers/smollm2-135m-instruct/tokenizer.json"})
    void withoutPrefillTheStreamIsTheWholeDecode(String path) {
        Tokenizer tok = Tokenizer.load(Shared.require(path));
        int[] ids = tok.encode("Once there was a cat named Tom.", true);
        StreamDecoder d = tok.streamDecoder(true);
        StringBuilder sb = new StringBuilder();
        for (int id : ids) sb.append(d.push(id));
        sb.append(d.flush());
        assertEquals(tok.decode(ids, true), sb.toString());
    }

    static String streamed(Tokenizer tok, int[] prompt, int[] ids, boolean skip) {
        StreamDecoder d = tok.streamDecoder(skip).prefill(prompt);
        StringBuilder sb = new StringBuilder();
        for (int id : ids) sb.append(d.push(id));
        return sb.append(d.flush()).toString();
    }

    /// decode(prompt + ids) minus decode(prompt): the oracle, from two whole-sequence decodes.
    static String expected(Tokenizer tok, int[] prompt, int[] ids, boolean skip) {
        int[] all = IntStream.concat(IntStream.of(prompt), IntStream.of(ids)).toArray();
        return tok.decode(all, skip).substring(tok.decode(prompt, skip).length());
    }

    /// Whether the continuation leaves the prompt's text as it was (a byte run completed across the cut rewrites it).
    static boolean expectable(Tokenizer tok, int[] prompt, int[] ids, boolean skip) {
        int[] all = IntStream.concat(IntStream.of(prompt), IntStream.of(ids)).toArray();
        String p = tok.decode(prompt, skip);
        return tok.decode(all, skip).startsWith(p) && !p.endsWith("\uFFFD");
    }

    static int[] bytesOf(Tokenizer tok, String s) {
        byte[] bytes = s.getBytes(java.nio.charset.StandardCharsets.UTF_8);
        int[] out = new int[bytes.length];
        for (int i = 0; i < bytes.length; i++) out[i] = tok.tokenToId(String.format("<0x%02X>", bytes[i] & 0xff));
        return out;
    }

    static boolean isByte(Tokenizer tok, int id) {
        String t = tok.idToToken(id);
        return t != null && t.matches("<0x[0-9A-F]{2}>");
    }
}
