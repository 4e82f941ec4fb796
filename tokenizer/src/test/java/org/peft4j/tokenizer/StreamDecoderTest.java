package org.peft4j.tokenizer;

import com.fasterxml.jackson.databind.ObjectMapper;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;
import org.peft4j.testkit.Shared;

import java.io.InputStream;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;

/// Streaming decode equals whole-sequence decode (itself checked against HF in [HfOracleTest] and against the
/// llama.cpp vectors), and never releases half a character.
@Tag("slow")
class StreamDecoderTest {
    @ParameterizedTest
    @ValueSource(strings = {"tokenizers/smollm2-135m-instruct/tokenizer.json", "models/stories260K-hf", "models/tinystories-656k",
            "tokenizers/llama2/tokenizer.model"})
    void streamEqualsDecode(String path) throws Exception {
        Tokenizer tok = Tokenizer.load(Shared.require(path));
        String[] strings;
        try (InputStream in = getClass().getResourceAsStream("tricky-strings.json")) {
            strings = new ObjectMapper().readValue(in, String[].class);
        }
        for (String s : strings) {
            for (boolean skip : new boolean[] {false, true}) {
                int[] ids = tok.encode(s, true);
                String whole = tok.decode(ids, skip);
                StreamDecoder stream = tok.streamDecoder(skip);
                StringBuilder sb = new StringBuilder();
                for (int id : ids) {
                    String piece = stream.push(id);
                    if (!whole.contains("\uFFFD")) assertFalse(piece.contains("\uFFFD"), "half a character released for " + s);
                    sb.append(piece);
                }
                if (!whole.endsWith("\uFFFD")) assertEquals(whole, sb.toString(), "stream of " + s);
            }
        }
    }
}
