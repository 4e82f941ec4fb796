package org.peft4j.spark;

import org.apache.spark.BarrierTaskContext;
import org.apache.spark.BarrierTaskInfo;
import org.apache.spark.api.java.JavaRDD;
import org.apache.spark.api.java.JavaSparkContext;
import org.apache.spark.rdd.RDD;
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
import java.io.Serializable;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

/// `peft4j train` data-parallel on Apache Spark, the way XGBoost4J-Spark and TorchDistributor run: one barrier
/// stage of N tasks (all start together or none does); each task opens a [TcpCollective.Endpoint], the tasks swap
/// their `host:port` with `BarrierTaskContext.allGather` (the only thing Spark carries), connect into a line and run
/// the ordinary [FinetuneRecipe] as rank = partition id. The gradients then go peer to peer; rank 0 writes the log,
/// checkpoints and adapter to output_dir, which must be one folder every executor sees (local mode, or a shared
/// mount). A failed task fails the stage; Spark's stage retry (`spark.stage.maxConsecutiveAttempts`) runs all tasks
/// again, and they resume from the last complete checkpoint, as a rerun of `peft4j train` does.
///
/// The config travels as the YAML's text and the flags, so executors need not see the YAML file; the model folder,
/// dataset_dir and output_dir are paths every executor must see.
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
        String text = null;
        if (yaml != null) {
            try {
                text = Files.readString(yaml);
            } catch (IOException e) {
                throw new ConfigException("cannot read the config " + yaml + ": " + e.getMessage(), e);
            }
        }
        return train(spark, text, flags, ranks);
    }

    /// As [#train(SparkSession, Path, List, int)] with the YAML's text.
    public static Result train(SparkSession spark, String yamlText, List<String> flags, int ranks) {
        return train(spark, yamlText, flags, ranks, (rank, attempt) -> e -> {});
    }

    /// As [#train(SparkSession, String, List, int)], each task's recipe reporting to `listener`'s listener.
    public static Result train(SparkSession spark, String yamlText, List<String> flags, int ranks, TaskListener listener) {
        if (ranks < 1) throw new ConfigException("the number of Spark tasks (ranks) must be at least 1, got " + ranks);
        TrainConfig cfg = load(yamlText, flags);   // refuse a bad config on the driver, before any task starts
        if (!cfg.b("do_train")) throw new ConfigException("do_train: false only evaluates; run it without Spark");
        JavaSparkContext jsc = JavaSparkContext.fromSparkContext(spark.sparkContext());
        List<Integer> parts = new ArrayList<>();
        for (int i = 0; i < ranks; i++) parts.add(i);
        RDD<Integer> rdd = jsc.parallelize(parts, ranks).rdd();
        RDD<String> stage = rdd.barrier().mapPartitions(new Task(yamlText, List.copyOf(flags), listener), false, ClassTag$.MODULE$.apply(String.class));
        // Spark retries a failed barrier stage only when it is a shuffle map stage (a failed barrier result stage
        // aborts the job): a shuffle into one partition after it makes it one
        List<String> lines = JavaRDD.fromRDD(stage, ClassTag$.MODULE$.apply(String.class)).repartition(1).collect();
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

        Task(String yamlText, List<String> flags, TaskListener listener) {
            this.yamlText = yamlText; this.flags = new ArrayList<>(flags); this.listener = listener;
        }

        @Override public Iterator<String> apply(Iterator<Integer> partition) {
            BarrierTaskContext ctx = BarrierTaskContext.get();
            int rank = ctx.partitionId();
            BarrierTaskInfo[] infos = ctx.getTaskInfos();
            String host = hostOf(infos[rank].address());
            TrainConfig cfg = load(yamlText, flags);
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
                FinetuneRecipe.Result r = new FinetuneRecipe().collective(c).run(cfg, listener.forTask(rank, ctx.stageAttemptNumber()));
                var t = r.train();
                // the trainer counts the tokens of the global batch on every rank: rank 0's tokens/s is the job's
                String line = rank == 0 ? String.format(java.util.Locale.ROOT, "%d ranks: %d steps in %.1f s (%,.0f tokens/s), train loss %.4f, saved to %s",
                        infos.length, t.steps(), t.seconds(), t.tokensPerSecond(), t.trainLoss(), t.outputDir()) : "";
                return CollectionConverters.asScala(rank == 0 ? List.of(line).iterator() : List.<String>of().iterator());
            }
        }
    }

    /// The host of a task's `host:port` (IPv6 hosts in brackets or not).
    static String hostOf(String address) {
        int colon = address.lastIndexOf(':');
        String h = colon > 0 ? address.substring(0, colon) : address;
        return h.startsWith("[") && h.endsWith("]") ? h.substring(1, h.length() - 1) : h;
    }

    /// `spark-submit --class org.peft4j.spark.PeftSpark peft4j-spark.jar CONFIG.yaml [--key value ...] [--ranks N]`:
    /// N defaults to the cluster's default parallelism (local[N]: N).
    public static void main(String[] args) {
        List<String> flags = new ArrayList<>(List.of(args));
        Path yaml = !flags.isEmpty() && !flags.getFirst().startsWith("--") ? Path.of(flags.removeFirst()) : null;
        Integer ranks = null;
        for (int i = 0; i < flags.size(); i++)
            if (flags.get(i).equals("--ranks") && i + 1 < flags.size()) { ranks = Integer.parseInt(flags.get(i + 1)); flags.remove(i + 1); flags.remove(i); break; }
        SparkSession spark = SparkSession.builder().appName("peft4j train").getOrCreate();
        try {
            int n = ranks != null ? ranks : spark.sparkContext().defaultParallelism();
            System.out.println(train(spark, yaml, flags, n).summary());
        } finally {
            spark.stop();
        }
    }
}
