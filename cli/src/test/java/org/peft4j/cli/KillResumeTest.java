package org.peft4j.cli;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.peft4j.testkit.Shared;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.*;

/// `kill -9` during training, then the same command again: it resumes from the last checkpoint and ends with the
/// same adapter bytes as an uninterrupted run.
class KillResumeTest {
    static List<String> command(Path out) {
        Path root = Shared.root();
        List<String> c = new ArrayList<>(List.of(Path.of(System.getProperty("java.home"), "bin", "java").toString(),
                "--add-modules", "jdk.incubator.vector", "--enable-native-access=ALL-UNNAMED",
                "-cp", System.getProperty("java.class.path"), "org.peft4j.cli.Main", "train",
                "--model_name_or_path", root.resolve("models/tinystories-656k").toString(),
                "--dataset", "identity_en", "--dataset_dir", root.resolve("data").toString(), "--template", "default",
                "--cutoff_len", "96", "--per_device_train_batch_size", "2", "--learning_rate", "2e-3", "--lora_rank", "4",
                "--max_steps", "60", "--save_steps", "4", "--logging_steps", "4", "--lora_dropout", "0.05",
                "--threads", "1", "--gemm", "java", "--output_dir", out.toString()));
        return c;
    }

    static Process start(Path out, Path log) throws Exception {
        return new ProcessBuilder(command(out)).redirectErrorStream(true).redirectOutput(log.toFile()).start();
    }

    @Test
    void killNineThenResumeGivesTheSameAdapter(@TempDir Path tmp) throws Exception {
        Path a = tmp.resolve("straight"), b = tmp.resolve("killed");
        Process p = start(a, tmp.resolve("a.log"));
        assertTrue(p.waitFor(300, TimeUnit.SECONDS) && p.exitValue() == 0, Files.readString(tmp.resolve("a.log")));

        Process k = start(b, tmp.resolve("b1.log"));
        long deadline = System.nanoTime() + 120_000_000_000L;
        while (!Files.exists(b.resolve("checkpoint-12")) && k.isAlive() && System.nanoTime() < deadline) Thread.sleep(5);
        assertTrue(k.isAlive(), "the run finished before it could be killed; " + Files.readString(tmp.resolve("b1.log")));
        k.destroyForcibly();                                       // SIGKILL: no shutdown hooks, no cleanup
        k.waitFor();
        assertFalse(Files.exists(b.resolve("adapter_model.safetensors")), "killed before the end");

        Process r = start(b, tmp.resolve("b2.log"));
        assertTrue(r.waitFor(300, TimeUnit.SECONDS) && r.exitValue() == 0, Files.readString(tmp.resolve("b2.log")));
        assertTrue(Files.readString(tmp.resolve("b2.log")).contains("resuming from"), Files.readString(tmp.resolve("b2.log")));
        assertArrayEquals(Files.readAllBytes(a.resolve("adapter_model.safetensors")), Files.readAllBytes(b.resolve("adapter_model.safetensors")),
                "adapter after kill -9 and resume differs from the uninterrupted run");
    }
}
