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

/// npm packages run by the tests: the official `openai` client for [ServeTest] (cli/src/test/node → cli/target/npm) and
/// llama.cpp's node binding for [LlamaCppOracleTest]; each committed package.json + package-lock.json is copied into
/// cli/target and installed there with `npm ci` once (`.ci/run` does it up front).
/// Without node or the package: the test is skipped loudly, or fails under CI (`CI=true`, as [Shared#require]).
final class NodeClient {
    private NodeClient() {}

    static Path require() throws IOException, InterruptedException {
        return install("node", "npm", List.of("package.json", "package-lock.json", "openai-client.mjs"), "openai", "the official openai npm client",
                List.of("ci"));
    }

    /// llama.cpp's prebuilt CPU binary through npm `node-llama-cpp` (cli/src/test/node-llama → cli/target/node-llama),
    /// installed without its download step (docs/oracles.md).
    static Path requireLlamaCpp() throws IOException, InterruptedException {
        return install("node-llama", "node-llama", List.of("package.json", "package-lock.json", "generate.mjs"), "node-llama-cpp",
                "llama.cpp (npm node-llama-cpp)", List.of("install", "--no-save", "--omit=optional"));   // see .ci/run for why not `npm ci`
    }

    /// Copies `files` of cli/src/test/`src` into cli/target/`target` and runs `npm <how>` there once, unless the
    /// package `probe` is already installed.
    private static synchronized Path install(String src, String target, List<String> files, String probe, String what, List<String> how)
            throws IOException, InterruptedException {
        Path from = Shared.root().resolve("cli/src/test/" + src), dir = Shared.root().resolve("cli/target/" + target);
        Files.createDirectories(dir);
        for (String f : files) Files.copy(from.resolve(f), dir.resolve(f), StandardCopyOption.REPLACE_EXISTING);
        Path installed = dir.resolve("node_modules/" + probe + "/package.json");
        if (Files.isRegularFile(installed) && works("node", "--version")) return dir;
        String why;
        if (!works("node", "--version") || !works("npm", "--version")) why = "node and npm are not installed (Debian: apt-get install nodejs npm)";
        else {
            List<String> cmd = new java.util.ArrayList<>(List.of("npm"));
            cmd.addAll(how);
            cmd.addAll(List.of("--no-audit", "--no-fund", "--prefix", dir.toString()));
            ProcessBuilder pb = new ProcessBuilder(cmd).directory(dir.toFile()).redirectErrorStream(true);
            pb.environment().put("NODE_LLAMA_CPP_SKIP_DOWNLOAD", "true");
            Process p = pb.start();
            String out = new String(p.getInputStream().readAllBytes());
            if (p.waitFor(300, TimeUnit.SECONDS) && p.exitValue() == 0 && Files.isRegularFile(installed)) return dir;
            why = "npm " + how.getFirst() + " in " + dir + " failed: " + out.strip();
        }
        String msg = what + " is missing: " + why;
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
