package org.peft4j.cli;

import org.peft4j.testkit.Npm;
import org.peft4j.testkit.Shared;

import java.io.IOException;
import java.nio.file.Path;
import java.util.List;

/// npm packages run by the tests: the official `openai` client for [ServeTest] (cli/src/test/node → cli/target/npm) and
/// llama.cpp's node binding for [LlamaCppOracleTest]; each committed package.json + package-lock.json is copied into
/// cli/target and installed there with `npm ci` once (`.ci/run` does it up front).
/// Without node or the package: the test is skipped loudly, or fails under CI (`CI=true`, as [Shared#require]).
final class NodeClient {
    private NodeClient() {}

    static Path require() throws IOException, InterruptedException {
        return Npm.require(Shared.root().resolve("cli/src/test/node"), Shared.root().resolve("cli/target/npm"),
                List.of("package.json", "package-lock.json", "openai-client.mjs"), "openai", "the official openai npm client");
    }

    /// llama.cpp's prebuilt CPU binary through npm `node-llama-cpp` (cli/src/test/node-llama → cli/target/node-llama),
    /// installed without its download step (docs/oracles.md); `npm install --no-save` with the lock, see .ci/run for
    /// why not `npm ci`.
    static Path requireLlamaCpp() throws IOException, InterruptedException {
        return Npm.require(Shared.root().resolve("cli/src/test/node-llama"), Shared.root().resolve("cli/target/node-llama"),
                List.of("package.json", "package-lock.json", "generate.mjs"), "node-llama-cpp", "llama.cpp (npm node-llama-cpp)",
                List.of("install", "--no-save", "--omit=optional"));
    }
}
