package org.peft4j.spark;

import org.apache.spark.sql.SparkSession;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.peft4j.model.adapter.lora.LoraWeights;
import org.peft4j.model.adapter.lora.PeftAdapter;
import org.peft4j.testkit.Shared;
import org.peft4j.train.TrainConfig;
import org.peft4j.train.recipe.FinetuneRecipe;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;

import static org.junit.jupiter.api.Assertions.*;

/// One barrier stage of 2 tasks in Spark local mode (one JVM, loopback): the adapter equals one process of
/// batch 2·B within float rounding, and one process of batch B accumulating 2 micro-batches bit for bit; a task that
/// dies mid-run fails the stage, Spark runs it again, and the job resumes from its last checkpoint to the same bits,
/// with output_dir a Hadoop FileSystem URI (file://) the checkpoints are uploaded to and pulled back from; the same
/// job with the dataset's rows as a DataFrame (read as `--input` reads it) gives the same bits.
class PeftSparkTest {
    static List<String> flags(Path out, int batch, int accum) { return flags(out.toString(), batch, accum); }

    static List<String> flags(String out, int batch, int accum) {
        return new ArrayList<>(List.of("--model_name_or_path", Shared.root().resolve("models/tinystories-656k").toString(),
                "--output_dir", out, "--dataset", "identity_en", "--dataset_dir", Shared.root().resolve("data").toString(),
                "--template", "default", "--cutoff_len", "64", "--per_device_train_batch_size", "" + batch,
                "--gradient_accumulation_steps", "" + accum, "--learning_rate", "3e-3", "--logging_steps", "1", "--save_steps", "2",
                "--gemm", "java", "--max_steps", "4", "--lora_rank", "4", "--lora_target", "all"));
    }

    static Map<String, float[]> adapter(Path dir) {
        Map<String, float[]> m = new TreeMap<>();
        for (Map.Entry<PeftAdapter.Target, LoraWeights> e : PeftAdapter.read(dir).weights().entrySet()) {
            m.put(e.getKey().key(PeftAdapter.A), e.getValue().a());
            m.put(e.getKey().key(PeftAdapter.B), e.getValue().b());
        }
        return m;
    }

    static List<String> losses(Path out) throws Exception {
        List<String> l = new ArrayList<>();
        for (String line : Files.readAllLines(out.resolve("trainer_log.jsonl")))
            l.add(line.replaceAll(".*(\"current_steps\":\\d+).*(\"loss\":[-0-9.eE]+).*", "$1 $2"));
        return l;
    }

    static double maxDiff(Map<String, float[]> a, Map<String, float[]> b) {
        assertEquals(a.keySet(), b.keySet());
        double d = 0;
        for (String k : a.keySet())
            for (int i = 0; i < a.get(k).length; i++) d = Math.max(d, Math.abs(a.get(k)[i] - b.get(k)[i]));
        return d;
    }

    /// Thrown by the test's listener to kill rank 1 in the first attempt of the stage.
    static final class Killed extends RuntimeException {
        Killed(String m) { super(m); }
    }

    /// What the tasks' listeners saw (local mode: the tasks run in this JVM; a captured list would be a copy).
    static final List<String> ATTEMPTS = new java.util.concurrent.CopyOnWriteArrayList<>();

    /// One Spark job whose rank 1 dies after step 3 of the stage's first attempt: Spark runs the stage again, the
    /// ranks resume from checkpoint-2 (pulled back from the file:// output_dir), and the job ends with the adapter
    /// of the uninterrupted run. A second job reads the dataset as a DataFrame.
    @Test
    void twoTasksEqualOneProcessOfTwiceTheBatchEvenWhenATaskIsKilled(@TempDir Path tmp) throws Exception {
        Path dist = tmp.resolve("spark"), single = tmp.resolve("single"), accumulated = tmp.resolve("accumulated"), frame = tmp.resolve("frame");
        new FinetuneRecipe().run(TrainConfig.load(null, flags(single, 4, 1)), e -> {});
        new FinetuneRecipe().run(TrainConfig.load(null, flags(accumulated, 2, 2)), e -> {});
        SparkSession spark = SparkSession.builder().master("local[2,4]")   // 2 slots, up to 4 task failures
                .config("spark.ui.enabled", "false").config("spark.driver.host", "127.0.0.1").config("spark.driver.bindAddress", "127.0.0.1")
                .getOrCreate();
        String distUri = dist.toUri().toString();   // file:///..., through Hadoop's FileSystem
        PeftSpark.Result r, rf;
        ATTEMPTS.clear();
        try {
            r = PeftSpark.train(spark, null, flags(distUri, 2, 1), 2, (rank, attempt) -> e -> {
                if (e instanceof org.peft4j.train.recipe.TrainEvent.Started s) ATTEMPTS.add("rank " + rank + " attempt " + attempt + " from step " + s.startStep());
                if (rank == 1 && attempt == 0 && e instanceof org.peft4j.train.recipe.TrainEvent.Step s && s.step() == 3) throw new Killed("rank 1 killed at step 3");
            });
            var rows = PeftSpark.readInput(spark, Shared.root().resolve("data/identity_en.json").toString());
            rf = PeftSpark.train(spark, null, flags(frame, 2, 1), rows, 2, (rank, attempt) -> e -> {});
        } finally {
            spark.stop();
        }
        assertTrue(r.summary().startsWith("2 ranks: 4 steps") && r.summary().endsWith("saved to " + distUri), r.summary());
        assertEquals(java.util.Set.of("rank 0 attempt 0 from step 0", "rank 1 attempt 0 from step 0", "rank 0 attempt 1 from step 2", "rank 1 attempt 1 from step 2"),
                java.util.Set.copyOf(ATTEMPTS), "attempt 0 ran from the start, the retry resumed from checkpoint-2");
        Map<String, float[]> d = adapter(dist);
        double vsSingle = maxDiff(d, adapter(single));
        System.out.printf("Spark local[2]: max |Δ| vs one process of batch 4: %.3g%n", vsSingle);
        assertTrue(vsSingle < 1e-4, "max |Δ| " + vsSingle);   // the tolerance of DataParallelTrainTest (measured 2.6e-7)
        assertEquals(0.0, maxDiff(d, adapter(accumulated)), "bit for bit one process accumulating the ranks' micro-batches");
        assertTrue(Files.isDirectory(dist.resolve("checkpoint-2")) && Files.isDirectory(dist.resolve("checkpoint-4")));
        assertEquals(losses(single), losses(dist), "the log rewritten at the resume: one line per step, the same losses");
        try (var s = Files.list(dist)) {
            assertEquals(List.of(), s.map(p -> p.getFileName().toString()).filter(n -> n.startsWith(".tmp-") || n.endsWith(".crc")).toList(), "every upload renamed into place");
        }
        assertTrue(rf.summary().startsWith("2 ranks: 4 steps"), rf.summary());
        assertEquals(0.0, maxDiff(adapter(frame), adapter(accumulated)), "the DataFrame's rows, sharded as the file's");
    }

    @Test
    void badConfigIsRefusedOnTheDriver() {
        var e = assertThrows(org.peft4j.core.Peft4jException.class,
                () -> PeftSpark.train(null, (String) null, List.of("--per_device_train_batch_sizee", "2"), 2));
        assertTrue(e.getMessage().contains("per_device_train_batch_sizee"), e.getMessage());
        assertEquals("10.0.0.5", PeftSpark.hostOf("10.0.0.5:4040"));
        assertEquals("::1", PeftSpark.hostOf("[::1]:4040"));
        var two = assertThrows(org.peft4j.core.Peft4jException.class, () -> DataFrameDataset.name(PeftSpark.load(null, flags(Path.of("x"), 1, 1)).with("dataset", "a, b")));
        assertTrue(two.getMessage().contains("a DataFrame replaces the rows of one dataset"), two.getMessage());
        List<String> f = new ArrayList<>(List.of("--ranks", "3", "--input", "t"));
        assertEquals("t", PeftSpark.option(f, "--input"));
        assertEquals(List.of("--ranks", "3"), f);
    }
}
