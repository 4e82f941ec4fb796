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
import org.peft4j.train.data.Template;
import org.peft4j.train.data.TokenizedExample;
import org.peft4j.train.dist.Collective;
import org.peft4j.train.engine.Method;
import org.peft4j.train.engine.Param;
import org.peft4j.train.engine.KtoObjective;
import org.peft4j.train.engine.PreferenceObjective;
import org.peft4j.train.engine.RewardObjective;
import org.peft4j.train.engine.SequenceObjective;
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
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.function.BooleanSupplier;

/// The training loop of `peft4j train` (a transformers `Trainer` for one process): micro-batches, gradient
/// accumulation with HF's loss normalisation (mean over the target tokens of the whole accumulated batch), global-norm
/// clipping, NaN/Inf detection, AdamW (LoRA+ as a second optimizer for the B matrices) with an HF schedule, logging
/// to `trainer_log.jsonl`, validation loss, atomic checkpoints and exact resume, and cancellation between steps.
/// [org.peft4j.train.recipe.FinetuneRecipe] builds what it needs and turns its hooks into events.
public final class Trainer {
    /// The loop's hooks, called on the training thread.
    public interface Listener {
        default void onStart(long totalSteps, long startStep) {}
        default void onStep(StepMetrics m) {}
        default void onEval(long step, double evalLoss) {}
        /// As [#onEval(long, double)] with the preference stages' eval metrics (dpo, kto) (empty otherwise).
        default void onEval(long step, double evalLoss, Map<String, Double> metrics) { onEval(step, evalLoss); }
        default void onCheckpoint(long step, Path dir) {}
    }

    /// One optimizer step: loss is the accumulated batch's mean token loss; gradNorm the global norm before clipping;
    /// loggedLoss the mean of the losses since the last log line when this step wrote one to trainer_log.jsonl, else null.
    /// `metrics`: the preference stages' means over the logged window (TRL's names: rewards/accuracies, ...) when this step logged, else empty.
    public record StepMetrics(long step, long totalSteps, double loss, double lr, double gradNorm, double epoch,
                              double tokensPerSecond, double elapsedSeconds, double etaSeconds, Double loggedLoss,
                              Map<String, Double> metrics) {}

    /// What `train` returns and writes to all_results.json. A cancelled run wrote no final files (its checkpoints stay).
    public record Result(long steps, double trainLoss, Double evalLoss, double seconds, double tokensPerSecond, Path outputDir,
                         boolean cancelled) {}

    private final TrainArgs args;
    private final TrainModel model;
    private final List<TokenizedExample> train, eval;
    // stages dpo and kto: the objective, and its units (pairs, or examples with their KL sequences) split from the
    // interleaved lists; the batcher visits unit indices
    private final SequenceObjective pref;
    private final SequenceObjective.Units units, evalUnits;
    private Map<String, Double> lastEvalMetrics = Map.of();
    private final double[] refCache, evalRefCache;   // reference log-probabilities by unit, computed once (null: none)
    private final Path outputDir;
    private final String baseModel;
    private final Listener listener;
    private int padId;
    private Path tokenizerDir;
    private Template template;
    private BooleanSupplier cancelled = () -> false;
    private Optimizer optA, optB;          // during run() only
    private Collective collective = Collective.single();

    /// Data-parallel training: this trainer is rank `c.rank()` of `c.worldSize()`. Each optimizer step reads the
    /// global batch a single process with per_device_train_batch_size N·B would read (same order, same number of
    /// steps); this rank runs rows [rank·B, rank·B + B) of every micro-batch; the gradients of the trainable tensors
    /// are summed across ranks ([Collective#allReduceSum], in rank order) before clipping and the optimizer step, and
    /// the loss is normalised by the target tokens of the whole global batch, so every rank applies the same update
    /// (as PyTorch DDP with transformers' Trainer). Only rank 0 evaluates and writes logs, checkpoints and the model.
    public Trainer collective(Collective c) { this.collective = c; return this; }

    /// The id written into padded positions (labels there are ignored); LLaMA-Factory uses the tokenizer's pad token.
    public Trainer padId(int id) { this.padId = id; return this; }

    /// The tokenizer files of `modelDir` are saved with the model or adapter and in each checkpoint, with `template`
    /// as the chat template when the model has none ([Export#saveTokenizer]), as LLaMA-Factory saves its tokenizer.
    public Trainer saveTokenizer(Path modelDir, Template template) { this.tokenizerDir = modelDir; this.template = template; return this; }

    /// Checked before each optimizer step: when true the run stops there, writes nothing more and returns a cancelled
    /// result; the checkpoints already written (atomically) are what a rerun resumes from.
    public Trainer cancelWhen(BooleanSupplier cancelled) { this.cancelled = cancelled; return this; }

    public Trainer(TrainConfig cfg, TrainModel model, List<TokenizedExample> train, List<TokenizedExample> eval,
                   Path outputDir, String baseModel, Listener listener) {
        this(cfg.args(), model, train, eval, outputDir, baseModel, listener);
    }

    public Trainer(TrainArgs args, TrainModel model, List<TokenizedExample> train, List<TokenizedExample> eval,
                   Path outputDir, String baseModel, Listener listener) {
        this(args, model, train, eval, null, null, outputDir, baseModel, listener);
    }

    /// The prepared data of a run: its lists and, for stage kto, the examples' labels.
    public Trainer(TrainArgs args, TrainModel model, TrainData data, Path outputDir, String baseModel, Listener listener) {
        this(args, model, data.train(), data.eval(), data.trainDesirable(), data.evalDesirable(), outputDir, baseModel, listener);
        padId(data.padId());
    }

    private Trainer(TrainArgs args, TrainModel model, List<TokenizedExample> train, List<TokenizedExample> eval,
                    boolean[] trainDesirable, boolean[] evalDesirable, Path outputDir, String baseModel, Listener listener) {
        if (train.isEmpty()) throw new ConfigException("the training set is empty after preprocessing; check dataset, max_samples and cutoff_len");
        this.args = args; this.model = model; this.train = train; this.eval = eval;
        this.outputDir = outputDir; this.baseModel = baseModel; this.listener = listener == null ? new Listener() {} : listener;
        String stage = args.finetuning().stage();
        if (stage.equals("dpo") || stage.equals("kto") || stage.equals("rm")) {
            boolean kto = stage.equals("kto"), rm = stage.equals("rm");
            if (kto && (trainDesirable == null || evalDesirable == null))
                throw new IllegalArgumentException("stage kto needs the examples' labels: build the Trainer from TrainData");
            pref = kto ? new KtoObjective(model, args.preference().kto())
                    : rm ? new RewardObjective(model, args.training().seed(), initialValueHead(args))
                    : new PreferenceObjective(model, args.preference().loss());
            units = SequenceObjective.Units.interleaved(train, kto ? trainDesirable : null);
            evalUnits = SequenceObjective.Units.interleaved(eval, kto ? evalDesirable : null);
            refCache = rm ? null : SequenceObjective.newReferenceCache(units.size());
            evalRefCache = rm ? null : SequenceObjective.newReferenceCache(evalUnits.size());
        } else {
            pref = null;
            units = evalUnits = null;
            refCache = evalRefCache = null;
        }
    }

    /// Stage rm: the value head a run starts from, as LLaMA-Factory's `load_valuehead_params`: `value_head.safetensors`
    /// of adapter_name_or_path, else of model_name_or_path, else none (a new head).
    private static Path initialValueHead(TrainArgs args) {
        for (String dir : new String[] {args.model().adapterNameOrPath(), args.model().nameOrPath()}) {
            if (dir == null) continue;
            Path f = Path.of(dir).resolve(RewardObjective.FILE);
            if (Files.isRegularFile(f)) return f;
        }
        return null;
    }

    /// How many units the batcher visits: examples, or pairs (stage dpo), or examples with their KL sequences (kto).
    private int unitCount() { return pref != null ? units.size() : train.size(); }

    /// The HF step count: update steps per epoch = max(batches / accumulation, 1); max_steps wins when > 0.
    public static long totalSteps(TrainArgs.Training t, int examples) { return totalSteps(t, examples, 1); }

    /// With `world` data-parallel ranks the batch of a micro-step is world · per_device_train_batch_size.
    public static long totalSteps(TrainArgs.Training t, int examples, int world) {
        if (t.maxSteps() > 0) return t.maxSteps();
        int global = t.perDeviceTrainBatchSize() * world;
        int batches = (examples + global - 1) / global;
        int perEpoch = Math.max(batches / t.gradientAccumulationSteps(), 1);
        return (long) Math.ceil(t.numTrainEpochs() * perEpoch);
    }

    public static long totalSteps(TrainConfig cfg, int examples) { return totalSteps(cfg.args().training(), examples); }

    /// The optimizers of the running loop (LoRA+'s second one included); empty outside [#run].
    List<Optimizer> optimizers() { return optB == null ? (optA == null ? List.of() : List.of(optA)) : List.of(optA, optB); }

    public Result run() {
        TrainArgs.Training t = args.training();
        if (collective.worldSize() > 1 && pref != null && !(pref instanceof PreferenceObjective))
            throw new ConfigException("stage " + args.finetuning().stage() + " does not run data-parallel yet (" + collective.worldSize()
                    + " ranks); train it in one process, or use stage sft, pt or dpo");
        if (collective.worldSize() > 1 && model.asft())   // its loss is a mean per micro-batch, which the ranks would split
            throw new ConfigException("use_asft_loss does not run data-parallel yet (" + collective.worldSize() + " ranks); train it in one process");
        long total = totalSteps(t, unitCount(), collective.worldSize());
        LrSchedule schedule = LrSchedule.of(t.lrSchedulerType(), t.learningRate(), Math.toIntExact(total), t.warmupSteps(), t.warmupRatio());
        List<Param> params = model.params();
        // LoRA+: B matrices get ratio · lr, in an optimizer of their own (same AdamW math).
        Double ratio = args.finetuning().loraplusLrRatio();
        List<Param> groupA = new ArrayList<>(), groupB = new ArrayList<>();
        for (Param p : params) (ratio != null && p.name().endsWith("lora_B.weight") ? groupB : groupA).add(p);
        AdamW.Config ac = new AdamW.Config(t.adamBeta1(), t.adamBeta2(), t.adamEpsilon(), t.weightDecay());
        long budget = t.optimMemoryBudgetBytes();
        try {
            var method = args.optimizerMethod();
            optA = method.any() ? Optimizer.of(method, groupA, model.config, ac, t.seed(), org.peft4j.core.Gemms.get(args.peft4j().gemm()))
                    : Optimizer.create(t.optim(), datas(groupA), grads(groupA), ac, outputDir, budget);
            optB = groupB.isEmpty() ? null : Optimizer.create(t.optim(), datas(groupB), grads(groupB), ac, outputDir, budget);
            return loop(total, schedule, groupA, groupB, ratio);
        } finally {
            if (optA != null) optA.close();
            if (optB != null) optB.close();
            optA = optB = null;
        }
    }

    private Result loop(long total, LrSchedule schedule, List<Param> groupA, List<Param> groupB, Double ratio) {
        int accum = args.training().gradientAccumulationSteps();
        List<Param> ordered = new ArrayList<>(groupA);
        ordered.addAll(groupB);
        int world = collective.worldSize(), rank = collective.rank();
        boolean writer = rank == 0;   // the rank that logs, evaluates and saves
        Batcher batcher = new Batcher(pref != null ? units.first() : train, pref != null ? pref.maxUnits() * world : model.B * world, padId, args.training().seed(), true);
        SequenceObjective.Totals window = new SequenceObjective.Totals();
        Checkpoint.State state = new Checkpoint.State(0, 0, 0, 0, 0, 0, new ArrayList<>());
        Path resume = resumePath();
        if (resume != null) {
            state = Checkpoint.load(resume, ordered, f -> {
                long st = Long.parseLong(f.metadata().getOrDefault("step", "0"));
                optA.load(f, "a.", st);
                if (optB != null) optB.load(f, "b.", st);
                if (refCache != null && f.contains(REFERENCE_CACHE)) {
                    var seg = f.bytes(REFERENCE_CACHE);
                    if (seg.byteSize() != 8L * refCache.length)
                        throw new ConfigException(resume + " holds reference log-probabilities of " + seg.byteSize() / 8 / 2
                                + " units, this run has " + refCache.length / 2 + "; resume with the dataset the checkpoint was trained on");
                    for (int i = 0; i < refCache.length; i++) refCache[i] = seg.getAtIndex(LE_DOUBLE, i);
                }
            });
            if (state.globalStep() > total)
                throw new ConfigException("resume_from_checkpoint " + resume + " is at step " + state.globalStep() + ", past this run's "
                        + total + " steps; raise max_steps (or num_train_epochs), or choose another output_dir to start over");
            batcher.seek(state.position());
        }
        List<Map<String, Object>> history = new ArrayList<>(state.logHistory());
        if (resume != null && writer) rewriteLog(history);   // drop lines logged after the checkpoint by the interrupted run
        long step = state.globalStep();
        double windowSum = state.lossWindowSum();
        int windowSteps = state.lossWindowSteps();
        long tokensSeen = state.tokensSeen();
        listener.onStart(total, step);

        TrainArgs.Output o = args.output();
        int saveSteps = o.saveSteps(), logSteps = o.loggingSteps();
        boolean evalSteps = args.eval().strategy().equals("steps") && !eval.isEmpty();
        int evalEvery = args.eval().steps();
        double maxNorm = args.optimizerMethod().skipsClipping() ? 0 : args.training().maxGradNorm();
        long t0 = System.nanoTime(), tokensThisRun = 0, startStep = step;
        double lastLoss = Double.NaN;
        Double lastEval = null;
        List<String> names = ordered.stream().map(Param::name).toList();
        List<float[]> allGrads = grads(ordered);
        int[] targets = new int[model.B * model.Tmax];
        List<Batcher.Batch> micro = new ArrayList<>(accum);
        // what the ranks sum after each backward besides the gradients: the loss; for stage dpo the tokens, the
        // window's metrics and the reference log-probabilities each rank computed for its pairs (so every rank's
        // cache is one process's); one operation
        int unitsPerStep = pref == null ? 0 : accum * pref.maxUnits() * world;
        double[] lossWord = new double[pref == null ? 1 : 2 + SequenceObjective.Totals.PACKED + 2 * unitsPerStep];
        SequenceObjective.Totals stepTotals = new SequenceObjective.Totals();
        long[] stopWord = new long[1];

        while (step < total) {
            if (stopRequested(stopWord)) {
                double seconds = (System.nanoTime() - t0) / 1e9;
                return new Result(step, trainLoss(history, lastLoss), lastEval, seconds, tokensThisRun / Math.max(seconds, 1e-9), outputDir, true);
            }
            micro.clear();
            int items = 0;
            for (int a = 0; a < accum; a++) {
                Batcher.Batch b = batcher.next();
                if (model.shiftAttn()) b = Batcher.padTo(b, TrainModel.shiftAttnLength(b.T(), true), padId);   // S²-Attn's multiple of 8
                micro.add(b);
                items += countTargets(b);
            }
            model.zeroGrad();
            double lossSum = 0;
            if (pref != null) {
                // HF: the mean over the units (pairs, examples) of the accumulated step
                items = 0;
                for (Batcher.Batch b : micro) items += b.B();
                long prefTokens = 0;
                if (world > 1) { stepTotals.reset(); Arrays.fill(lossWord, 0); }
                int perRank = pref.maxUnits(), refAt = 2 + SequenceObjective.Totals.PACKED;
                for (int m = 0; m < micro.size(); m++) {
                    // stage dpo with several ranks: rank r scores pairs [r·P, r·P + P) of every global micro-batch
                    int[] ids = micro.get(m).exampleIds();
                    int r0 = Math.min(rank * perRank, ids.length), n = world == 1 ? ids.length : Math.min(perRank, ids.length - r0);
                    if (n == 0) continue;
                    if (world > 1) ids = Arrays.copyOfRange(ids, r0, r0 + n);
                    // no dropout in the policy pass: LLaMA-Factory's CustomDPOTrainer/CustomKTOTrainer(disable_dropout=True);
                    // stage rm keeps it (its PairwiseTrainer trains in plain training mode)
                    lossSum += pref.forward(units, ids, padId, pref.dropoutInTraining(), step, world == 1 ? window : stepTotals, refCache);
                    pref.backward(1.0 / items, step);
                    prefTokens += pref.lastTokens();
                    for (int i = 0; world > 1 && refCache != null && i < n; i++) {
                        int at = refAt + 2 * (m * perRank * world + r0 + i);
                        lossWord[at] = refCache[2 * ids[i]];
                        lossWord[at + 1] = refCache[2 * ids[i] + 1];
                    }
                }
                if (world > 1) {
                    lossWord[1] = prefTokens;
                    stepTotals.pack(lossWord, 2);
                }
                if (world == 1) { tokensSeen += prefTokens; tokensThisRun += prefTokens; }
            } else for (Batcher.Batch b : micro) {
                // this rank's rows of the global micro-batch (none when a short last batch ends before them)
                int r0 = Math.min(rank * model.B, b.B()), rows = Math.min(model.B, b.B() - r0);
                if (rows > 0) {
                    // padded to the longest of these rows, as a process batching only them pads (so a rank computes
                    // exactly what one process accumulating the same micro-batches computes)
                    int T = world == 1 ? b.T() : 0;
                    for (int r = r0; r < r0 + rows && world > 1; r++) T = Math.max(T, b.lengths()[r]);
                    if (world > 1) T = TrainModel.shiftAttnLength(T, model.shiftAttn());
                    int[] ids = world == 1 ? b.inputIds() : rows(b.inputIds(), b.T(), r0, rows, T);
                    int[] labels = world == 1 ? b.labels() : rows(b.labels(), b.T(), r0, rows, T);
                    int n = CrossEntropy.shiftLabels(targets, labels, rows, T);
                    double s = model.forward(ids, targets, rows, T, true, step);
                    if (model.asft()) {
                        // LLaMA-Factory's asft_loss_func: the mean over this micro-batch's labelled tokens (0 without any), and
                        // transformers' training_step divides no compute_loss_func loss by gradient_accumulation_steps: the
                        // step's loss and gradient are the sums over its micro-batches
                        lossSum += n == 0 ? 0 : s / n;
                        model.backward(ids, targets, T, n == 0 ? 0f : 1f / n, step);
                    } else {
                        lossSum += s;
                        model.backward(ids, targets, T, items == 0 ? 0f : 1f / items, step);
                    }
                }
                for (int len : b.lengths()) { tokensSeen += len; tokensThisRun += len; }
            }
            if (world > 1) {
                // DDP: the gradients of the trainable tensors, and the loss for the log, summed over the ranks
                collective.allReduceSum(allGrads);
                lossWord[0] = lossSum;
                collective.allReduceSum(lossWord);
                lossSum = lossWord[0];
                if (pref != null) {
                    tokensSeen += (long) lossWord[1];
                    tokensThisRun += (long) lossWord[1];
                    window.addPacked(lossWord, 2);
                    for (int m = 0; refCache != null && m < micro.size(); m++) {
                        int[] ids = micro.get(m).exampleIds();
                        for (int j = 0; j < ids.length; j++) {
                            int at = 2 + SequenceObjective.Totals.PACKED + 2 * (m * pref.maxUnits() * world + j);
                            refCache[2 * ids[j]] = lossWord[at];
                            refCache[2 * ids[j] + 1] = lossWord[at + 1];
                        }
                    }
                }
            }
            double loss = pref == null && model.asft() ? lossSum : items == 0 ? 0 : lossSum / items;
            if (!Double.isFinite(loss))
                throw new Peft4jException("training diverged: the loss is " + loss + " at step " + (step + 1)
                        + "; lower learning_rate or set max_grad_norm" + lastCheckpointNote());
            String bad = GradClip.firstNonFinite(names, allGrads);
            if (bad != null)
                throw new Peft4jException("training diverged: the gradient of '" + bad + "' has NaN/Inf at step " + (step + 1)
                        + "; lower learning_rate or set max_grad_norm" + lastCheckpointNote());
            optA.beforeClip();
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
            boolean logNow = writer && (step % logSteps == 0 || step == total);
            Double logged = logNow ? round(windowSum / windowSteps) : null;
            Map<String, Double> metrics = Map.of();
            if (logNow) {
                Map<String, Object> e = Checkpoint.map("current_steps", step, "total_steps", total,
                        "loss", logged, "lr", schedule.lr(step - 1), "grad_norm", round(norm),
                        "epoch", round(epoch), "percentage", Math.round(1000.0 * step / total) / 10.0,
                        "elapsed_time", hms(elapsed), "remaining_time", hms(eta), "tokens_per_second", Math.round(tps));
                if (pref != null) {
                    metrics = rounded(window.means(""));
                    e.putAll(metrics);
                    window.reset();
                }
                history.add(e);
                appendLog(e);
                windowSum = 0;
                windowSteps = 0;
            }
            listener.onStep(new StepMetrics(step, total, loss, lr, norm, epoch, tps, elapsed, eta, logged, metrics));
            if (writer && evalSteps && step % evalEvery == 0) {
                lastEval = evaluate();
                Map<String, Object> e = Checkpoint.map("current_steps", step, "total_steps", total, "eval_loss", round(lastEval),
                        "epoch", round(epoch));
                e.putAll(lastEvalMetrics);
                history.add(e);
                appendLog(e);
                listener.onEval(step, lastEval, lastEvalMetrics);
            }
            // transformers (DefaultFlowCallback) saves every save_steps and at the last step, so a run can be extended later
            if (writer && saveSteps > 0 && (step % saveSteps == 0 || step == total)) {
                var pos = batcher.position();
                var st = new Checkpoint.State(step, pos.epoch(), pos.index(), windowSum, windowSteps, tokensSeen, history);
                List<org.peft4j.formats.safetensors.SafeTensors.Entry> optState = new ArrayList<>(optA.save("a."));
                if (optB != null) optState.addAll(optB.save("b."));
                if (refCache != null) optState.add(referenceCacheEntry());
                Path dir = Checkpoint.save(outputDir, st, ordered, optState, this::saveModelFiles);
                if (o.saveTotalLimit() != null && o.saveTotalLimit() > 0) Checkpoint.rotate(outputDir, o.saveTotalLimit());   // 0 = no limit, as transformers
                listener.onCheckpoint(step, dir);
            }
        }
        double seconds = (System.nanoTime() - t0) / 1e9;
        if (!writer) return new Result(step, trainLoss(history, lastLoss), null, seconds, tokensThisRun / Math.max(seconds, 1e-9), outputDir, false);
        if (!eval.isEmpty() && (args.eval().doEval() || !args.eval().strategy().equals("no"))) lastEval = evaluate();
        saveModelFiles(outputDir);
        Result r = new Result(step, trainLoss(history, lastLoss), lastEval, seconds, tokensThisRun / Math.max(seconds, 1e-9), outputDir, false);
        writeResults(r, history);
        return r;
    }

    /// Rows [r0, r0 + rows) of a (·, T) row-major batch, each cut to its first `T2` ≤ T positions.
    private static int[] rows(int[] x, int T, int r0, int rows, int T2) {
        int[] out = new int[rows * T2];
        for (int r = 0; r < rows; r++) System.arraycopy(x, (r0 + r) * T, out, r * T2, T2);
        return out;
    }

    /// Cancellation before a step: with several ranks, any rank's request stops all of them at the same step.
    private boolean stopRequested(long[] word) {
        if (collective.worldSize() == 1) return cancelled.getAsBoolean();
        word[0] = cancelled.getAsBoolean() ? 1 : 0;
        collective.allReduceSum(word);
        return word[0] > 0;
    }

    /// do_train: false. The validation loss of the model as built (the base, or the adapter of adapter_name_or_path),
    /// written to all_results.json and eval_results.json; no training, no adapter written.
    public Result evaluateOnly() {
        listener.onStart(0, 0);
        long t0 = System.nanoTime();
        double loss = evaluate();
        double seconds = (System.nanoTime() - t0) / 1e9;
        listener.onEval(0, loss, lastEvalMetrics);
        Map<String, Object> all = Checkpoint.map("eval_loss", round(loss), "eval_perplexity", round(Math.exp(loss)),
                "eval_runtime", round(seconds), "eval_samples", eval.size());
        if (pref != null) { all.remove("eval_perplexity"); all.put("eval_samples", evalUnits.size()); all.putAll(lastEvalMetrics); }
        try {
            Files.createDirectories(outputDir);
            var om = new ObjectMapper().enable(com.fasterxml.jackson.databind.SerializationFeature.INDENT_OUTPUT);
            Checkpoint.writeAtomically(outputDir.resolve("eval_results.json"), om.writeValueAsString(all));
            Checkpoint.writeAtomically(outputDir.resolve("all_results.json"), om.writeValueAsString(all));
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
        return new Result(0, Double.NaN, loss, seconds, 0, outputDir, false);
    }

    /// The validation loss as transformers' evaluation loop reports it: batches of per_device_eval_batch_size examples
    /// in order, each batch's mean token loss weighted by its number of examples (`losses.repeat(batch_size)`, then the
    /// mean). One batch gives the mean token loss. A batch wider than the planned B runs as forwards of at most B rows
    /// (their sums add up to the batch's). No dropout, no NEFTune.
    public double evaluate() {
        if (eval.isEmpty()) throw new ConfigException("no validation examples to evaluate; set val_size or eval_dataset");
        if (pref != null) {
            SequenceObjective.Totals t = evaluatePreference();
            lastEvalMetrics = rounded(t.means("eval_"));
            return t.meanLoss();
        }
        Batcher b = new Batcher(eval, args.eval().perDeviceEvalBatchSize(), padId, 0, false);
        int[] targets = new int[model.B * model.Tmax];
        double weighted = 0;
        long rows = 0;
        for (int i = 0; i < b.batchesPerEpoch(); i++) {
            Batcher.Batch x = b.next();
            int T = x.T();
            double sum = 0;
            long n = 0;
            for (int r0 = 0; r0 < x.B(); r0 += model.B) {
                int rs = Math.min(model.B, x.B() - r0);
                int[] ids = Arrays.copyOfRange(x.inputIds(), r0 * T, (r0 + rs) * T);
                n += CrossEntropy.shiftLabels(targets, Arrays.copyOfRange(x.labels(), r0 * T, (r0 + rs) * T), rs, T);
                sum += model.forward(ids, targets, rs, T, false, 0);
            }
            if (n == 0) continue;   // no labelled token: transformers' batch loss would be NaN; skip it
            weighted += x.B() * (sum / n);
            rows += x.B();
        }
        return rows == 0 ? Double.NaN : weighted / rows;
    }

    /// Stages dpo and kto: the validation units in order, in forwards of as many units as a training micro-batch,
    /// no dropout: the mean unit loss and TRL's metrics (`eval_rewards/accuracies`, `eval_kl`, ...). For kto the KL
    /// estimate is per forward, as for training batches.
    public SequenceObjective.Totals evaluatePreference() {
        if (pref == null) throw new IllegalStateException("not a preference run");
        SequenceObjective.Totals t = new SequenceObjective.Totals();
        int n = evalUnits.size(), per = pref.maxUnits();
        for (int p0 = 0; p0 < n; p0 += per) {
            int[] ids = new int[Math.min(per, n - p0)];
            for (int i = 0; i < ids.length; i++) ids[i] = p0 + i;
            pref.forward(evalUnits, ids, padId, false, 0, t, evalRefCache);
        }
        return t;
    }

    /// The metrics of the last evaluation (stages dpo and kto), under their `eval_` names; empty otherwise.
    public Map<String, Double> lastEvalMetrics() { return lastEvalMetrics; }

    private static Map<String, Double> rounded(Map<String, Double> m) {
        Map<String, Double> out = new java.util.LinkedHashMap<>();
        m.forEach((k, v) -> out.put(k, round(v)));
        return out;
    }

    private static double trainLoss(List<Map<String, Object>> history, double lastLoss) {
        return history.stream().filter(e -> e.containsKey("loss")).mapToDouble(e -> ((Number) e.get("loss")).doubleValue()).average().orElse(lastLoss);
    }

    /// " (no checkpoint was written)" or " (the last checkpoint, before the divergence, is X)".
    private String lastCheckpointNote() {
        Path last = Checkpoint.last(outputDir);
        return last == null ? " (no checkpoint was written)" : " (the last checkpoint, before the divergence, is " + last + ")";
    }

    private Path resumePath() {
        String r = args.output().resumeFromCheckpoint();
        if (r == null || r.equals("false")) return null;
        if (r.equals("true") || r.equals("last")) {
            Path last = Checkpoint.last(outputDir);
            if (last == null) throw new ConfigException("resume_from_checkpoint: no checkpoint-N folder in " + outputDir);
            return last;
        }
        Path p = Path.of(r);
        if (!Files.isDirectory(p)) throw new ConfigException("resume_from_checkpoint: " + p + " is not a folder");
        if (!Files.exists(p.resolve(Checkpoint.STATE_FILE)))
            throw new ConfigException("resume_from_checkpoint: " + p + " has no " + Checkpoint.STATE_FILE + ", so it is not a complete checkpoint; "
                    + "give a checkpoint-N folder written by peft4j, or 'last'");
        return p;
    }

    /// The user-facing model files: a PEFT adapter for LoRA, the whole model for full and freeze tuning.
    private void saveModelFiles(Path dir) {
        if (tokenizerDir != null) Export.saveTokenizer(tokenizerDir, dir, template);
        if (pref instanceof RewardObjective rm) rm.save(dir);
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
            if (args.finetuning().pissaConvert() && !converted.isEmpty())
                new PeftAdapter(Pissa.convertConfig(lc), baseModel, null, converted).write(dir.resolve("pissa_converted"), DType.F32);
        } else if (model.method instanceof Method.Ia3(var ic)) {
            new org.peft4j.model.adapter.ia3.Ia3Adapter(ic, baseModel, null, model.trainedAdapter().ia3.vectors()).write(dir, DType.F32);
        } else if (model.method instanceof Method.Prompt) {
            var p = model.trainedAdapter().prompt;
            new org.peft4j.model.adapter.prompt.PromptAdapter(p.numVirtualTokens(), p.tokenDim(), p.init(), p.initText(),
                    p.init().equals("TEXT") ? baseModel : null, baseModel, p.embeddings()).write(dir, DType.F32);
        } else if (model.method instanceof Method.PTuning(var pc)) {   // PEFT saves the encoder's output, not the encoder
            new org.peft4j.model.adapter.ptuning.PTuningAdapter(pc, model.config.hiddenSize(), baseModel, model.ptuningEmbeddings()).write(dir, DType.F32);
        } else if (model.method instanceof Method.Prefix) {
            model.refreshPrefix();   // with prefix_projection: the MLP's output for the current parameters, as PEFT saves it
            var p = model.trainedAdapter().prefix;
            new org.peft4j.model.adapter.prefix.PrefixAdapter(p.numVirtualTokens(), p.numLayers(), p.numAttentionHeads(), p.tokenDim(),
                    p.encoderHiddenSize(), p.prefixProjection(), baseModel, p.embeddings()).write(dir, DType.F32);
        } else if (model.method instanceof Method.Oft(var oc)) {
            // PEFT's OFT adapter: oft_R.weight per targeted linear (the base stays the original model's)
            List<org.peft4j.model.adapter.oft.OftAdapter.Module> mods = new java.util.ArrayList<>();
            for (var om : model.oftModules())
                mods.add(new org.peft4j.model.adapter.oft.OftAdapter.Module(om.layer(), om.module(), om.nBlocks(), om.b(), om.theta()));
            new org.peft4j.model.adapter.oft.OftAdapter(oc, baseModel, mods).write(dir);
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
        Map<String, Object> all = Checkpoint.map("epoch", round(args.training().maxSteps() > 0 ? Double.NaN : args.training().numTrainEpochs()),
                "train_loss", round(r.trainLoss()), "train_runtime", round(r.seconds()),
                "train_tokens_per_second", Math.round(r.tokensPerSecond()), "global_step", r.steps());
        if (r.evalLoss() != null) {
            all.put("eval_loss", round(r.evalLoss()));
            if (pref == null) all.put("eval_perplexity", round(Math.exp(r.evalLoss())));
            else all.putAll(lastEvalMetrics);
        }
        try {
            var om = new ObjectMapper().enable(com.fasterxml.jackson.databind.SerializationFeature.INDENT_OUTPUT);
            Checkpoint.writeAtomically(outputDir.resolve("all_results.json"), om.writeValueAsString(all));
            Checkpoint.writeAtomically(outputDir.resolve("trainer_state.json"), om.writeValueAsString(Checkpoint.map("global_step", r.steps(), "log_history", history)));
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
        if (args.output().plotLoss()) LossPlot.write(outputDir, history, LossPlot.metricKeys(args.finetuning().stage()));
    }

    private double epochOf(Batcher b) {
        var p = b.position();
        return p.epoch() + (double) p.index() / unitCount();
    }

    private static int countTargets(Batcher.Batch b) {
        int n = 0;
        for (int r = 0; r < b.B(); r++)
            for (int t = 1; t < b.T(); t++) if (b.labels()[r * b.T() + t] != CrossEntropy.IGNORE) n++;
        return n;
    }

    /// The checkpoint entry of the reference cache: a resumed run reuses the reference values the interrupted one
    /// computed (NaN where a unit was not seen yet), so it continues bit for bit.
    static final String REFERENCE_CACHE = "reference_logps";
    private static final java.lang.foreign.ValueLayout.OfDouble LE_DOUBLE =
            java.lang.foreign.ValueLayout.JAVA_DOUBLE_UNALIGNED.withOrder(java.nio.ByteOrder.LITTLE_ENDIAN);

    private org.peft4j.formats.safetensors.SafeTensors.Entry referenceCacheEntry() {
        byte[] b = new byte[8 * refCache.length];
        var seg = java.lang.foreign.MemorySegment.ofArray(b);
        for (int i = 0; i < refCache.length; i++) seg.setAtIndex(LE_DOUBLE, i, refCache[i]);
        return org.peft4j.formats.safetensors.SafeTensors.Entry.ofBytes(REFERENCE_CACHE, org.peft4j.core.DType.F64, new long[] {refCache.length}, b);
    }

    private static List<float[]> datas(List<Param> ps) { return ps.stream().map(Param::data).toList(); }
    private static List<float[]> grads(List<Param> ps) { return ps.stream().map(Param::grad).toList(); }
    static double round(double x) { return Double.isFinite(x) ? Math.round(x * 1e4) / 1e4 : x; }

    static String hms(double s) {
        long t = Math.round(s);
        return String.format("%d:%02d:%02d", t / 3600, (t / 60) % 60, t % 60);
    }

    /// Builds the QLoRA model: LoRA adapters over a frozen 4-bit base.
    public static TrainModel model(TrainConfig cfg, org.peft4j.model.quant.QuantizedModel base, Gemm gemm, int Tmax) {
        TrainArgs a = cfg.args();
        return neftune(new TrainModel(base, a.finetuning().method(), gemm, a.training().perDeviceTrainBatchSize(), Tmax,
                a.finetuning().gradientCheckpointing(), a.training().seed()), a);
    }

    /// Builds the model for training: weights, method, batch and planned sequence length.
    public static TrainModel model(TrainConfig cfg, LlamaWeights weights, Gemm gemm, int Tmax) {
        TrainArgs a = cfg.args();
        return neftune(new TrainModel(weights, a.finetuning().method(), gemm, a.training().perDeviceTrainBatchSize(), Tmax,
                a.finetuning().gradientCheckpointing(), a.training().seed()), a);
    }

    /// neftune_noise_alpha, when set, on a built model.
    public static TrainModel neftune(TrainModel m, TrainArgs a) {
        if (a.finetuning().neftuneNoiseAlpha() != null) m.setNeftuneAlpha(a.finetuning().neftuneNoiseAlpha().floatValue());
        return m;
    }

    /// shift_attn on a built model: LongLoRA's S²-Attn in its training forwards (its Tmax must be
    /// [TrainModel#shiftAttnLength] of the longest example).
    public static TrainModel shiftAttn(TrainModel m, TrainConfig c) {
        m.setShiftAttn(c.b("shift_attn"));
        return m;
    }

    /// use_asft_loss (with asft_alpha; its reference is given by the recipe) / use_dft_loss / use_eaft_loss (with
    /// eaft_alpha) on a built model: its token loss becomes ASFT's or the weighted one, in
    /// training and evaluation alike (transformers applies compute_loss_func to both). DFT wins when both are set, as
    /// in LLaMA-Factory's CustomSeq2SeqTrainer.
    public static TrainModel lossVariant(TrainModel m, TrainConfig c) {
        if (c.b("use_asft_loss")) m.setAsft(c.d("asft_alpha"));
        else if (c.b("use_dft_loss")) m.setTokenWeights(new org.peft4j.model.layers.TokenWeightedLoss.Config(org.peft4j.model.layers.TokenWeightedLoss.Kind.DFT, c.d("eaft_alpha")));
        else if (c.b("use_eaft_loss")) m.setTokenWeights(new org.peft4j.model.layers.TokenWeightedLoss.Config(org.peft4j.model.layers.TokenWeightedLoss.Kind.EAFT, c.d("eaft_alpha")));
        return m;
    }
}
