package org.peft4j.board;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.peft4j.testkit.Npm;
import org.peft4j.testkit.Shared;
import org.peft4j.train.TrainConfig;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Comparator;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/// The board end to end in a real browser: npm `playwright-core` (board/src/test/node, installed into
/// board/target/npm with `npm ci`) drives Debian's chromium through board-e2e.mjs against a board on loopback:
/// a run of the bundled model is filled in, previewed, estimated, started, aborted, resumed, reloaded mid-run,
/// then the adapter is chatted with (it must answer with its trained identity), evaluated and exported; any console
/// error fails it. Screenshots of each tab land in board/target/board-e2e/. The preview's YAML is then resolved as
/// `peft4j train` resolves it and compared with what the board resolved and ran. Without node, the package or
/// chromium the test is skipped loudly, or fails under CI=true.
@Tag("slow")
class BoardBrowserTest {
    private static final ObjectMapper JSON = new ObjectMapper();
    /// Optimizer steps of the browser's run: at lr 0.01 the identity is learned well before the main job's 160.
    private static final int STEPS = 40;

    @Test
    void theBoardInABrowser() throws Exception {
        Path root = Shared.root(), npm = require(root);
        Path out = root.resolve("board/target/board-e2e"), saves = out.resolve("saves");
        deleteTree(out);
        Files.createDirectories(saves);
        Path model = root.resolve("models/tinystories-656k");
        try (Board board = Board.start(new BoardConfig("127.0.0.1", 0, saves, root.resolve("data"), List.of(root.resolve("models")), model, null, "auto"))) {
            Process p = new ProcessBuilder("node", npm.resolve("board-e2e.mjs").toString(), "http://127.0.0.1:" + board.port() + "/",
                    out.toString(), String.valueOf(STEPS)).directory(npm.toFile()).redirectErrorStream(true).start();
            StringBuilder log = new StringBuilder();
            Thread reader = Thread.ofVirtual().start(() -> {
                try (var r = p.inputReader()) {
                    r.lines().forEach(l -> { System.err.println(l); synchronized (log) { log.append(l).append('\n'); } });
                } catch (IOException ignored) { }
            });
            boolean ended = p.waitFor(300, TimeUnit.SECONDS);
            if (!ended) p.destroyForcibly();
            reader.join(5_000);
            assertTrue(ended, "the browser test did not end within 300 s:\n" + log);
            assertEquals(0, p.exitValue(), "the browser test failed (screenshots in " + out + "):\n" + log);
        }
        System.err.println("board screenshots: " + out);
        // the previewed YAML resolves, as `peft4j train FILE` resolves it, to what the board resolved
        String resolved = Files.readString(out.resolve("preview-resolved.json"));
        assertEquals(resolved, TrainConfig.load(out.resolve("preview.yaml"), List.of()).toJson());
        // and that is what ran (Resume turned overwrite_output_dir off to keep the checkpoint and recorded which one)
        ObjectNode ran = (ObjectNode) JSON.readTree(saves.resolve("e2e/identity/training_args.json").toFile());
        ObjectNode previewed = (ObjectNode) JSON.readTree(resolved);
        for (String k : List.of("overwrite_output_dir", "resume_from_checkpoint")) { ran.remove(k); previewed.remove(k); }
        assertEquals(previewed, ran);
        for (String tab : List.of("train-form", "train-running", "runs", "chat", "evaluate", "export", "train-zh"))
            assertTrue(Files.size(out.resolve(tab + ".png")) > 10_000, tab + ".png");
        assertTrue(Files.isRegularFile(saves.resolve("e2e/merged/model.safetensors")), "the merged export");
    }

    /// board/target/npm with playwright-core installed (`npm ci` of the committed lock file) and chromium present.
    static Path require(Path root) throws IOException, InterruptedException {
        Path dir = Npm.require(root.resolve("board/src/test/node"), root.resolve("board/target/npm"),
                List.of("package.json", "package-lock.json", "board-e2e.mjs"), "playwright-core", "playwright-core for the browser test");
        String chromium = System.getenv().getOrDefault("CHROMIUM", "/usr/bin/chromium");
        if (!Files.isExecutable(Path.of(chromium)))
            return Npm.missing("the browser test cannot run: " + chromium + " is missing (Debian: apt-get install chromium; .ci/run installs it)");
        return dir;
    }

    private static void deleteTree(Path p) throws IOException {
        if (!Files.exists(p)) return;
        try (Stream<Path> s = Files.walk(p)) {
            for (Path x : s.sorted(Comparator.reverseOrder()).toList()) Files.delete(x);
        }
    }
}
