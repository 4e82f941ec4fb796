package org.peft4j.testkit;

import org.junit.jupiter.api.Assertions;
import org.junit.jupiter.api.Assumptions;

import java.nio.file.Files;
import java.nio.file.Path;

/// Locates the read-only fixtures folder `../shared` (system property `peft4j.shared`, set by the build) and the
/// project root (`peft4j.root`). A test that needs a missing fixture is skipped loudly, naming the path; under CI
/// (environment `CI=true`, as `.ci/run` and most CI services set it) it fails instead, so that a checkout without
/// the fixtures cannot pass the suite by skipping it.
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

    /// Whether this run is a CI run: the environment variable `CI` is `true` (any case).
    public static boolean ci() { return ci(System.getenv("CI")); }

    static boolean ci(String env) { return env != null && env.trim().equalsIgnoreCase("true"); }

    /// A path under ../shared. When it is missing, skips the calling test (with the message on stderr), or fails it
    /// under CI (see [#ci()]).
    public static Path require(String relative) { return require(dir(), relative, ci()); }

    /// [#require(String)] against a given fixtures folder and CI flag (the unit-testable core).
    static Path require(Path dir, String relative, boolean ci) {
        Path p = dir.resolve(relative);
        if (Files.exists(p)) return p;
        String where = "fixture " + p + " is missing; put the read-only 'shared' fixtures folder beside the checkout"
                + " (../shared) or point -Dpeft4j.shared at it";
        if (ci) return Assertions.fail("FAILED: " + where + ". CI=true, so a missing fixture fails the test instead of skipping it.");
        String msg = "SKIPPED: " + where;
        System.err.println(msg);
        return Assumptions.abort(msg);
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
