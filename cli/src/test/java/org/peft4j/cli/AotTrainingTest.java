package org.peft4j.cli;

import org.junit.jupiter.api.Test;
import org.peft4j.testkit.Shared;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.stream.Stream;

import static org.junit.jupiter.api.Assertions.*;

/// The launcher's AOT training run: both generates succeed (a failure would leave the launcher without its cache,
/// silently), and the BF16 copy it writes is deleted.
class AotTrainingTest {
    @Test
    void bothGeneratesRunAndTheCopyIsDeleted() throws IOException {
        Path tmp = Path.of(System.getProperty("java.io.tmpdir"));
        long before = copies(tmp);
        assertEquals(0, AotTraining.run(Shared.root()));
        assertEquals(before, copies(tmp), "the BF16 copy is left in " + tmp);
    }

    private static long copies(Path tmp) throws IOException {
        try (Stream<Path> s = Files.list(tmp)) { return s.filter(p -> p.getFileName().toString().startsWith("peft4j-aot-bf16")).count(); }
    }
}
