package org.peft4j.tokenizer;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;
import org.peft4j.testkit.Shared;

import java.nio.file.Path;
import java.util.stream.IntStream;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;

/// The shipped models' goldens (made by the independent numpy reference): prompt → prompt ids with BOS, and the
/// greedy continuation decoded to the reference text, in one piece and streamed id by id.
@Tag("slow")
class GoldenPromptTest {
    @ParameterizedTest
    @ValueSource(strings = {"tinystories-656k", "stories260K-hf"})
    void goldenPromptAndText(String model) throws Exception {
        Path dir = Shared.require("models/" + model);
        JsonNode g = new ObjectMapper().readTree(dir.resolve("golden/greedy.json").toFile());
        Tokenizer tok = Tokenizer.load(dir);
        int[] promptIds = ints(g.get("prompt_ids"));
        assertArrayEquals(promptIds, tok.encode(g.get("prompt").asText(), true), "prompt ids");
        assertEquals(promptIds[0], tok.bosId(), "bos from tokenizer_config.json");
        assertEquals(tok.tokenToId(tok.config().eosToken()), tok.eosId(), "eos from tokenizer_config.json");

        int[] newIds = ints(g.get("greedy_new_ids"));
        int[] all = IntStream.concat(IntStream.of(promptIds), IntStream.of(newIds)).toArray();
        String expected = g.get("greedy_text").asText();
        assertEquals(expected, tok.decode(all, true), "decode(prompt + greedy ids)");

        StreamDecoder stream = tok.streamDecoder(true);
        StringBuilder sb = new StringBuilder();
        for (int id : all) sb.append(stream.push(id));
        assertEquals(expected, sb.toString(), "streamed decode");
    }

    static int[] ints(JsonNode a) {
        int[] out = new int[a.size()];
        for (int i = 0; i < out.length; i++) out[i] = a.get(i).asInt();
        return out;
    }
}
