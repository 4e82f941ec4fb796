package org.peft4j.cli;

import org.junit.jupiter.api.Assertions;
import org.junit.jupiter.api.Assumptions;
import org.peft4j.testkit.Shared;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.List;
import java.util.concurrent.TimeUnit;

/// The official `openai` npm client for [ServeTest]: the committed cli/src/test/node (package.json, package-lock.json,
/// the script) copied into cli/target/npm and installed there with `npm ci` once (`.ci/run` does it up front).
/// Without node or the package: the test is skipped loudly, or fails under CI (`CI=true`, as [Shared#require]).
final class NodeClient {
    private NodeClient() {}

    static synchronized Path require() throws IOException, InterruptedException {
        Path src = Shared.root().resolve("cli/src/test/node"), dir = Shared.root().resolve("cli/target/npm");
        Files.createDirectories(dir);
        for (String f : List.of("package.json", "package-lock.json", "openai-client.mjs"))
            Files.copy(src.resolve(f), dir.resolve(f), StandardCopyOption.REPLACE_EXISTING);
        if (Files.isRegularFile(dir.resolve("node_modules/openai/package.json")) && works("node", "--version")) return dir;
        String why;
        if (!works("node", "--version") || !works("npm", "--version")) why = "node and npm are not installed (Debian: apt-get install nodejs npm)";
        else {
            Process p = new ProcessBuilder("npm", "ci", "--no-audit", "--no-fund", "--prefix", dir.toString())
                    .directory(dir.toFile()).redirectErrorStream(true).start();
            String out = new String(p.getInputStream().readAllBytes());
            if (p.waitFor(180, TimeUnit.SECONDS) && p.exitValue() == 0 && Files.isRegularFile(dir.resolve("node_modules/openai/package.json")))
                return dir;
            why = "npm ci in " + dir + " failed: " + out.strip();
        }
        String msg = "the official openai npm client is missing: " + why;
        if (Shared.ci()) return Assertions.fail("FAILED: " + msg + ". CI=true, so a missing client fails the test instead of skipping it.");
        System.err.println("SKIPPED: " + msg);
        return Assumptions.abort(msg);
    }

    private static boolean works(String... cmd) {
        try {
            Process p = new ProcessBuilder(cmd).redirectErrorStream(true).start();
            p.getInputStream().readAllBytes();
            return p.waitFor(20, TimeUnit.SECONDS) && p.exitValue() == 0;
        } catch (IOException | InterruptedException e) {
            return false;
        }
    }
}
