package org.peft4j.cli;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.peft4j.testkit.Shared;
import org.peft4j.train.Checkpoint;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.FileTime;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.TreeMap;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;

import static org.junit.jupiter.api.Assertions.*;

/// The crash-safety campaign of issue 17: a training run (the bundled model, 6 steps over two epochs, a checkpoint every step) is
/// killed with SIGKILL ([Process#destroyForcibly]: no shutdown hook, no cleanup) at random moments, each time
/// restarted with the same command, until it finishes. Three kinds of moment are aimed at in turn: some time into the
/// steps, just after a checkpoint's temporary folder appears (inside `Checkpoint.save`), and just after the last
/// checkpoint appears (inside the final save of the adapter and results). After every kill:
/// - every `checkpoint-N/` the killed run left is byte-identical (tensors, optimizer, adapter; trainer_state.json but
///   for its wall-clock fields) to the uninterrupted run's `checkpoint-N/`: no half-written checkpoint is whole-looking;
/// - what a resume picks ([Checkpoint#last]) is one of those;
/// - the restart says it resumes from exactly that checkpoint.
/// Every run that finishes must end with the uninterrupted run's adapter bytes.
///
/// In the suite: `peft4j.kills` kills (default 3, one of each kind, seed `peft4j.killSeed`, default 17). The full campaign, 20 kills:
/// `./mvnw -B -o test -pl cli -am -Dtest=KillCampaignTest -Dsurefire.failIfNoSpecifiedTests=false -Dpeft4j.kills=20`
/// (with `-Dpeft4j.killSeed=N` for other moments); it prints one line per kill and a summary.
class KillCampaignTest {
    static final int STEPS = 6;
    static final int KILLS = Integer.getInteger("peft4j.kills", 3);
    static final long SEED = Long.getLong("peft4j.killSeed", 17L);
    static final ObjectMapper JSON = new ObjectMapper();
    /// Wall-clock fields of a log entry: they differ between any two runs.
    static final List<String> CLOCK = List.of("elapsed_time", "remaining_time", "tokens_per_second");

    static List<String> command(Path out) {
        Path root = Shared.root();
        return List.of(Path.of(System.getProperty("java.home"), "bin", "java").toString(),
                "--add-modules", "jdk.incubator.vector", "--enable-native-access=ALL-UNNAMED", "-XX:+UseSerialGC", "-Xmx512m",
                "-cp", System.getProperty("java.class.path"), "org.peft4j.cli.Main", "train",
                "--model_name_or_path", root.resolve("models/tinystories-656k").toString(),
                "--dataset", "identity_en", "--dataset_dir", root.resolve("data").toString(), "--template", "default",
                "--cutoff_len", "32", "--per_device_train_batch_size", "4", "--learning_rate", "2e-3", "--lora_rank", "4",
                "--max_steps", String.valueOf(STEPS), "--save_steps", "1", "--logging_steps", "1", "--lora_dropout", "0.05",
                "--threads", "1", "--gemm", "java", "--output_dir", out.toString());
    }

    enum Aim { STEPS, CHECKPOINT_WRITE, FINAL_SAVE }

    record Kill(int n, Aim aim, String where, long atMillis) {}

    @Test
    void sigkillAtRandomMomentsNeverLosesOrCorruptsWork(@TempDir Path tmp) throws Exception {
        Random rnd = new Random(SEED);
        // the uninterrupted run, timed, as the reference for every byte
        Path ref = tmp.resolve("reference");
        long t0 = System.nanoTime();
        Process p = start(ref, tmp.resolve("reference.log"));
        long firstCheckpoint = -1;
        while (p.isAlive()) {
            if (firstCheckpoint < 0 && Files.exists(ref.resolve("checkpoint-1"))) firstCheckpoint = System.nanoTime();
            Thread.sleep(2);
        }
        assertEquals(0, p.waitFor(), Files.readString(tmp.resolve("reference.log")));
        long end = System.nanoTime();
        assertTrue(firstCheckpoint > 0, "the reference run wrote no checkpoint-1");
        long startupMs = (firstCheckpoint - t0) / 1_000_000, stepMs = Math.max(20, (end - firstCheckpoint) / 1_000_000 / (STEPS - 1));
        byte[] refAdapter = Files.readAllBytes(ref.resolve("adapter_model.safetensors"));
        String refConfig = Files.readString(ref.resolve("adapter_config.json"));

        List<Kill> kills = new ArrayList<>();
        Map<String, Integer> where = new TreeMap<>();
        int chains = 0, runs = 1, finishedEarly = 0, attempts = 0;
        Path dir = null;
        while (kills.size() < KILLS) {
            assertTrue(++attempts < 4 * KILLS + 10, "too many runs finished before they could be killed: " + kills);
            if (dir == null) dir = tmp.resolve("chain-" + ++chains);
            final Path d = dir;
            Aim aim = Aim.values()[kills.size() % 3];
            Map<String, FileTime> tmpsBefore = tmpFolders(dir);
            Path expectedResume = Checkpoint.last(dir);
            long done = expectedResume == null ? 0 : Long.parseLong(expectedResume.getFileName().toString().substring("checkpoint-".length()));
            long j = done + 1 + rnd.nextInt((int) (STEPS - done));   // the step whose checkpoint the kill is aimed around
            Path log = tmp.resolve("run-" + ++runs + ".log");
            long started = System.nanoTime();
            Process k = start(dir, log);
            boolean killed = switch (aim) {
                // inside step j: after checkpoint-(j-1) appears (or, for the first step of a run, after the start-up
                // measured on the reference run), a random part of a step's time
                case STEPS -> j - 1 > done
                        ? waitThenKill(k, () -> Files.exists(d.resolve("checkpoint-" + (j - 1))), (long) (rnd.nextDouble() * stepMs))
                        : sleepThenKill(k, (long) (rnd.nextDouble() * (startupMs + stepMs)));
                // inside Checkpoint.save of step j: its temporary folder has appeared, 0-10 ms later
                case CHECKPOINT_WRITE -> waitThenKill(k, () -> newTmpFolders(d, tmpsBefore).contains(".tmp-checkpoint-" + j), rnd.nextInt(11));
                // inside the final save (adapter, tokenizer, results), after the last checkpoint: 0-10 ms after it appears
                case FINAL_SAVE -> waitThenKill(k, () -> Files.exists(d.resolve("checkpoint-" + STEPS)), rnd.nextInt(11));
            };
            long at = (System.nanoTime() - started) / 1_000_000;
            String text = Files.readString(log);
            if (!killed) {   // it finished first: a whole run, which must have the reference's bytes
                assertEquals(0, k.exitValue(), text);
                finishedEarly++;
                assertFinished(dir, refAdapter, refConfig, text);
                dir = null;
                continue;
            }
            String w = classify(dir, tmpsBefore);
            where.merge(w, 1, Integer::sum);
            Kill kill = new Kill(kills.size() + 1, aim, w, at);
            kills.add(kill);
            System.out.println("kill " + kill.n() + " (aimed at " + aim + ", " + at + " ms after start): " + w);
            assertCheckpointsWhole(dir, ref, kill);
            if (expectedResume != null && text.contains("resuming from"))
                assertTrue(text.contains("has " + expectedResume.getFileName() + ": resuming from it"),
                        "kill " + kill.n() + ": the restart should resume from " + expectedResume + ":\n" + text);
            if (aim == Aim.FINAL_SAVE || kills.size() == KILLS) {   // the same command again, to the end
                Path last = Checkpoint.last(dir);
                Path finishLog = tmp.resolve("run-" + ++runs + ".log");
                Process f = start(dir, finishLog);
                assertTrue(f.waitFor(300, TimeUnit.SECONDS), "the restart did not finish in 300 s");
                String ft = Files.readString(finishLog);
                assertEquals(0, f.exitValue(), ft);
                if (last != null) assertTrue(ft.contains("has " + last.getFileName() + ": resuming from it"), "after kill " + kill.n() + " the restart did not resume from " + last + ":\n" + ft);
                assertFinished(dir, refAdapter, refConfig, ft);
                dir = null;
            }
        }
        System.out.println("kill campaign (seed " + SEED + "): " + kills.size() + " kills, " + where + ", " + chains
                + " chains, " + finishedEarly + " runs finished before their kill, all " + chains + " chains ended with the "
                + "uninterrupted run's adapter bytes; reference run " + (end - t0) / 1_000_000 + " ms");
    }

    static Process start(Path out, Path log) throws IOException {
        return new ProcessBuilder(command(out)).redirectErrorStream(true).redirectOutput(log.toFile()).start();
    }

    /// SIGKILL after `ms`; false when the process ended on its own first.
    static boolean sleepThenKill(Process p, long ms) throws Exception {
        if (p.waitFor(ms, TimeUnit.MILLISECONDS)) return false;
        return kill(p);
    }

    /// SIGKILL `delayMs` after `condition` holds (polled every millisecond); false when the process ended first.
    static boolean waitThenKill(Process p, java.util.function.BooleanSupplier condition, long delayMs) throws Exception {
        long deadline = System.nanoTime() + 300_000_000_000L;
        while (!condition.getAsBoolean()) {
            if (!p.isAlive()) return false;
            assertTrue(System.nanoTime() < deadline, "the moment to kill never came");
            Thread.sleep(1);
        }
        if (delayMs > 0 && p.waitFor(delayMs, TimeUnit.MILLISECONDS)) return false;
        return kill(p);
    }

    static boolean kill(Process p) throws InterruptedException {
        if (!p.isAlive()) return false;
        p.destroyForcibly();   // SIGKILL on Unix
        p.waitFor();
        return p.exitValue() == 137 || p.exitValue() == 9 || p.exitValue() != 0;
    }

    /// The `.tmp-checkpoint-N` folders and their modification times.
    static Map<String, FileTime> tmpFolders(Path dir) throws IOException {
        Map<String, FileTime> m = new LinkedHashMap<>();
        if (!Files.isDirectory(dir)) return m;
        try (Stream<Path> s = Files.list(dir)) {
            for (Path p : s.toList())
                if (p.getFileName().toString().startsWith(".tmp-")) {
                    try { m.put(p.getFileName().toString(), Files.getLastModifiedTime(p)); } catch (IOException gone) { /* renamed meanwhile */ }
                }
        }
        return m;
    }

    static List<String> newTmpFolders(Path dir, Map<String, FileTime> before) {
        try {
            List<String> fresh = new ArrayList<>();
            for (var e : tmpFolders(dir).entrySet())
                if (!e.getValue().equals(before.get(e.getKey()))) fresh.add(e.getKey());
            return fresh;
        } catch (IOException e) {
            return List.of();
        }
    }

    /// Where the kill landed, judged from what it left.
    static String classify(Path dir, Map<String, FileTime> tmpsBefore) throws IOException {
        List<String> fresh = newTmpFolders(dir, tmpsBefore);
        if (!fresh.isEmpty()) return "writing " + fresh.getFirst().substring(".tmp-".length());
        if (Files.exists(dir.resolve("checkpoint-" + STEPS))) return "final save";
        Path last = Checkpoint.last(dir);
        return last == null ? "before checkpoint-1" : "after " + last.getFileName();
    }

    /// Every checkpoint-N folder equals the reference's, and the one a resume takes is one of them.
    static void assertCheckpointsWhole(Path dir, Path ref, Kill kill) throws IOException {
        if (!Files.isDirectory(dir)) return;   // killed before it made output_dir
        List<Path> cps;
        try (Stream<Path> s = Files.list(dir)) {
            cps = s.filter(p -> p.getFileName().toString().matches("checkpoint-\\d+")).toList();
        }
        for (Path cp : cps) {
            Path r = ref.resolve(cp.getFileName());
            for (String f : List.of("trainable.safetensors", "optimizer.safetensors", "adapter_model.safetensors", "adapter_config.json", "tokenizer.json"))
                assertArrayEquals(Files.readAllBytes(r.resolve(f)), Files.readAllBytes(cp.resolve(f)),
                        "kill " + kill + ": " + cp + "/" + f + " differs from the uninterrupted run's (a half-written checkpoint?)");
            assertEquals(withoutClock(JSON.readTree(r.resolve(Checkpoint.STATE_FILE).toFile())),
                    withoutClock(JSON.readTree(cp.resolve(Checkpoint.STATE_FILE).toFile())), "kill " + kill + ": " + cp + "/" + Checkpoint.STATE_FILE);
        }
        Path last = Checkpoint.last(dir);
        assertTrue(last == null || cps.contains(last), "kill " + kill + ": a resume would take " + last);
    }

    static JsonNode withoutClock(JsonNode state) {
        for (JsonNode e : state.path("logHistory")) CLOCK.forEach(((ObjectNode) e)::remove);
        for (JsonNode e : state.path("log_history")) CLOCK.forEach(((ObjectNode) e)::remove);
        return state;
    }

    static void assertFinished(Path dir, byte[] refAdapter, String refConfig, String log) throws IOException {
        assertArrayEquals(refAdapter, Files.readAllBytes(dir.resolve("adapter_model.safetensors")),
                dir + ": the adapter after kills and restarts differs from the uninterrupted run's\n" + log);
        assertEquals(refConfig, Files.readString(dir.resolve("adapter_config.json")));
        assertEquals(STEPS, JSON.readTree(dir.resolve("trainer_state.json").toFile()).path("global_step").asInt(), log);
    }
}
