package org.peft4j.cli;

import org.peft4j.core.Peft4jException.ConfigException;
import org.peft4j.train.TrainConfig;
import org.peft4j.train.Trainer;
import org.peft4j.train.recipe.FinetuneRecipe;
import org.peft4j.train.recipe.TrainEvent;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;
import picocli.CommandLine.Unmatched;

import java.io.PrintStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Callable;

/// `peft4j train [CONFIG.yaml] [--key value ...]`: LLaMA-Factory's `llamafactory-cli train` with its keys. A thin
/// caller of [FinetuneRecipe]: it reads the config, resolves Hub repo ids to folders, and prints the recipe's events
/// (the resolved config, a progress bar, validation losses, the comparison).
@Command(name = "train", customSynopsis = "peft4j train [CONFIG.yaml] [--key value ...]", description = {"Fine-tune a model with LLaMA-Factory's config keys (YAML and/or --key value flags; flags win).",
        "Run 'peft4j train --help-keys' for every key with its default."})
final class TrainCommand implements Callable<Integer> {
    /// CONFIG.yaml (first, optional) and `--key value` flags; parsed by TrainConfig, not picocli, so that any
    /// LLaMA-Factory key is accepted or refused with a suggestion.
    @Unmatched List<String> flags = new ArrayList<>();

    Path yaml;

    @Option(names = "--help-keys", description = "List every config key with its default and exit.") boolean helpKeys;

    @Option(names = {"-h", "--help"}, usageHelp = true, description = "Show this help.") boolean help;

    @Option(names = "--compare", paramLabel = "PROMPTS", split = "\\|",
            description = "Before and after training, answer these prompts ('|'-separated) with the base and the tuned model, and compare loss on the validation set and on --general-text (the compare_prompts key).")
    List<String> compare;

    @Option(names = "--general-text", paramLabel = "FILE", description = "A text file (one passage per line) for the forgetting check (the forgetting_text key).")
    Path generalText;

    @Option(names = "--spark-master", paramLabel = "MASTER",
            description = "Train data-parallel as one barrier stage of Spark tasks (local[N], spark://host:port, yarn, k8s://...): N ranks of per_device_train_batch_size B equal one process of batch N*B. Paths must be visible to every executor.")
    String sparkMaster;

    @Option(names = "--spark-ranks", paramLabel = "N", description = "With --spark-master: the number of ranks (default: N of local[N], else Spark's default parallelism).")
    Integer sparkRanks;

    @Option(names = "--spark-input", paramLabel = "TABLE_OR_PATH", description = "With --spark-master: the rows of the dataset as a DataFrame (a .json/.jsonl/.parquet path or a table), in place of the file of `dataset`'s dataset_info.json entry, which still gives the columns.")
    String sparkInput;

    @Override
    public Integer call() {
        if (helpKeys) { System.out.print(TrainConfig.keyTable()); return 0; }
        TrainConfig cfg = config();

        if (sparkRanks != null && sparkMaster == null) throw new ConfigException("--spark-ranks needs --spark-master");
        if (sparkInput != null && sparkMaster == null) throw new ConfigException("--spark-input needs --spark-master (a DataFrame is read by Spark)");
        if (sparkMaster != null) {
            if (compare != null || generalText != null) throw new ConfigException("--compare and --general-text run in one process; drop them with --spark-master");
            return SparkTrain.run(sparkMaster, sparkRanks, sparkInput, yaml, flags, ModelResolver.resolve(cfg.str("model_name_or_path")));
        }
        ProgressBar bar = new ProgressBar("train");
        FinetuneRecipe.Result result = new FinetuneRecipe(ModelResolver::resolve).run(cfg, e -> print(e, bar));
        Trainer.Result r = result.train();
        Path out = r.outputDir();
        if (r.steps() == 0 && !cfg.b("do_train")) {
            if (r.evalLoss() != null)
                System.err.printf("done: evaluated %s, eval loss %.4f (perplexity %.2f)%n", out.resolve("all_results.json"), r.evalLoss(), Math.exp(r.evalLoss()));
            if (cfg.b("do_predict"))
                System.err.printf("done: predictions in %s, metrics in %s%n", out.resolve("generated_predictions.jsonl"), out.resolve("predict_results.json"));
            return 0;
        }
        System.err.printf("done: %d steps in %.1f s (%,.0f tokens/s), train loss %.4f%s%n", r.steps(), r.seconds(), r.tokensPerSecond(), r.trainLoss(),
                r.evalLoss() != null ? String.format(", eval loss %.4f", r.evalLoss()) : "");
        System.err.println("saved to " + out + (cfg.b("plot_loss") ? " (with training_loss.png)" : ""));
        if (result.comparison() != null) Compare.print(result.comparison(), System.out);
        return 0;
    }

    /// The run's configuration from the parsed command line: CONFIG.yaml (first, optional), the `--key value` flags,
    /// --compare and --general-text. [JvmPlan] reads the same.
    TrainConfig config() {
        if (!flags.isEmpty() && !flags.getFirst().startsWith("--")) yaml = Path.of(flags.removeFirst());
        if (yaml != null && !Files.isRegularFile(yaml))
            throw new ConfigException("config file " + yaml + " does not exist; pass a LLaMA-Factory YAML or only --key value flags");
        TrainConfig cfg = TrainConfig.load(yaml, flags);
        if (compare != null) cfg.with("compare_prompts", String.join("|", compare));
        if (generalText != null) cfg.with("forgetting_text", generalText.toString());
        return cfg;
    }

    /// The recipe's events on stderr, as `peft4j train` has always printed them.
    static void print(TrainEvent event, ProgressBar bar) {
        PrintStream err = System.err;
        switch (event) {
            case TrainEvent.Preparing p -> {
                if (p.resumeFrom() != null)
                    err.println("output_dir " + p.outputDir() + " has " + p.resumeFrom().getFileName() + ": resuming from it (set overwrite_output_dir: true to start over)");
                err.println("peft4j train: resolved configuration (non-default keys; all keys in " + p.outputDir().resolve("training_args.json") + ")");
                for (Map.Entry<String, Object> e : p.config().changed().entrySet()) err.printf("  %-28s %s%n", e.getKey(), e.getValue());
                for (String n : p.config().notes()) err.println("  note: " + n);
            }
            case TrainEvent.Started s -> {
                TrainEvent.Setup u = s.setup();
                if (u.quantization() != null)
                    err.printf("QLoRA: base frozen in 4-bit %s (%s), %.3f bits per quantized parameter%n", u.quantization().type(),
                            u.quantization().doubleQuantization() ? "double quantization" : "plain absmax", u.quantization().bitsPerParameter());
                err.printf("data: %d training and %d validation examples (longest %d tokens), template %s, %d threads, gemm %s%n",
                        u.trainExamples(), u.evalExamples(), u.longestExample(), u.template(), u.threads(), u.gemm());
                if (u.adapter() != null)
                    err.printf("adapter: continuing %s (r %d, alpha %s, %s%s)%n", u.adapter().dir(), u.adapter().rank(), number(u.adapter().alpha()),
                            String.join(",", u.adapter().targets()), u.adapter().dora() ? ", DoRA" : "");
                err.printf("model: %s, %d trainable parameters, activations %.1f MiB%n", u.finetuningType(), u.trainableParameters(), u.activationBytes() / 1048576.0);
                if (s.startStep() > 0) bar.println("resumed at step " + s.startStep() + " of " + s.totalSteps());
            }
            case TrainEvent.Step m -> {
                bar.update(m.step(), m.totalSteps(), String.format("| loss %.4f | lr %.2e | %,.0f tok/s", m.loss(), m.lr(), m.tokensPerSecond()), m.etaSeconds());
                // stages dpo and kto: TRL's reward metrics on each logged step
                if (m.loggedLoss() != null && (System.console() != null || !m.metrics().isEmpty()))
                    bar.println(String.format("step %s: loss %s, lr %.2e, grad_norm %s%s", m.step(), m.loggedLoss(), m.lr(), round(m.gradNorm()),
                            m.metrics().isEmpty() ? "" : ", " + metricsText(m.metrics())));
            }
            case TrainEvent.Eval v -> bar.println(String.format("step %s: eval_loss %s%s", v.step(), round(v.evalLoss()),
                    v.metrics().isEmpty() ? "" : ", " + metricsText(v.metrics())));
            case TrainEvent.CheckpointSaved c -> bar.println("saved " + c.dir());
            case TrainEvent.Finished f -> { }
            case TrainEvent.Failed f -> { }
        }
    }

    private static String metricsText(java.util.Map<String, Double> m) {
        StringBuilder sb = new StringBuilder();
        m.forEach((k, v) -> sb.append(sb.isEmpty() ? "" : ", ").append(k).append(' ').append(round(v)));
        return sb.toString();
    }

    /// trainer_log.jsonl's rounding (4 decimals), so the printed numbers match the log.
    static double round(double x) { return Double.isFinite(x) ? Math.round(x * 1e4) / 1e4 : x; }

    private static String number(double x) { return x == Math.rint(x) ? String.valueOf((long) x) : String.valueOf(x); }
}
