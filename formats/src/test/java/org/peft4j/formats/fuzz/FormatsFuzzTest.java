package org.peft4j.formats.fuzz;

import com.code_intelligence.jazzer.junit.FuzzTest;
import org.peft4j.core.Peft4jException;
import org.peft4j.formats.gguf.GgufFile;
import org.peft4j.formats.safetensors.SafeTensors;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;

import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;

/// Fuzz targets for the file parsers a user downloads from strangers (issue 17). The contract: a parsed file, or our
/// own [Peft4jException] with a message; any other exception fails, and Jazzer's per-input timeout catches a hang.
/// In the normal suite (regression mode) each target runs its seeds in `FormatsFuzzTestInputs/<target>/` and the
/// crashing inputs kept there; `JAZZER_FUZZ=1 ./mvnw -o test -pl formats -am -Dtest=FormatsFuzzTest` fuzzes for
/// `maxDuration` per target.
class FormatsFuzzTest {

    @FuzzTest(maxDuration = "60s")
    void safetensors(byte[] data) throws IOException {
        Path f = Files.createTempFile("fuzz", ".safetensors");
        try {
            Files.write(f, data);
            try (SafeTensors st = SafeTensors.open(f)) {
                for (String name : st.tensors().keySet()) assertNotNull(st.bytes(name));
            }
        } catch (Peft4jException e) {
            assertFalse(e.getMessage() == null || e.getMessage().isBlank(), "an error without a message");
        } finally {
            Files.deleteIfExists(f);
        }
    }

    @FuzzTest(maxDuration = "60s")
    void gguf(byte[] data) throws IOException {
        Path f = Files.createTempFile("fuzz", ".gguf");
        try {
            Files.write(f, data);
            try (GgufFile g = GgufFile.open(f)) {
                assertNotNull(g.tensors());
            }
        } catch (Peft4jException e) {
            assertFalse(e.getMessage() == null || e.getMessage().isBlank(), "an error without a message");
        } finally {
            Files.deleteIfExists(f);
        }
    }
}
