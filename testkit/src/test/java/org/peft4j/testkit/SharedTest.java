package org.peft4j.testkit;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.opentest4j.AssertionFailedError;
import org.opentest4j.TestAbortedException;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/// The fixture locator's two modes: a missing fixture skips a test on a developer's machine and fails it under CI.
/// assertThrows checks the exact kind: a skip where a failure is expected (or the reverse) fails these tests.
class SharedTest {
    @TempDir Path dir;

    @Test
    void missingFixtureFailsUnderCi() {
        AssertionFailedError e = assertThrows(AssertionFailedError.class, () -> Shared.require(dir, "models/none", true));
        String path = dir.resolve("models/none").toString();
        assertTrue(e.getMessage().contains(path), "the message names the missing path: " + e.getMessage());
        assertTrue(e.getMessage().contains("CI=true"), "the message says why it fails: " + e.getMessage());
        assertTrue(e.getMessage().contains("peft4j.shared"), "the message says what to do: " + e.getMessage());
    }

    @Test
    void missingFixtureSkipsOutsideCi() {
        TestAbortedException e = assertThrows(TestAbortedException.class, () -> Shared.require(dir, "models/none", false));
        assertTrue(e.getMessage().contains(dir.resolve("models/none").toString()), e.getMessage());
    }

    @Test
    void presentFixtureIsReturnedInBothModes() throws IOException {
        Path f = Files.createDirectories(dir.resolve("models/m")).resolve("config.json");
        Files.writeString(f, "{}");
        assertEquals(f, Shared.require(dir, "models/m/config.json", true));
        assertEquals(f, Shared.require(dir, "models/m/config.json", false));
    }

    /// Only `CI=true` (any case, as GitHub Actions, GitLab and others set it) means CI.
    @Test
    void ciIsReadFromTheEnvironmentValue() {
        assertTrue(Shared.ci("true"));
        assertTrue(Shared.ci("TRUE"));
        assertFalse(Shared.ci(null));
        assertFalse(Shared.ci(""));
        assertFalse(Shared.ci("false"));
        assertFalse(Shared.ci("0"));
    }
}
