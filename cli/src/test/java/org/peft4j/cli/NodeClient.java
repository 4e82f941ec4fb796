package org.peft4j.cli;

import org.peft4j.testkit.Npm;
import org.peft4j.testkit.Shared;

import java.io.IOException;
import java.nio.file.Path;
import java.util.List;

/// The official `openai` npm client for [ServeTest]: the committed cli/src/test/node (package.json, package-lock.json,
/// the script) copied into cli/target/npm and installed there with `npm ci` once (`.ci/run` does it up front).
/// Without node or the package: the test is skipped loudly, or fails under CI (`CI=true`, as [Shared#require]).
final class NodeClient {
    private NodeClient() {}

    static Path require() throws IOException, InterruptedException {
        return Npm.require(Shared.root().resolve("cli/src/test/node"), Shared.root().resolve("cli/target/npm"),
                List.of("package.json", "package-lock.json", "openai-client.mjs"), "openai", "the official openai npm client");
    }
}
