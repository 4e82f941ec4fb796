package org.peft4j.serve;

import com.code_intelligence.jazzer.junit.FuzzTest;
import com.fasterxml.jackson.databind.JsonNode;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.peft4j.model.GenerationConfig;
import org.peft4j.model.LlamaConfig;
import org.peft4j.testkit.Fuzz;

import java.nio.file.Path;
import java.time.Duration;
import java.util.Arrays;

import static org.junit.jupiter.api.Assertions.assertNotNull;

/// Fuzz target for what `peft4j serve` reads from the network (issue 17): a request body of `/v1/chat/completions`
/// (first input byte odd) or `/v1/completions` (even), parsed ([Server#parseBody]) and checked ([OpenAiRequest]) as the
/// server does before anything is queued. Contract: [Fuzz#contract] (an [ApiException] is our error type: a 400 with a
/// message); seeds in `ServeFuzzTestInputs/request/`; `scripts/fuzz.sh serve request` fuzzes the Jazzer twin.
class ServeFuzzTest {
    static final Path INPUTS = Path.of("src/test/resources/org/peft4j/serve/ServeFuzzTestInputs");
    static final GenerationConfig GENERATION = GenerationConfig.defaults(LlamaConfig.fromJson("""
            {"model_type": "llama", "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 1,
             "num_attention_heads": 4, "vocab_size": 512, "bos_token_id": 1, "eos_token_id": 2}""", "fuzz/config.json"));

    @Tag("jazzer")
    @FuzzTest(maxDuration = "60s")
    void request(byte[] data) {
        Fuzz.contract(data, 2_000, d -> {
            boolean chat = d.length > 0 && (d[0] & 1) == 1;
            JsonNode body = Server.parseBody(d.length == 0 ? d : Arrays.copyOfRange(d, 1, d.length));
            assertNotNull(chat ? OpenAiRequest.chat(body, GENERATION) : OpenAiRequest.completion(body, GENERATION));
        });
    }

    @Test
    void requestMutated() { Fuzz.run("request", Fuzz.seeds(INPUTS.resolve("request")), 3000, Duration.ofSeconds(5), this::request); }
}
