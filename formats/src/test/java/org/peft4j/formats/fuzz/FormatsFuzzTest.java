package org.peft4j.formats.fuzz;

import com.code_intelligence.jazzer.junit.FuzzTest;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.peft4j.testkit.Fuzz;
import org.peft4j.formats.gguf.GgufFile;
import org.peft4j.formats.safetensors.SafeTensors;

import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;

import static org.junit.jupiter.api.Assertions.assertNotNull;

/// Fuzz targets for the file parsers a user downloads from strangers (issue 17). The contract ([Fuzz#contract]): a
/// parsed file, or our own Peft4jException with a message; no other exception, no hang, allocation bounded by the
/// input size. The suite runs each target's seeds in `FormatsFuzzTestInputs/<target>/` (and the crashing inputs kept
/// there) and a fixed number of inputs mutated from them ([Fuzz#run]); `scripts/fuzz.sh formats safetensors` fuzzes
/// the Jazzer twin coverage-guided.
class FormatsFuzzTest {

    @Tag("jazzer")
    @FuzzTest(maxDuration = "60s")
    void safetensors(byte[] data) {
        Fuzz.contract(data, 1_000, d -> {
            Path f = Files.createTempFile("fuzz", ".safetensors");
            try {
                Files.write(f, d);
                try (SafeTensors st = SafeTensors.open(f)) {
                    for (String name : st.tensors().keySet()) assertNotNull(st.bytes(name));
                }
            } finally {
                Files.deleteIfExists(f);
            }
        });
    }

    @Tag("jazzer")
    @FuzzTest(maxDuration = "60s")
    void gguf(byte[] data) {
        Fuzz.contract(data, 1_000, d -> {
            Path f = Files.createTempFile("fuzz", ".gguf");
            try {
                Files.write(f, d);
                try (GgufFile g = GgufFile.open(f)) {
                    assertNotNull(g.tensors());
                }
            } finally {
                Files.deleteIfExists(f);
            }
        });
    }

    static final Path INPUTS = Path.of("src/test/resources/org/peft4j/formats/fuzz/FormatsFuzzTestInputs");

    @Test
    void safetensorsMutated() { Fuzz.run("safetensors", Fuzz.seeds(INPUTS.resolve("safetensors")), 600, Duration.ofSeconds(5), this::safetensors); }

    @Test
    void ggufMutated() { Fuzz.run("gguf", Fuzz.seeds(INPUTS.resolve("gguf")), 600, Duration.ofSeconds(5), this::gguf); }
}
