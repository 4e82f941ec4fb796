package org.peft4j.cli;

import org.peft4j.core.Gemm;
import org.peft4j.core.Gemms;
import org.peft4j.core.Parallel;
import org.peft4j.core.Peft4jException.ConfigException;
import org.peft4j.model.Models;
import org.peft4j.model.llama.LlamaWeights;
import org.peft4j.model.quant.QuantizedModel;
import org.peft4j.quant.QuantType;
import org.peft4j.tokenizer.Tokenizer;
import org.peft4j.train.Checkpoint;
import org.peft4j.train.TrainConfig;
import org.peft4j.train.TrainData;
import org.peft4j.train.Trainer;
import org.peft4j.train.engine.TrainModel;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;
import picocli.CommandLine.Unmatched;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Callable;
import java.util.stream.Stream;

/// `peft4j train [CONFIG.yaml] [--key value ...]`: LLaMA-Factory's `llamafactory-cli train` with its keys.
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
            description = "Before and after training, answer these prompts ('|'-separated) with the base and the tuned model, and compare loss on the validation set and on --general-text.")
    List<String> compare;

    @Option(names = "--general-text", paramLabel = "FILE", description = "A text file (one passage per line) for the forgetting check of --compare.")
    Path generalText;

    @Override
    public Integer call() throws IOException {
        if (helpKeys) { System.out.print(TrainConfig.keyTable()); return 0; }
        if (!flags.isEmpty() && !flags.getFirst().startsWith("--")) yaml = Path.of(flags.removeFirst());
        if (yaml != null && !Files.isRegularFile(yaml))
            throw new ConfigException("config file " + yaml + " does not exist; pass a LLaMA-Factory YAML or only --key value flags");
        TrainConfig cfg = TrainConfig.load(yaml, flags);
        if (cfg.optInt("threads") != null) Parallel.setThreads(cfg.i("threads"));
        Path modelDir = ModelResolver.resolve(cfg.str("model_name_or_path"));
        if (!Files.isDirectory(modelDir))
            throw new ConfigException("model_name_or_path " + modelDir + " is not a folder; give a local Hugging Face model folder");
        Path out = Path.of(cfg.str("output_dir"));
        prepareOutputDir(cfg, out);

        System.err.println("peft4j train: resolved configuration (non-default keys; all keys in " + out.resolve("training_args.json") + ")");
        for (Map.Entry<String, Object> e : cfg.changed().entrySet()) System.err.printf("  %-28s %s%n", e.getKey(), e.getValue());
        for (String n : cfg.notes()) System.err.println("  note: " + n);
        Files.createDirectories(out);
        Checkpoint.writeAtomically(out.resolve("training_args.json"), cfg.toJson());

        Gemm gemm = Gemms.get(cfg.str("gemm"));
        boolean prequantized = QuantizedModel.isQuantized(modelDir);
        boolean qlora = prequantized || cfg.optInt("quantization_bit") != null;
        QuantizedModel qbase = null;
        LlamaWeights weights;
        if (qlora) {
            if (!cfg.str("finetuning_type").equals("lora")) throw new ConfigException(modelDir + " is 4-bit quantized: only finetuning_type lora (QLoRA) can train it");
            qbase = prequantized ? QuantizedModel.load(modelDir)
                    : QuantizedModel.quantize(Models.loadWeights(modelDir), QuantType.of(cfg.str("quantization_type")), 64, cfg.b("double_quantization"));
            System.err.printf("QLoRA: base frozen in 4-bit %s (%s), %.3f bits per quantized parameter%n", qbase.type.name().toLowerCase(),
                    qbase.doubleQuant ? "double quantization" : "plain absmax", qbase.bitsPerParameter());
            weights = compare != null || cfg.str("compare_prompts") != null ? qbase.dequantizedWeights() : null;
        } else {
            weights = Models.loadWeights(modelDir);
        }
        Tokenizer tok = Tokenizer.load(modelDir);
        TrainData data = TrainData.prepare(cfg, tok, modelDir);
        int tmax = Math.min(cfg.i("cutoff_len"), data.maxLength());
        System.err.printf("data: %d training and %d validation examples (longest %d tokens), template %s, %d threads, gemm %s%n",
                data.train().size(), data.eval().size(), data.maxLength(), cfg.str("template"), Parallel.threads(), gemm.name());

        if (compare == null && cfg.str("compare_prompts") != null) compare = List.of(cfg.str("compare_prompts").split("\\|"));
        if (generalText == null && cfg.str("forgetting_text") != null) generalText = Path.of(cfg.str("forgetting_text"));
        Compare cmp = compare == null ? null : new Compare(modelDir, gemm, tok, data, compare, generalText);
        if (cmp != null) cmp.before(weights);

        TrainModel model = qlora ? Trainer.model(cfg, qbase, gemm, tmax) : Trainer.model(cfg, weights, gemm, tmax);
        System.err.printf("model: %s, %d trainable parameters, activations %.1f MiB%n", cfg.str("finetuning_type"),
                model.params().stream().mapToLong(p -> p.data().length).sum(), model.activationBytes() / 1048576.0);
        ProgressBar bar = new ProgressBar("train");
        Trainer trainer = new Trainer(cfg, model, data.train(), data.eval(), out, cfg.str("model_name_or_path"), new Trainer.Listener() {
            @Override public void onStart(long total, long start) {
                if (start > 0) bar.println("resumed at step " + start + " of " + total);
            }
            @Override public void onStep(Trainer.StepMetrics m) {
                bar.update(m.step(), m.totalSteps(), String.format("| loss %.4f | lr %.2e | %,.0f tok/s", m.loss(), m.lr(), m.tokensPerSecond()), m.etaSeconds());
            }
            @Override public void onLog(Map<String, Object> e) {
                if (e.containsKey("eval_loss")) bar.println(String.format("step %s: eval_loss %s", e.get("current_steps"), e.get("eval_loss")));
                else if (System.console() != null) bar.println(String.format("step %s: loss %s, lr %.2e, grad_norm %s", e.get("current_steps"), e.get("loss"), (Double) e.get("lr"), e.get("grad_norm")));
            }
            @Override public void onCheckpoint(Path dir) { bar.println("saved " + dir); }
        });
        Trainer.Result r = trainer.padId(data.padId()).run();
        System.err.printf("done: %d steps in %.1f s (%,.0f tokens/s), train loss %.4f%s%n", r.steps(), r.seconds(), r.tokensPerSecond(), r.trainLoss(),
                r.evalLoss() != null ? String.format(", eval loss %.4f", r.evalLoss()) : "");
        System.err.println("saved to " + out + (cfg.b("plot_loss") ? " (with training_loss.png)" : ""));
        if (cmp != null) cmp.after(out, cfg.str("finetuning_type"));
        return 0;
    }

    /// LLaMA-Factory/transformers semantics: an existing non-empty output_dir is an error unless it holds a checkpoint
    /// to resume from, or overwrite_output_dir is set (then old checkpoints and logs are removed first).
    static void prepareOutputDir(TrainConfig cfg, Path out) throws IOException {
        if (!Files.isDirectory(out)) return;
        boolean empty;
        try (Stream<Path> s = Files.list(out)) { empty = s.findAny().isEmpty(); }
        if (empty) return;
        if (cfg.b("overwrite_output_dir")) {
            try (Stream<Path> s = Files.list(out)) {
                for (Path p : s.toList()) {
                    String n = p.getFileName().toString();
                    if (n.startsWith(Checkpoint.PREFIX) || n.startsWith(".tmp-") || n.equals("trainer_log.jsonl")) deleteTree(p);
                }
            }
            return;
        }
        if (cfg.str("resume_from_checkpoint") != null) return;
        Path last = Checkpoint.last(out);
        if (last != null) {
            System.err.println("output_dir " + out + " has " + last.getFileName() + ": resuming from it (set overwrite_output_dir: true to start over)");
            cfg.with("resume_from_checkpoint", last.toString());
            return;
        }
        throw new ConfigException("output_dir " + out + " already exists and is not empty; set overwrite_output_dir: true or choose another output_dir");
    }

    static void deleteTree(Path p) throws IOException {
        try (Stream<Path> s = Files.walk(p)) {
            for (Path x : s.sorted(java.util.Comparator.reverseOrder()).toList()) Files.delete(x);
        }
    }
}
