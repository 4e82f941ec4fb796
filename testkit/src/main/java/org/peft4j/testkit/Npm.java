package org.peft4j.testkit;

import org.junit.jupiter.api.Assertions;
import org.junit.jupiter.api.Assumptions;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.List;
import java.util.concurrent.TimeUnit;

/// npm packages that tests run against peft4j (the openai client, playwright-core): a committed folder with
/// package.json, package-lock.json and scripts is copied into a target folder and installed there with `npm ci` once
/// (`.ci/run` does it up front). When node, npm or the install is missing, the test is skipped loudly, or fails under
/// CI, as [Shared#require] does for fixtures.
public final class Npm {
    private Npm() {}

    /// `dir` holding `files` from `src` and the installed `pkg` (node_modules/pkg); `what` names it in the message.
    public static Path require(Path src, Path dir, List<String> files, String pkg, String what) throws IOException, InterruptedException {
        return require(src, dir, files, pkg, what, List.of("ci"));
    }

    /// As above, installed with `npm <install...>` (e.g. `install --no-save` where `npm ci` cannot be used);
    /// node-llama-cpp's binary download step is always off (its prebuilt binary comes as an npm package).
    public static synchronized Path require(Path src, Path dir, List<String> files, String pkg, String what, List<String> install)
            throws IOException, InterruptedException {
        Files.createDirectories(dir);
        for (String f : files) Files.copy(src.resolve(f), dir.resolve(f), StandardCopyOption.REPLACE_EXISTING);
        String why;
        if (!works("node", "--version") || !works("npm", "--version")) why = "node and npm are not installed (Debian: apt-get install nodejs npm)";
        else if (Files.isRegularFile(dir.resolve("node_modules").resolve(pkg).resolve("package.json"))) return dir;
        else {
            List<String> cmd = new java.util.ArrayList<>(List.of("npm"));
            cmd.addAll(install);
            cmd.addAll(List.of("--no-audit", "--no-fund", "--prefix", dir.toString()));
            ProcessBuilder pb = new ProcessBuilder(cmd).directory(dir.toFile()).redirectErrorStream(true);
            pb.environment().put("NODE_LLAMA_CPP_SKIP_DOWNLOAD", "true");
            Process p = pb.start();
            String out = new String(p.getInputStream().readAllBytes());
            if (p.waitFor(300, TimeUnit.SECONDS) && p.exitValue() == 0 && Files.isRegularFile(dir.resolve("node_modules").resolve(pkg).resolve("package.json")))
                return dir;
            why = "npm " + String.join(" ", install) + " in " + dir + " failed: " + out.strip();
        }
        return missing(what + " is missing: " + why);
    }

    /// Skips the calling test with `message` on stderr, or fails it under CI.
    public static <T> T missing(String message) {
        if (Shared.ci()) return Assertions.fail("FAILED: " + message + ". CI=true, so it fails the test instead of skipping it.");
        System.err.println("SKIPPED: " + message);
        return Assumptions.abort(message);
    }

    /// Whether `cmd` runs and exits 0 within 20 s.
    public static boolean works(String... cmd) {
        try {
            Process p = new ProcessBuilder(cmd).redirectErrorStream(true).start();
            p.getInputStream().readAllBytes();
            return p.waitFor(20, TimeUnit.SECONDS) && p.exitValue() == 0;
        } catch (IOException e) {
            return false;
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            return false;
        }
    }
}
