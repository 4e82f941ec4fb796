package org.peft4j.tokenizer;

import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.peft4j.testkit.Shared;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.fail;

/// Llama 2's SentencePiece `tokenizer.model` against llama.cpp's tokenizer test vectors (made with HF's tokenizer).
@Tag("slow")
class SpmLlamaCppTest {
    static final String SEPARATOR = "\n__ggml_vocab_test__\n";

    /// llama.cpp writes each input followed by "\n__ggml_vocab_test__\n", and one line of " id" items per input.
    static List<String> inputs(Path inp) throws Exception {
        String text = Files.readString(inp);
        List<String> out = new ArrayList<>();
        int from = 0;
        for (int at; (at = text.indexOf(SEPARATOR, from)) >= 0; from = at + SEPARATOR.length()) out.add(text.substring(from, at));
        assertEquals(text.length(), from, "text after the last separator in " + inp);
        return out;
    }

    @Test
    void llamaCppVectors() throws Exception {
        Path dir = Shared.require("tokenizers/llama2");
        List<String> inputs = inputs(dir.resolve("llamacpp-vocab-test.inp"));
        List<String> lines = Files.readAllLines(dir.resolve("llamacpp-vocab-test.out"));
        assertEquals(46, inputs.size(), "inputs (split on the separator gives 47 parts, the last one empty)");
        assertEquals(inputs.size(), lines.size(), "one output line per input");
        Tokenizer tok = Tokenizer.load(dir.resolve("tokenizer.model"));
        List<String> failures = new ArrayList<>();
        for (int i = 0; i < inputs.size(); i++) {
            String line = lines.get(i).strip();
            int[] expected = line.isEmpty() ? new int[0] : Arrays.stream(line.split(" ")).mapToInt(Integer::parseInt).toArray();
            int[] got = tok.encode(inputs.get(i), false);
            if (!Arrays.equals(expected, got))
                failures.add("#" + i + " " + inputs.get(i).replace("\n", "\\n") + "\n  expected " + Arrays.toString(expected) + "\n  got      " + Arrays.toString(got));
            String back = tok.decode(got, false);
            if (!back.equals(inputs.get(i)))
                failures.add("#" + i + " decode(encode(s)) = '" + back.replace("\n", "\\n") + "' != '" + inputs.get(i).replace("\n", "\\n") + "'");
        }
        if (!failures.isEmpty()) fail(failures.size() + " failures\n" + String.join("\n", failures));
    }

    /// BOS/EOS come from the model's TrainerSpec; `<s>` written in text is the control token, and the text after it
    /// gets its own dummy-prefix space (llama.cpp `is_prev_special`). Expected ids are spelled through the vocab.
    @Test
    void specialsAndBos() {
        Tokenizer tok = Tokenizer.load(Shared.require("tokenizers/llama2/tokenizer.model"));
        assertEquals(32000, tok.vocabSize());
        assertEquals("<s>", tok.idToToken(tok.bosId()));
        assertEquals("</s>", tok.idToToken(tok.eosId()));
        assertEquals(1, tok.bosId());
        int hello = tok.tokenToId("▁Hello");
        assertArrayEquals(new int[] {tok.bosId(), hello}, tok.encode("Hello", true));
        assertArrayEquals(new int[] {tok.bosId(), hello, tok.eosId(), hello}, tok.encode("<s>Hello</s>Hello", false));
        assertEquals("Hello", tok.decode(new int[] {1, hello}, true));
        assertEquals("<s> Hello", tok.decode(new int[] {1, hello}, false));
        assertEquals(true, tok.isSpecial(tok.eosId()));
        assertEquals(false, tok.isSpecial(hello));
        assertArrayEquals(new int[0], tok.encode("", false));
        assertArrayEquals(new int[] {1}, tok.encode("", true));
    }
}
