package org.peft4j.cli;

import org.apache.spark.sql.SparkSession;
import org.peft4j.core.Peft4jException.ConfigException;
import org.peft4j.spark.PeftSpark;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/// `peft4j train CONFIG.yaml --spark-master MASTER`: the same run as one barrier stage of Spark tasks
/// ([PeftSpark]). Its own class, so that Spark's classes load only when the flag is given (the launcher adds
/// Spark's jars, cli/target/spark-lib, to the class path only then).
final class SparkTrain {
    private SparkTrain() {}

    /// `ranks`: null = local[N]'s N, else Spark's default parallelism; `input`: null, or the DataFrame of the rows
    /// ([PeftSpark#readInput]).
    static int run(String master, Integer ranks, String input, Path yaml, List<String> flags, Path modelDir) {
        try {
            Class.forName("org.apache.spark.sql.SparkSession");
        } catch (ClassNotFoundException e) {
            throw new ConfigException("--spark-master needs Spark's jars on the class path; run through ./peft4j (it adds cli/target/spark-lib "
                    + "when --spark-master is given), or submit org.peft4j.spark.PeftSpark with spark-submit");
        }
        List<String> all = new ArrayList<>(flags);
        all.addAll(List.of("--model_name_or_path", modelDir.toString()));   // a Hub id resolved (downloaded) here, once
        for (String name : QUIET) java.util.logging.Logger.getLogger(name).setLevel(java.util.logging.Level.WARNING);
        SparkSession spark = SparkSession.builder().master(master).appName("peft4j train").config("spark.ui.enabled", "false").getOrCreate();
        try {
            int n = ranks != null ? ranks : localThreads(master) != null ? localThreads(master) : spark.sparkContext().defaultParallelism();
            System.err.println("peft4j train: " + n + " data-parallel ranks on Spark " + master);
            PeftSpark.Result r = PeftSpark.train(spark, yaml, all, input == null ? null : PeftSpark.readInput(spark, input), n);
            System.err.println("done: " + r.summary());
            return 0;
        } finally {
            spark.stop();
        }
    }

    // Spark logs through SLF4J into java.util.logging here: its INFO lines would bury the progress; kept referenced
    // so that the levels stay set
    private static final List<String> QUIET = List.of("org.apache.spark", "org.sparkproject", "org.apache.hadoop", "io.netty");
    private static final List<java.util.logging.Logger> KEEP = QUIET.stream().map(java.util.logging.Logger::getLogger).toList();

    private static final Pattern LOCAL = Pattern.compile("local\\[(\\d+)(,\\d+)?]");

    static Integer localThreads(String master) {
        Matcher m = LOCAL.matcher(master.trim());
        return m.matches() ? Integer.parseInt(m.group(1)) : null;
    }
}
