package org.peft4j.train;

import org.peft4j.model.llama.Projection;
import com.fasterxml.jackson.databind.ObjectMapper;
import org.peft4j.core.DType;
import org.peft4j.core.Gemm;
import org.peft4j.core.Peft4jException;
import org.peft4j.core.Peft4jException.ConfigException;
import org.peft4j.model.layers.CrossEntropy;
import org.peft4j.model.llama.LlamaWeights;
import org.peft4j.model.adapter.lora.LoraConfig;
import org.peft4j.model.adapter.lora.LoraWeights;
import org.peft4j.model.adapter.lora.PeftAdapter;
import org.peft4j.model.adapter.lora.Pissa;
import org.peft4j.train.data.Batcher;
import org.peft4j.train.data.TokenizedExample;
import org.peft4j.train.engine.Method;
import org.peft4j.train.engine.Param;
import org.peft4j.train.engine.TrainModel;
import org.peft4j.train.optim.AdamW;
import org.peft4j.train.optim.GradClip;
import org.peft4j.train.optim.LrSchedule;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;

/// The training loop of `peft4j train` (a transformers `Trainer` for one process): micro-batches, gradient
/// accumulation with HF's loss normalisation (mean over the target tokens of the whole accumulated batch), global-norm
/// clipping, NaN/Inf detection, AdamW (LoRA+ as a second optimizer for the B matrices) with an HF schedule, logging
/// to `trainer_log.jsonl`, validation loss, atomic checkpoints and exact resume.
public final class Trainer {
    /// Receives progress; the CLI draws a bar from it. Called on the training thread.
    public interface Listener {
        default void onStart(long totalSteps, long startStep) {}
        default void onStep(StepMetrics m) {}
        default void onLog(Map<String, Object> entry) {}
        default void onCheckpoint(Path dir) {}
    }

    /// One optimizer step: loss is the accumulated batch's mean token loss.
    public record StepMetrics(long step, long totalSteps, double loss, double lr, double gradNorm, double epoch,
                              double tokensPerSecond, double elapsedSeconds, double etaSeconds) {}

    /// What `train` returns and writes to all_results.json.
    public record Result(long steps, double trainLoss, Double evalLoss, double seconds, double tokensPerSecond, Path outputDir) {}

    private final TrainConfig cfg;
    private final TrainModel model;
    private final List<TokenizedExample> train, eval;
    private final Path outputDir;
    private final String baseModel;
    private final Listener listener;
    private int padId;

    /// The id written into padded positions (labels there are ignored); LLaMA-Factory uses the tokenizer's pad token.
    public Trainer padId(int id) { this.padId = id; return this; }

    public Trainer(TrainConfig cfg, TrainModel model, List<TokenizedExample> train, List<TokenizedExample> eval,
                   Path outputDir, String baseModel, Listener listener) {
        if (train.isEmpty()) throw new ConfigException("the training set is empty after preprocessing; check dataset, max_samples and cutoff_len");
        this.cfg = cfg; this.model = model; this.train = train; this.eval = eval;
        this.outputDir = outputDir; this.baseModel = baseModel; this.listener = listener == null ? new Listener() {} : listener;
    }

    /// The HF step count: update steps per epoch = max(batches / accumulation, 1); max_steps wins when > 0.
    public static long totalSteps(TrainConfig cfg, int examples) {
        if (cfg.i("max_steps") > 0) return cfg.i("max_steps");
        int batches = (examples + cfg.i("per_device_train_batch_size") - 1) / cfg.i("per_device_train_batch_size");
        int perEpoch = Math.max(batches / cfg.i("gradient_accumulation_steps"), 1);
        return (long) Math.ceil(cfg.d("num_train_epochs") * perEpoch);
    }

    public Result run() {
        long total = totalSteps(cfg, train.size());
        int warm = cfg.i("warmup_steps");
        LrSchedule schedule = LrSchedule.of(cfg.str("lr_scheduler_type"), cfg.d("learning_rate"), Math.toIntExact(total), warm, cfg.d("warmup_ratio"));
        List<Param> params = model.params();
        // LoRA+: B matrices get ratio · lr, in an optimizer of their own (same AdamW math).
        Double ratio = cfg.optDouble("loraplus_lr_ratio");
        List<Param> groupA = new ArrayList<>(), groupB = new ArrayList<>();
        for (Param p : params) (ratio != null && p.name().endsWith("lora_B.weight") ? groupB : groupA).add(p);
        AdamW.Config ac = new AdamW.Config(cfg.d("adam_beta1"), cfg.d("adam_beta2"), cfg.d("adam_epsilon"), cfg.d("weight_decay"));
        Path pagedDir = outputDir;
        long budget = (long) (cfg.d("optim_memory_budget_mb") * 1048576);
        String optim = cfg.str("optim");
        Optimizer optA = Optimizer.create(optim, datas(groupA), grads(groupA), ac, pagedDir, budget);
        Optimizer optB = groupB.isEmpty() ? null : Optimizer.create(optim, datas(groupB), grads(groupB), ac, pagedDir, budget);
        try {
            return loop(total, schedule, groupA, groupB, optA, optB, ratio);
        } finally {
            optA.close();
            if (optB != null) optB.close();
        }
    }

    private Result loop(long total, LrSchedule schedule, List<Param> groupA, List<Param> groupB, Optimizer optA, Optimizer optB, Double ratio) {
        int accum = cfg.i("gradient_accumulation_steps");
        List<Param> ordered = new ArrayList<>(groupA);
        ordered.addAll(groupB);
        Batcher batcher = new Batcher(train, model.B, padId, cfg.i("seed"), true);
        Checkpoint.State state = new Checkpoint.State(0, 0, 0, 0, 0, 0, new ArrayList<>());
        Path resume = resumePath();
        if (resume != null) {
            long[] stepHolder = new long[1];
            state = Checkpoint.load(resume, ordered, f -> {
                long st = Long.parseLong(f.metadata().getOrDefault("step", "0"));
                optA.load(f, "a.", st);
                if (optB != null) optB.load(f, "b.", st);
            });
            batcher.seek(state.position());
        }
        List<Map<String, Object>> history = new ArrayList<>(state.logHistory());
        if (resume != null) rewriteLog(history);   // drop lines logged after the checkpoint by the interrupted run
        long step = state.globalStep();
        double windowSum = state.lossWindowSum();
        int windowSteps = state.lossWindowSteps();
        long tokensSeen = state.tokensSeen();
        listener.onStart(total, step);

        int saveSteps = cfg.i("save_steps"), logSteps = Math.max(1, cfg.i("logging_steps"));
        boolean evalSteps = cfg.str("eval_strategy").equals("steps") && !eval.isEmpty();
        int evalEvery = cfg.optInt("eval_steps") != null ? cfg.i("eval_steps") : logSteps;
        double maxNorm = cfg.d("max_grad_norm");
        long t0 = System.nanoTime(), tokensThisRun = 0, startStep = step;
        double lastLoss = Double.NaN;
        Double lastEval = null;
        List<String> names = ordered.stream().map(Param::name).toList();
        List<float[]> allGrads = grads(ordered);
        int[] targets = new int[model.B * model.Tmax];
        List<Batcher.Batch> micro = new ArrayList<>(accum);

        while (step < total) {
            micro.clear();
            int items = 0;
            for (int a = 0; a < accum; a++) {
                Batcher.Batch b = batcher.next();
                micro.add(b);
                items += countTargets(b);
            }
            model.zeroGrad();
            double lossSum = 0;
            for (Batcher.Batch b : micro) {
                CrossEntropy.shiftLabels(targets, b.labels(), b.B(), b.T());
                lossSum += model.forward(b.inputIds(), targets, b.B(), b.T(), true, step);
                model.backward(b.inputIds(), targets, b.T(), items == 0 ? 0f : 1f / items, step);
                for (int len : b.lengths()) { tokensSeen += len; tokensThisRun += len; }
            }
            double loss = items == 0 ? 0 : lossSum / items;
            if (!Double.isFinite(loss))
                throw new Peft4jException("training diverged: the loss is " + loss + " at step " + (step + 1)
                        + "; lower learning_rate or set max_grad_norm (last checkpoint: " + Checkpoint.last(outputDir) + ")");
            String bad = GradClip.firstNonFinite(names, allGrads);
            if (bad != null)
                throw new Peft4jException("training diverged: the gradient of '" + bad + "' has NaN/Inf at step " + (step + 1)
                        + "; lower learning_rate or set max_grad_norm");
            double norm = maxNorm > 0 ? GradClip.clipGlobalNorm(allGrads, maxNorm) : GradClip.clipGlobalNorm(allGrads, Double.POSITIVE_INFINITY);
            double lr = schedule.lr(step);
            optA.step(lr);
            if (optB != null) optB.step(lr * ratio);
            step++;
            lastLoss = loss;
            windowSum += loss;
            windowSteps++;

            double elapsed = (System.nanoTime() - t0) / 1e9;
            double tps = tokensThisRun / Math.max(elapsed, 1e-9);
            double eta = (step - startStep) > 0 ? elapsed / (step - startStep) * (total - step) : 0;
            double epoch = epochOf(batcher);
            listener.onStep(new StepMetrics(step, total, loss, lr, norm, epoch, tps, elapsed, eta));

            if (step % logSteps == 0 || step == total) {
                Map<String, Object> e = Checkpoint.map("current_steps", step, "total_steps", total,
                        "loss", round(windowSum / windowSteps), "lr", schedule.lr(step - 1), "grad_norm", round(norm),
                        "epoch", round(epoch), "percentage", Math.round(1000.0 * step / total) / 10.0,
                        "elapsed_time", hms(elapsed), "remaining_time", hms(eta), "tokens_per_second", Math.round(tps));
                history.add(e);
                appendLog(e);
                listener.onLog(e);
                windowSum = 0;
                windowSteps = 0;
            }
            if (evalSteps && step % evalEvery == 0) {
                lastEval = evaluate();
                Map<String, Object> e = Checkpoint.map("current_steps", step, "total_steps", total, "eval_loss", round(lastEval),
                        "epoch", round(epoch));
                history.add(e);
                appendLog(e);
                listener.onLog(e);
            }
            if (saveSteps > 0 && step % saveSteps == 0 && step < total) {
                var pos = batcher.position();
                var st = new Checkpoint.State(step, pos.epoch(), pos.index(), windowSum, windowSteps, tokensSeen, history);
                List<org.peft4j.formats.safetensors.SafeTensors.Entry> optState = new ArrayList<>(optA.save("a."));
                if (optB != null) optState.addAll(optB.save("b."));
                Path dir = Checkpoint.save(outputDir, st, ordered, optState, this::saveModelFiles);
                if (cfg.optInt("save_total_limit") != null) Checkpoint.rotate(outputDir, cfg.i("save_total_limit"));
                listener.onCheckpoint(dir);
            }
        }
        double seconds = (System.nanoTime() - t0) / 1e9;
        if (!eval.isEmpty() && (cfg.b("do_eval") || !cfg.str("eval_strategy").equals("no"))) lastEval = evaluate();
        saveModelFiles(outputDir);
        double trainLoss = history.stream().filter(e -> e.containsKey("loss")).mapToDouble(e -> ((Number) e.get("loss")).doubleValue()).average().orElse(lastLoss);
        Result r = new Result(step, trainLoss, lastEval, seconds, tokensThisRun / Math.max(seconds, 1e-9), outputDir);
        writeResults(r, history);
        return r;
    }

    /// Mean token loss over the validation set (no dropout, no NEFTune).
    public double evaluate() {
        Batcher b = new Batcher(eval, model.B, padId, 0, false);
        int[] targets = new int[model.B * model.Tmax];
        double sum = 0;
        long n = 0;
        for (int i = 0; i < b.batchesPerEpoch(); i++) {
            Batcher.Batch x = b.next();
            n += CrossEntropy.shiftLabels(targets, x.labels(), x.B(), x.T());
            sum += model.forward(x.inputIds(), targets, x.B(), x.T(), false, 0);
        }
        return n == 0 ? Double.NaN : sum / n;
    }

    private Path resumePath() {
        String r = cfg.str("resume_from_checkpoint");
        if (r == null || r.equals("false")) return null;
        if (r.equals("true") || r.equals("last")) {
            Path last = Checkpoint.last(outputDir);
            if (last == null) throw new ConfigException("resume_from_checkpoint: no checkpoint-N folder in " + outputDir);
            return last;
        }
        Path p = Path.of(r);
        if (!Files.isDirectory(p)) throw new ConfigException("resume_from_checkpoint: " + p + " is not a folder");
        return p;
    }

    /// The user-facing model files: a PEFT adapter for LoRA, the whole model for full and freeze tuning.
    private void saveModelFiles(Path dir) {
        if (model.method instanceof Method.Lora(LoraConfig lc)) {
            Map<PeftAdapter.Target, LoraWeights> w = new TreeMap<>(), converted = new TreeMap<>();
            for (int l = 0; l < model.config.numHiddenLayers(); l++)
                for (Projection m : Projection.values()) {
                    LoraWeights a = model.adapter(l, m);
                    if (a != null) w.put(new PeftAdapter.Target(l, m.module), a);
                    if (a != null && model.pissaInit(l, m) != null)
                        converted.put(new PeftAdapter.Target(l, m.module), Pissa.convert(a, model.pissaInit(l, m)));
                }
            new PeftAdapter(lc, baseModel, null, w).write(dir, DType.F32);
            // LLaMA-Factory's PissaConvertCallback: beside the PiSSA adapter (which fits the residual base only), a plain
            // rank-2r LoRA over the original base in pissa_converted/, as PEFT's save_pretrained(path_initial_model_...)
            if (cfg.b("pissa_convert") && !converted.isEmpty())
                new PeftAdapter(Pissa.convertConfig(lc), baseModel, null, converted).write(dir.resolve("pissa_converted"), DType.F32);
        } else {
            org.peft4j.model.RandomModels.save(dir, model.weights, DType.F32);
        }
    }

    private void appendLog(Map<String, Object> e) {
        try {
            Files.createDirectories(outputDir);
            Files.writeString(outputDir.resolve("trainer_log.jsonl"), new ObjectMapper().writeValueAsString(e) + "\n",
                    StandardOpenOption.CREATE, StandardOpenOption.APPEND);
        } catch (IOException ex) {
            throw new UncheckedIOException(ex);
        }
    }

    private void rewriteLog(List<Map<String, Object>> history) {
        try {
            StringBuilder sb = new StringBuilder();
            ObjectMapper om = new ObjectMapper();
            for (Map<String, Object> e : history) sb.append(om.writeValueAsString(e)).append('\n');
            Checkpoint.writeAtomically(outputDir.resolve("trainer_log.jsonl"), sb.toString());
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    private void writeResults(Result r, List<Map<String, Object>> history) {
        Map<String, Object> all = Checkpoint.map("epoch", round(cfg.i("max_steps") > 0 ? Double.NaN : cfg.d("num_train_epochs")),
                "train_loss", round(r.trainLoss()), "train_runtime", round(r.seconds()),
                "train_tokens_per_second", Math.round(r.tokensPerSecond()), "global_step", r.steps());
        if (r.evalLoss() != null) { all.put("eval_loss", round(r.evalLoss())); all.put("eval_perplexity", round(Math.exp(r.evalLoss()))); }
        try {
            var om = new ObjectMapper().enable(com.fasterxml.jackson.databind.SerializationFeature.INDENT_OUTPUT);
            Checkpoint.writeAtomically(outputDir.resolve("all_results.json"), om.writeValueAsString(all));
            Checkpoint.writeAtomically(outputDir.resolve("trainer_state.json"), om.writeValueAsString(Checkpoint.map("global_step", r.steps(), "log_history", history)));
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
        if (cfg.b("plot_loss")) LossPlot.write(outputDir, history);
    }

    private double epochOf(Batcher b) {
        var p = b.position();
        return p.epoch() + (double) p.index() / train.size();
    }

    private static int countTargets(Batcher.Batch b) {
        int n = 0;
        for (int r = 0; r < b.B(); r++)
            for (int t = 1; t < b.T(); t++) if (b.labels()[r * b.T() + t] != CrossEntropy.IGNORE) n++;
        return n;
    }

    private static List<float[]> datas(List<Param> ps) { return ps.stream().map(Param::data).toList(); }
    private static List<float[]> grads(List<Param> ps) { return ps.stream().map(Param::grad).toList(); }
    static double round(double x) { return Double.isFinite(x) ? Math.round(x * 1e4) / 1e4 : x; }

    static String hms(double s) {
        long t = Math.round(s);
        return String.format("%d:%02d:%02d", t / 3600, (t / 60) % 60, t % 60);
    }

    /// The method from the config's finetuning_type and LoRA keys.
    public static Method method(TrainConfig cfg) {
        return switch (cfg.str("finetuning_type")) {
            case "full" -> new Method.Full();
            case "freeze" -> new Method.Freeze(cfg.i("freeze_trainable_layers"), List.of(cfg.str("freeze_trainable_modules").split(",")));
            default -> {
                int r = cfg.i("lora_rank");
                int alpha = cfg.optInt("lora_alpha") != null ? cfg.i("lora_alpha") : 2 * r;
                List<String> targets = LoraConfig.expandTargets(List.of(cfg.str("lora_target").split("\\s*,\\s*")));
                for (String t : targets)
                    if (Projection.byName(t) == null)
                        throw new ConfigException("lora_target '" + t + "' is not a linear layer of this model; use names among " + LoraConfig.ALL_LINEAR + " or all");
                LoraConfig base = LoraConfig.of(r, targets);
                // LLaMA-Factory: pissa_init → init_lora_weights "pissa" (pissa_iter -1) or "pissa_niter_<pissa_iter>"
                LoraConfig.Init init = cfg.b("pissa_init") ? LoraConfig.Init.PISSA : base.initLoraWeights();
                yield new Method.Lora(new LoraConfig(r, alpha, cfg.d("lora_dropout"), targets, cfg.b("use_rslora"), cfg.b("use_dora"),
                        init, "none", false, null, null, null, null, cfg.i("pissa_iter")));
            }
        };
    }

    /// Builds the QLoRA model: LoRA adapters over a frozen 4-bit base.
    public static TrainModel model(TrainConfig cfg, org.peft4j.model.quant.QuantizedModel base, Gemm gemm, int Tmax) {
        TrainModel m = new TrainModel(base, method(cfg), gemm, cfg.i("per_device_train_batch_size"), Tmax,
                cfg.b("gradient_checkpointing"), cfg.i("seed"));
        if (cfg.optDouble("neftune_noise_alpha") != null) m.setNeftuneAlpha((float) cfg.d("neftune_noise_alpha"));
        return m;
    }

    /// Builds the model for training: weights, method, batch and planned sequence length.
    public static TrainModel model(TrainConfig cfg, LlamaWeights weights, Gemm gemm, int Tmax) {
        TrainModel m = new TrainModel(weights, method(cfg), gemm, cfg.i("per_device_train_batch_size"), Tmax,
                cfg.b("gradient_checkpointing"), cfg.i("seed"));
        if (cfg.optDouble("neftune_noise_alpha") != null) m.setNeftuneAlpha((float) cfg.d("neftune_noise_alpha"));
        return m;
    }
}
