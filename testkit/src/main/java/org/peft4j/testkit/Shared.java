package org.peft4j.testkit;

import org.junit.jupiter.api.Assumptions;

import java.nio.file.Files;
import java.nio.file.Path;

/// Locates the read-only fixtures folder `../shared` (system property `peft4j.shared`, set by the build) and the
/// project root (`peft4j.root`). A test that needs a missing fixture is skipped loudly, naming the path.
public final class Shared {
    private Shared() {}

    public static Path root() {
        String p = System.getProperty("peft4j.root");
        if (p != null) return Path.of(p).toAbsolutePath().normalize();
        Path here = Path.of("").toAbsolutePath();
        while (here != null && !Files.exists(here.resolve("mvnw"))) here = here.getParent();
        return here == null ? Path.of("").toAbsolutePath() : here;
    }

    public static Path dir() {
        String p = System.getProperty("peft4j.shared");
        return p != null ? Path.of(p).toAbsolutePath().normalize() : root().resolve("../shared").normalize();
    }

    /// A path under ../shared; skips the calling test (with a message on stderr) when it is missing.
    public static Path require(String relative) {
        Path p = dir().resolve(relative);
        if (!Files.exists(p)) {
            String msg = "SKIPPED: fixture " + p + " is missing; clone the project with the read-only 'shared' folder beside it";
            System.err.println(msg);
            Assumptions.abort(msg);
        }
        return p;
    }

    /// A LLaMA-Factory example YAML bundled with the testkit, its model_name_or_path swapped for `model`.
    public static String llamaFactoryExample(String name, Path model) {
        try (var in = Shared.class.getResourceAsStream(name)) {
            if (in == null) throw new IllegalArgumentException("no bundled example " + name);
            String text = new String(in.readAllBytes(), java.nio.charset.StandardCharsets.UTF_8);
            return text.replaceFirst("(?m)^model_name_or_path: .*$", "model_name_or_path: " + model.toString().replace("\\", "/"));
        } catch (java.io.IOException e) {
            throw new java.io.UncheckedIOException(e);
        }
    }
}
