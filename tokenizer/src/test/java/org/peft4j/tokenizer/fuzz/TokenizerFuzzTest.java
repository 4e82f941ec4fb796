package org.peft4j.tokenizer.fuzz;

import com.code_intelligence.jazzer.junit.FuzzTest;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.peft4j.testkit.Fuzz;
import org.peft4j.tokenizer.HfTokenizer;
import org.peft4j.tokenizer.SpmTokenizer;
import org.peft4j.tokenizer.TokenizerConfig;

import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;

import static org.junit.jupiter.api.Assertions.assertNotNull;

/// Fuzz targets for the tokenizer files of a downloaded model (issue 17): tokenizer.json (Hugging Face tokenizers) and
/// tokenizer.model (a sentencepiece protobuf). A tokenizer that loads must also encode and decode a mixed text.
/// Contract: [Fuzz#contract]; seeds in `TokenizerFuzzTestInputs/<target>/` (the shared fixtures' tokenizers, a
/// 459-piece cut of llama2's tokenizer.model made by keeping its first pieces); `scripts/fuzz.sh tokenizer tokenizerJson`
/// fuzzes the Jazzer twin coverage-guided.
class TokenizerFuzzTest {
    static final Path INPUTS = Path.of("src/test/resources/org/peft4j/tokenizer/fuzz/TokenizerFuzzTestInputs");
    static final String TEXT = "Once upon a time, 1234 ünïcödé 🙂 <s> \t\n  end";

    @Tag("jazzer")
    @FuzzTest(maxDuration = "60s")
    void tokenizerJson(byte[] data) {
        Fuzz.contract(data, 2_000, d -> {
            Path f = Files.createTempFile("fuzz", "tokenizer.json");
            try {
                Files.write(f, d);
                HfTokenizer t = HfTokenizer.load(f, TokenizerConfig.EMPTY);
                assertNotNull(t.decode(t.encode(TEXT, true), false));
            } finally {
                Files.deleteIfExists(f);
            }
        });
    }

    @Tag("jazzer")
    @FuzzTest(maxDuration = "60s")
    void tokenizerModel(byte[] data) {
        Fuzz.contract(data, 2_000, d -> {
            Path f = Files.createTempFile("fuzz", "tokenizer.model");
            try {
                Files.write(f, d);
                SpmTokenizer t = SpmTokenizer.load(f, TokenizerConfig.EMPTY);
                assertNotNull(t.decode(t.encode(TEXT, true), false));
            } finally {
                Files.deleteIfExists(f);
            }
        });
    }

    @Test
    void tokenizerJsonMutated() {
        Fuzz.run("tokenizerJson", Fuzz.seeds(INPUTS.resolve("tokenizerJson")), 200, Duration.ofSeconds(5), this::tokenizerJson);
    }

    @Test
    void tokenizerModelMutated() {
        Fuzz.run("tokenizerModel", Fuzz.seeds(INPUTS.resolve("tokenizerModel")), 600, Duration.ofSeconds(5), this::tokenizerModel);
    }
}
