package org.peft4j.cli;

import org.peft4j.core.DType;
import org.peft4j.model.Models;
import org.peft4j.model.RandomModels;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Comparator;
import java.util.stream.Stream;

/// The training run of the launcher's AOT cache (Java 25, JEP 483/514/515: `-XX:AOTCacheOutput`): the classes a run
/// loads, links and profiles are stored in the cache, so every later command starts with them. Two generates in one
/// JVM: the bundled float32 model, then a BF16 copy of it (written to a temporary folder and deleted), so that the
/// 16-bit paths a real checkpoint takes (its weights used in place from the file mapping, the BF16 row products, the
/// 16-bit embedding lookup) are in the cache too, not only the float32 ones. Exit code: the first failure's.
public final class AotTraining {
    private AotTraining() {}

    public static void main(String[] args) {
        Main.configureLogging(false);
        System.exit(run(Path.of(System.getProperty("peft4j.home", "."))));
    }

    /// The two generates; the exit code of the first that fails, else 0.
    static int run(Path home) {
        Path bundled = home.resolve("models").resolve("tinystories-656k");
        int rc = Main.run("generate", "-m", bundled.toString(), "--prompt", "Once upon a time", "--max-new-tokens", "64");
        return rc != 0 ? rc : generateBf16(bundled);
    }

    private static int generateBf16(Path bundled) {
        Path dir = null;
        try {
            dir = Files.createTempDirectory("peft4j-aot-bf16");
            RandomModels.save(dir, Models.loadWeights(bundled), DType.BF16);
            for (String f : new String[]{"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "generation_config.json"})
                if (Files.exists(bundled.resolve(f))) Files.copy(bundled.resolve(f), dir.resolve(f));
            return Main.run("generate", "-m", dir.toString(), "--prompt", "Once upon a time", "--max-new-tokens", "64");
        } catch (IOException e) {
            throw new UncheckedIOException("cannot write the BF16 copy of " + bundled + " for the AOT cache: " + e.getMessage(), e);
        } finally {
            if (dir != null) deleteQuietly(dir);
        }
    }

    private static void deleteQuietly(Path dir) {
        try (Stream<Path> s = Files.walk(dir)) {
            s.sorted(Comparator.reverseOrder()).forEach(p -> { try { Files.deleteIfExists(p); } catch (IOException ignored) { } });
        } catch (IOException ignored) { }
    }
}
