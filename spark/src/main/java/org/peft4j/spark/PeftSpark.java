package org.peft4j.spark;

import org.apache.spark.BarrierTaskContext;
import org.apache.spark.BarrierTaskInfo;
import org.apache.spark.api.java.JavaRDD;
import org.apache.spark.api.java.JavaSparkContext;
import org.apache.spark.broadcast.Broadcast;
import org.apache.spark.rdd.RDD;
import org.apache.spark.sql.Dataset;
import org.apache.spark.sql.Row;
import org.apache.spark.sql.SparkSession;
import org.peft4j.core.Peft4jException;
import org.peft4j.core.Peft4jException.ConfigException;
import org.peft4j.train.TrainConfig;
import org.peft4j.train.dist.TcpCollective;
import org.peft4j.train.recipe.FinetuneRecipe;
import org.peft4j.train.recipe.TrainEvent;
import scala.collection.Iterator;
import scala.jdk.javaapi.CollectionConverters;
import scala.reflect.ClassTag$;
import scala.runtime.AbstractFunction1;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.io.Serializable;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.Map;
import java.util.List;

/// `peft4j train` data-parallel on Apache Spark, the way XGBoost4J-Spark and TorchDistributor run: one barrier
/// stage of N tasks (all start together or none does); each task opens a [TcpCollective.Endpoint], the tasks swap
/// their `host:port` with `BarrierTaskContext.allGather` (the only thing Spark carries), connect into a line and run
/// the ordinary [FinetuneRecipe] as rank = partition id. The gradients then go peer to peer; rank 0 writes the log,
/// checkpoints and adapter to output_dir: a folder every executor sees (local mode, or a shared mount), or a URI of
/// a Hadoop FileSystem (`hdfs://`, `s3a://`, `file://`), reached through [SharedOutput]. A failed task fails the
/// stage; Spark's stage retry (`spark.stage.maxConsecutiveAttempts`) runs all tasks again, and they resume from the
/// last complete checkpoint, as a rerun of `peft4j train` does.
///
/// The config travels as the YAML's text and the flags, so executors need not see the YAML file; the rows come from
/// dataset_dir's files, or from a DataFrame ([DataFrameDataset]); the model folder and dataset_dir are paths every
/// executor must see.
public final class PeftSpark {
    private PeftSpark() {}

    /// Makes each task's listener of the recipe's events (progress to the executor's log, a metrics sink, ...);
    /// serialised to the executors. `stageAttempt` counts Spark's retries of the stage from 0.
    public interface TaskListener extends Serializable {
        TrainEvent.Listener forTask(int rank, int stageAttempt);
    }

    /// What the job returns: rank 0's summary line (steps, loss, output folder).
    public record Result(int ranks, String summary) {}

    /// Trains `yaml` (may be null) with `flags` as `ranks` data-parallel tasks of one barrier stage of `spark`.
    /// With N ranks and per_device_train_batch_size B the run equals one process of batch N·B (see
    /// [org.peft4j.train.Trainer#collective]). Blocks until the stage ends; throws when it failed for good.
    public static Result train(SparkSession spark, Path yaml, List<String> flags, int ranks) {
        return train(spark, readYaml(yaml), flags, ranks);
    }

    /// The YAML file's text; null for a null path (flags only).
    private static String readYaml(Path yaml) {
        if (yaml == null) return null;
        try {
            return Files.readString(yaml);
        } catch (IOException e) {
            throw new ConfigException("cannot read the config " + yaml + ": " + e.getMessage(), e);
        }
    }

    /// As [#train(SparkSession, Path, List, int)] with the YAML's text.
    public static Result train(SparkSession spark, String yamlText, List<String> flags, int ranks) {
        return train(spark, yamlText, flags, ranks, (rank, attempt) -> e -> {});
    }

    /// As [#train(SparkSession, String, List, int)], each task's recipe reporting to `listener`'s listener.
    public static Result train(SparkSession spark, String yamlText, List<String> flags, int ranks, TaskListener listener) {
        return train(spark, yamlText, flags, null, ranks, listener);
    }

    /// As [#train(SparkSession, Path, List, int)] with the rows of `data` as the dataset ([DataFrameDataset]):
    /// `dataset` names the dataset_info.json entry that describes its columns.
    public static Result train(SparkSession spark, Path yaml, List<String> flags, Dataset<Row> data, int ranks) {
        return train(spark, readYaml(yaml), flags, data, ranks, (rank, attempt) -> e -> {});
    }

    /// As [#train(SparkSession, String, List, int, TaskListener)]; `data` (null: dataset_dir's files) gives the rows.
    public static Result train(SparkSession spark, String yamlText, List<String> flags, Dataset<Row> data, int ranks, TaskListener listener) {
        if (ranks < 1) throw new ConfigException("the number of Spark tasks (ranks) must be at least 1, got " + ranks);
        TrainConfig cfg = load(yamlText, flags);   // refuse a bad config on the driver, before any task starts
        if (!cfg.b("do_train")) throw new ConfigException("do_train: false only evaluates; run it without Spark");
        HashMap<String, String> hadoop = null;
        if (SharedOutput.isUri(cfg.str("output_dir"))) {
            hadoop = new HashMap<>();
            for (Map.Entry<String, String> e : spark.sparkContext().hadoopConfiguration()) hadoop.put(e.getKey(), e.getValue());
            SharedOutput.open(cfg.str("output_dir"), hadoop);   // a scheme without its FileSystem fails here, not in the tasks
        }
        JavaSparkContext jsc = JavaSparkContext.fromSparkContext(spark.sparkContext());
        Broadcast<List<String>> rows = data == null ? null : jsc.broadcast(new ArrayList<>(DataFrameDataset.collect(cfg, data)));
        List<Integer> parts = new ArrayList<>();
        for (int i = 0; i < ranks; i++) parts.add(i);
        RDD<Integer> rdd = jsc.parallelize(parts, ranks).rdd();
        RDD<String> stage = rdd.barrier().mapPartitions(new Task(yamlText, List.copyOf(flags), listener, rows, hadoop), false, ClassTag$.MODULE$.apply(String.class));
        // Spark retries a failed barrier stage only when it is a shuffle map stage (a failed barrier result stage
        // aborts the job): a shuffle into one partition after it makes it one
        List<String> lines;
        try {
            lines = JavaRDD.fromRDD(stage, ClassTag$.MODULE$.apply(String.class)).repartition(1).collect();
        } finally {
            if (rows != null) rows.destroy();
        }
        return new Result(ranks, lines.isEmpty() ? "" : lines.getFirst());
    }

    static TrainConfig load(String yamlText, List<String> flags) {
        if (yamlText == null) return TrainConfig.load(null, flags);
        Path tmp = null;
        try {
            tmp = Files.createTempFile("peft4j-spark-", ".yaml");
            Files.writeString(tmp, yamlText);
            return TrainConfig.load(tmp, flags);
        } catch (IOException e) {
            throw new Peft4jException("cannot write the config to a temporary file: " + e.getMessage(), e);
        } finally {
            if (tmp != null) try { Files.deleteIfExists(tmp); } catch (IOException ignored) {}
        }
    }

    /// One barrier task: rendezvous, then the recipe as rank = partition id.
    static final class Task extends AbstractFunction1<Iterator<Integer>, Iterator<String>> implements Serializable {
        private final String yamlText;
        private final List<String> flags;
        private final TaskListener listener;
        private final Broadcast<List<String>> rows;    // the DataFrame's rows as JSON lines, or null
        private final HashMap<String, String> hadoop;  // the Hadoop settings of a URI output_dir, or null

        Task(String yamlText, List<String> flags, TaskListener listener, Broadcast<List<String>> rows, HashMap<String, String> hadoop) {
            this.yamlText = yamlText; this.flags = new ArrayList<>(flags); this.listener = listener; this.rows = rows; this.hadoop = hadoop;
        }

        @Override public Iterator<String> apply(Iterator<Integer> partition) {
            BarrierTaskContext ctx = BarrierTaskContext.get();
            int rank = ctx.partitionId();
            BarrierTaskInfo[] infos = ctx.getTaskInfos();
            TrainConfig cfg = load(yamlText, flags);
            Path scratch = rows != null || hadoop != null ? createTempDirectory("peft4j-spark-rank" + rank + "-") : null;
            try {
                return run(ctx, rank, infos, cfg, scratch);
            } finally {
                if (scratch != null) try { SharedOutput.deleteTree(scratch); } catch (IOException ignored) {}
            }
        }

        private Iterator<String> run(BarrierTaskContext ctx, int rank, BarrierTaskInfo[] infos, TrainConfig cfg, Path scratch) {
            if (rows != null) DataFrameDataset.use(cfg, rows.value(), scratch.resolve("dataset"));
            // a shared output_dir: train into a local folder holding the last complete checkpoint, rank 0 uploads;
            // every rank pulls before the rendezvous, so before rank 0 can upload anything newer
            SharedOutput shared = hadoop == null ? null : SharedOutput.open(cfg.str("output_dir"), hadoop);
            Path localOut = shared == null ? null : scratch.resolve("output");
            if (shared != null) {
                if (!cfg.b("overwrite_output_dir")) shared.pullLastCheckpoint(localOut);
                else if (rank == 0) shared.setAsidePreviousRun();   // starting over: no rank resumes
                cfg.with("output_dir", localOut.toString());
            }
            String host = hostOf(infos[rank].address());
            Duration timeout = Duration.ofSeconds(Long.parseLong(System.getProperty("peft4j.collective.timeout.seconds",
                    String.valueOf(TcpCollective.DEFAULT_TIMEOUT.toSeconds()))));
            TcpCollective.Endpoint endpoint = TcpCollective.Endpoint.open("0.0.0.0", host);
            String[] addresses;
            try {
                addresses = ctx.allGather(endpoint.address());
            } catch (RuntimeException e) {
                endpoint.close();
                throw e;
            }
            try (TcpCollective c = endpoint.join(rank, Arrays.asList(addresses), timeout)) {
                TrainEvent.Listener events = listener.forTask(rank, ctx.stageAttemptNumber());
                TrainEvent.Listener uploads = shared == null || rank != 0 ? events : e -> {
                    if (e instanceof TrainEvent.CheckpointSaved s) shared.pushCheckpoint(localOut, s.dir());
                    events.on(e);
                };
                FinetuneRecipe.Result r = new FinetuneRecipe().collective(c).run(cfg, uploads);
                if (shared != null && rank == 0) shared.pushAll(localOut);
                var t = r.train();
                // the trainer counts the tokens of the global batch on every rank: rank 0's tokens/s is the job's
                String line = rank == 0 ? String.format(java.util.Locale.ROOT, "%d ranks: %d steps in %.1f s (%,.0f tokens/s), train loss %.4f, saved to %s",
                        infos.length, t.steps(), t.seconds(), t.tokensPerSecond(), t.trainLoss(), shared != null ? shared.uri() : t.outputDir()) : "";
                return CollectionConverters.asScala(rank == 0 ? List.of(line).iterator() : List.<String>of().iterator());
            }
        }
    }

    private static Path createTempDirectory(String prefix) {
        try {
            return Files.createTempDirectory(prefix);
        } catch (IOException e) {
            throw new UncheckedIOException("cannot create a local folder for the task: " + e.getMessage(), e);
        }
    }

    /// The host of a task's `host:port` (IPv6 hosts in brackets or not).
    static String hostOf(String address) {
        int colon = address.lastIndexOf(':');
        String h = colon > 0 ? address.substring(0, colon) : address;
        return h.startsWith("[") && h.endsWith("]") ? h.substring(1, h.length() - 1) : h;
    }

    /// `spark-submit --class org.peft4j.spark.PeftSpark peft4j-spark.jar CONFIG.yaml [--key value ...] [--ranks N]
    /// [--input TABLE_OR_PATH]`: N defaults to the cluster's default parallelism (local[N]: N); `--input` reads the
    /// dataset's rows as a DataFrame ([#readInput]) in place of the file of `dataset`'s dataset_info.json entry.
    public static void main(String[] args) {
        List<String> flags = new ArrayList<>(List.of(args));
        Path yaml = !flags.isEmpty() && !flags.getFirst().startsWith("--") ? Path.of(flags.removeFirst()) : null;
        String ranks = option(flags, "--ranks"), input = option(flags, "--input");
        SparkSession spark = SparkSession.builder().appName("peft4j train").getOrCreate();
        try {
            int n = ranks != null ? Integer.parseInt(ranks) : spark.sparkContext().defaultParallelism();
            System.out.println(train(spark, yaml, flags, input == null ? null : readInput(spark, input), n).summary());
        } finally {
            spark.stop();
        }
    }

    /// Removes `--name value` from `flags` and returns the value (null when absent).
    static String option(List<String> flags, String name) {
        int i = flags.indexOf(name);
        if (i < 0) return null;
        if (i + 1 >= flags.size()) throw new ConfigException(name + " needs a value");
        String v = flags.get(i + 1);
        flags.remove(i + 1);
        flags.remove(i);
        return v;
    }

    /// The DataFrame of `--input`: a `.json` file or folder of JSON arrays (LLaMA-Factory's data files; Spark's
    /// multiLine JSON), `.jsonl` JSON lines, `.parquet`, any other path (with `/` or a scheme) as parquet, else a table
    /// of the session's catalog.
    public static Dataset<Row> readInput(SparkSession spark, String input) {
        String lower = input.toLowerCase(java.util.Locale.ROOT);
        if (lower.endsWith(".json")) return spark.read().option("multiLine", true).json(input);
        if (lower.endsWith(".jsonl")) return spark.read().json(input);
        if (lower.endsWith(".parquet") || input.contains("/") || input.contains(":")) return spark.read().parquet(input);
        return spark.table(input);
    }
}
