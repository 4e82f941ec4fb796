package org.peft4j.train.recipe;

import org.peft4j.core.Gemm;
import org.peft4j.core.Gemms;
import org.peft4j.core.Parallel;
import org.peft4j.core.Peft4jException.ConfigException;
import org.peft4j.core.Peft4jException.FormatException;
import org.peft4j.model.LlamaConfig;
import org.peft4j.model.Models;
import org.peft4j.model.adapter.LoadedAdapter;
import org.peft4j.model.adapter.lora.LoraConfig;
import org.peft4j.model.adapter.lora.LoraWeights;
import org.peft4j.model.adapter.lora.PeftAdapter;
import org.peft4j.model.llama.Decoder;
import org.peft4j.model.llama.LlamaWeights;
import org.peft4j.model.gguf.GgufModel;
import org.peft4j.model.quant.QuantizedModel;
import org.peft4j.quant.QuantType;
import org.peft4j.tokenizer.Tokenizer;
import org.peft4j.train.Checkpoint;
import org.peft4j.train.TrainArgs;
import org.peft4j.train.TrainConfig;
import org.peft4j.train.TrainData;
import org.peft4j.train.Trainer;
import org.peft4j.train.dist.Collective;
import org.peft4j.train.engine.Method;
import org.peft4j.train.engine.Param;
import org.peft4j.train.engine.TrainModel;
import org.peft4j.train.estimate.HeapPlan;
import org.peft4j.train.estimate.MemoryEstimate;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.function.Consumer;
import java.util.function.Function;
import java.util.stream.Stream;

/// The fine-tuning recipe behind `peft4j train`, the web board and the server: a [TrainConfig] in, [TrainEvent]s out.
/// In the order it runs: resolve the model folder; prepare output_dir (resume from its last checkpoint; nothing a
/// resume needs is ever deleted) and save the resolved config; load the base (dense, or frozen in
/// 4-bit for QLoRA), the tokenizer and the data; answer compare_prompts with the base; build the training model,
/// copying in the adapter of adapter_name_or_path when training continues one; run the [Trainer] (checkpoints,
/// trainer_log.jsonl, the adapter or model, plots, all_results.json), or only evaluate with do_train false; answer
/// again with the tuned model. It prints nothing: progress goes to the listener, notes to System.Logger.
///
/// One instance runs once; [#cancel] from any thread stops it before its next optimizer step.
public final class FinetuneRecipe {
    private static final System.Logger LOG = System.getLogger(FinetuneRecipe.class.getName());

    /// What [#run] returns: the trainer's result and, with compare_prompts or forgetting_text, the comparison.
    public record Result(Trainer.Result train, Comparison comparison) {}

    /// The objects behind the events, handed to [#inspect] once built, before the first step: for tests and tools.
    /// `weights` is null for a 4-bit base unless a comparison needed them dequantized.
    public record Built(TrainArgs args, Path modelDir, LlamaWeights weights, QuantizedModel quantizedBase, TrainData data,
                        TrainModel model, Trainer trainer) {}

    private final Function<String, Path> modelFolder;
    private volatile boolean cancelled;
    private Consumer<Built> inspector = b -> {};
    private Collective collective = Collective.single();

    /// model_name_or_path is a local folder.
    public FinetuneRecipe() { this(Path::of); }

    /// `modelFolder` turns model_name_or_path into a local folder (the CLI downloads Hugging Face repo ids with it).
    public FinetuneRecipe(Function<String, Path> modelFolder) { this.modelFolder = modelFolder; }

    /// Stops the run before its next optimizer step: it then finishes with a cancelled result and writes nothing more,
    /// so output_dir keeps its last complete checkpoint, which running the same config again resumes from.
    public void cancel() { cancelled = true; }

    public boolean isCancelled() { return cancelled; }

    /// Runs as rank `c.rank()` of a data-parallel job ([Trainer#collective]): every rank runs this recipe with the same
    /// config; rank 0 alone prepares output_dir (and decides the resume, which it broadcasts), writes
    /// training_args.json, answers compare_prompts, logs and saves; the others read the data and the checkpoint.
    public FinetuneRecipe collective(Collective c) { this.collective = c; return this; }

    /// Receives the built objects before training starts.
    public FinetuneRecipe inspect(Consumer<Built> inspector) { this.inspector = inspector; return this; }

    /// Runs the recipe on the calling thread. Ends with [TrainEvent.Finished], or with [TrainEvent.Failed] and the
    /// exception rethrown.
    public Result run(TrainConfig config, TrainEvent.Listener listener) {
        Result r;
        try {
            r = train(config, listener);
        } catch (RuntimeException | Error e) {
            listener.on(new TrainEvent.Failed(e));
            throw e;
        }
        listener.on(new TrainEvent.Finished(r));
        return r;
    }

    private Result train(TrainConfig config, TrainEvent.Listener listener) {
        TrainArgs a = config.args();
        if (a.peft4j().threads() != null) Parallel.setThreads(Parallel.capToCores(a.peft4j().threads()));
        Path modelDir = modelFolder.apply(a.model().nameOrPath());
        if (!Files.isDirectory(modelDir) && !GgufModel.isGguf(modelDir))
            throw new ConfigException("model_name_or_path " + modelDir + " is not a folder; give a local Hugging Face model folder or a GGUF file");
        if (config.str("output_dir").matches("[A-Za-z][A-Za-z0-9+.-]*://.*"))
            throw new ConfigException("output_dir " + config.str("output_dir") + " is a URI (HDFS, S3, ...), which only a run on Spark "
                    + "(--spark-master, or spark-submit of org.peft4j.spark.PeftSpark) writes to, through Hadoop's FileSystem; give a local folder");
        Path out = a.output().dir();
        boolean writer = collective.rank() == 0;
        if (collective.worldSize() > 1 && !a.finetuning().doTrain())
            throw new ConfigException("do_train: false only evaluates, which runs in one process; drop the data-parallel ranks (--spark-master)");
        Path resumeFrom = a.finetuning().doTrain() && writer ? prepareOutputDir(config, a.output()) : null;
        if (collective.worldSize() > 1) {
            // rank 0 looked at output_dir (and may have moved an old run away): the others resume from what it chose
            long[] resumeStep = {resumeFrom == null ? -1 : Long.parseLong(resumeFrom.getFileName().toString().substring(Checkpoint.PREFIX.length()))};
            collective.broadcast(resumeStep, 0);
            if (!writer && resumeStep[0] >= 0) {
                resumeFrom = out.resolve(Checkpoint.PREFIX + resumeStep[0]);
                config.with("resume_from_checkpoint", resumeFrom.toString());
            }
        }
        if (resumeFrom != null) a = config.args();
        if (writer) Checkpoint.writeAtomically(createDirectories(out).resolve("training_args.json"), config.toJson());
        listener.on(new TrainEvent.Preparing(config, out, resumeFrom));

        Gemm gemm = Gemms.get(a.peft4j().gemm());
        if (config.b("do_predict") && !a.finetuning().doTrain() && !a.eval().doEval()) {
            // LLaMA-Factory's sft workflow with do_predict only: generation over eval_dataset, no model to train
            org.peft4j.train.Prediction.Result p = org.peft4j.train.Prediction.run(config, modelDir, gemm);
            LOG.log(System.Logger.Level.INFO, "predicted {0} examples: {1}", p.examples(), p.metrics());
            return new Result(new Trainer.Result(0, Double.NaN, null, p.seconds(), 0, out, false), null);
        }
        boolean prequantized = QuantizedModel.isQuantized(modelDir);
        boolean comparing = writer && a.finetuning().doTrain() && (!a.peft4j().comparePrompts().isEmpty() || a.peft4j().forgettingText() != null);
        QuantizedModel qbase = null;
        GgufModel.Base ggufBase = null;
        LlamaWeights weights;
        boolean gguf = GgufModel.isGguf(modelDir);
        if (gguf && a.model().quantizationBit() != null)
            throw new ConfigException("quantization_bit " + a.model().quantizationBit() + " re-quantizes a float model to 4 bits; " + modelDir
                    + " is a GGUF file whose quantized weights are trained over as stored: drop quantization_bit");
        if (gguf && a.finetuning().type().equals("lora") && (ggufBase = GgufModel.loadBase(modelDir, true)).quantized()) {
            // LoRA over the GGUF blocks as stored, dequantized tile by tile in forward and backward (QLoRA's way)
            weights = comparing ? Models.loadWeights(modelDir) : null;
        } else if ((prequantized || a.model().quantizationBit() != null) && a.finetuning().type().equals("oft")) {
            // QOFT (LLaMA-Factory's extras/qoft): PEFT rotates the input of the 4-bit layer, y = (x·R_bd)·deq(W)ᵀ; peft4j
            // trains the same product over the dequantized 4-bit weights (same numbers, no memory saving over OFT)
            QuantizedModel q = prequantized ? QuantizedModel.load(modelDir)
                    : QuantizedModel.quantize(Models.loadWeights(modelDir), QuantType.of(a.model().quantizationType()), 64, a.model().doubleQuantization());
            weights = q.dequantizedWeights();
            LOG.log(System.Logger.Level.INFO, "OFT over the 4-bit base: trained over its dequantized weights (the numbers PEFT's bnb OFT uses; float memory)");
        } else if (prequantized || a.model().quantizationBit() != null) {
            if (!a.finetuning().type().equals("lora")) throw new ConfigException(modelDir + " is 4-bit quantized: only finetuning_type lora (QLoRA) can train it");
            qbase = prequantized ? QuantizedModel.load(modelDir)
                    : QuantizedModel.quantize(Models.loadWeights(modelDir), QuantType.of(a.model().quantizationType()), 64, a.model().doubleQuantization());
            weights = comparing ? qbase.dequantizedWeights() : null;
        } else {
            weights = ggufBase != null ? ggufBase.weights() : Models.loadWeights(modelDir);   // (an F32 GGUF: its float weights)
            ggufBase = null;
        }
        LlamaConfig baseConfig = qbase != null ? qbase.config : ggufBase != null ? ggufBase.weights().config : weights.config;
        Tokenizer tok = Tokenizer.load(modelDir, baseConfig.vocabSize());
        TrainData data = TrainData.prepare(a, tok, modelDir);
        int tmax = TrainModel.shiftAttnLength(Math.min(a.data().cutoffLen(), data.maxLength()), config.b("shift_attn"));
        if (data.maxLength() > baseConfig.maxPositionEmbeddings())
            // LLaMA-Factory only truncates at cutoff_len and would train past the context; peft4j stays within it
            throw new ConfigException("the longest example has " + data.maxLength() + " tokens after cutoff_len " + a.data().cutoffLen()
                    + ", more than the model's max_position_embeddings " + baseConfig.maxPositionEmbeddings()
                    + "; peft4j trains within the model's context (LLaMA-Factory would run past it): set cutoff_len to "
                    + baseConfig.maxPositionEmbeddings() + " or less");
        if (a.data().cutoffLen() > baseConfig.maxPositionEmbeddings())
            LOG.log(System.Logger.Level.INFO, "cutoff_len {0} is beyond max_position_embeddings {1}; every example fits the context (longest {2} tokens)",
                    a.data().cutoffLen(), baseConfig.maxPositionEmbeddings(), data.maxLength());

        BeforeAfter comparison = null;
        if (comparing) {
            comparison = new BeforeAfter(modelDir, gemm, tok, data, a.peft4j().comparePrompts(), a.peft4j().forgettingText(),
                    List.of("dpo", "kto", "rm").contains(a.finetuning().stage()));
            comparison.before(weights);
        }

        PeftAdapter continued = null;
        Method method = a.finetuning().method();
        if (a.model().adapterNameOrPath() != null) {
            continued = readAdapter(config, a, Path.of(a.model().adapterNameOrPath()), baseConfig);
            method = new Method.Lora(continued.config());
        }
        if (method instanceof Method.Prompt pm && pm.init().equals("TEXT"))   // PEFT: tokenizer(init_text)["input_ids"], BOS included
            method = new Method.Prompt(pm.numVirtualTokens(), pm.init(), pm.initText(), tok.encode(pm.initText(), true));
        // stage dpo: per_device_train_batch_size counts pairs, each two rows (chosen, rejected) of one forward; stage kto
        // scores an example and its KL sequence in separate forwards of per_device_train_batch_size rows
        String stage = a.finetuning().stage();
        int B = a.training().perDeviceTrainBatchSize() * (stage.equals("dpo") || stage.equals("rm") ? 2 : 1);
        boolean ckpt = a.finetuning().gradientCheckpointing();
        int seed = a.training().seed();
        requireMemory(a, baseConfig, method, qbase != null || ggufBase != null, tmax, ggufBase == null ? -1 : ggufBase.bytes());
        TrainModel model = Trainer.neftune(qbase != null ? new TrainModel(qbase, method, gemm, B, tmax, ckpt, seed)
                : ggufBase != null ? new TrainModel(ggufBase.weights(), ggufBase.linears(), method, gemm, B, tmax, ckpt, seed)
                : new TrainModel(weights, method, gemm, B, tmax, ckpt, seed), a);
        Trainer.lossVariant(model, config);
        Trainer.shiftAttn(model, config);
        if (continued != null) copyAdapter(model, continued, Path.of(a.model().adapterNameOrPath()));
        if (a.preference().needsReference(stage) && (a.preference().refModel() != null || !method.adapter()))
            useReference(model, a.preference(), a.preference().refModel() == null ? modelDir : modelFolder.apply(a.preference().refModel()), gemm);

        int pairRows = stage.equals("dpo") || stage.equals("kto") || stage.equals("rm") ? 2 : 1;   // units of two sequences each
        TrainEvent.Setup setup = new TrainEvent.Setup(modelDir,
                qbase == null ? null : new TrainEvent.Quantization(qbase.type.name().toLowerCase(), qbase.doubleQuant, qbase.bitsPerParameter()),
                data.train().size() / pairRows, data.eval().size() / pairRows, data.maxLength(), data.template().name(), Parallel.threads(), gemm.name(),
                a.finetuning().type(), model.params().stream().mapToLong(p -> p.data().length).sum(), model.activationBytes(),
                continued == null ? null : new TrainEvent.ContinuedAdapter(Path.of(a.model().adapterNameOrPath()), continued.config().r(),
                        continued.config().loraAlpha(), continued.config().targetModules(), continued.config().useDora()));
        Trainer trainer = new Trainer(a, model, data, out, a.model().nameOrPath(), hooks(config, out, setup, listener))
                .saveTokenizer(modelDir, data.template()).cancelWhen(() -> cancelled).collective(collective);
        inspector.accept(new Built(a, modelDir, weights, qbase, data, model, trainer));

        Trainer.Result r = a.finetuning().doTrain() ? trainer.run() : trainer.evaluateOnly();
        if (config.b("do_predict") && !r.cancelled()) {   // do_eval with do_predict (no training): the evaluation, then the predictions
            org.peft4j.train.Prediction.Result p = org.peft4j.train.Prediction.run(config, modelDir, gemm);
            LOG.log(System.Logger.Level.INFO, "predicted {0} examples: {1}", p.examples(), p.metrics());
        }
        Comparison c = comparison != null && !r.cancelled() ? comparison.after(out, method.adapter()) : null;
        return new Result(r, c);
    }

    /// The reference model of stages dpo and kto (and of use_asft_loss) when it is not the LoRA model's base with the adapter off
    /// (LLaMA-Factory's `create_ref_model`): `ref_model` (4-bit with ref_model_quantization_bit, with
    /// ref_model_adapters on top), or for full and freeze tuning a frozen copy of the model as loaded, read again
    /// from its folder (training changes the loaded weights in place, and a resumed run must compare against the
    /// initial model, not the checkpoint).
    static void useReference(TrainModel model, TrainArgs.Preference p, Path dir, Gemm gemm) {
        if (!Files.isDirectory(dir)) throw new ConfigException("ref_model " + dir + " is not a folder; give a local Hugging Face model folder");
        Decoder decoder;
        LlamaConfig config;
        if (QuantizedModel.isQuantized(dir) || p.refModelQuantizationBit() != null) {
            QuantizedModel q = QuantizedModel.isQuantized(dir) ? QuantizedModel.load(dir)
                    : QuantizedModel.quantize(Models.loadWeights(dir), QuantType.NF4, 64, true);
            decoder = Decoder.of(q, gemm);
            config = q.config;
        } else {
            LlamaWeights w = Models.loadWeights(dir);
            decoder = Decoder.of(w, gemm);
            config = w.config;
        }
        LoadedAdapter adapter = null;
        if (p.refModelAdapters() != null) {
            Path ad = Path.of(p.refModelAdapters());
            if (!Files.isDirectory(ad)) throw new ConfigException("ref_model_adapters " + ad + " is not a folder; give a PEFT adapter folder (adapter_config.json, adapter_model.safetensors)");
            adapter = LoadedAdapter.read("reference", ad, config);   // LoRA or (IA)³
        }
        model.useReference(decoder, adapter);
        LOG.log(System.Logger.Level.INFO, "reference model: {0}{1}{2}", dir, p.refModelQuantizationBit() != null ? " (4-bit)" : "",
                adapter == null ? "" : " with adapter " + p.refModelAdapters());
    }

    private static Trainer.Listener hooks(TrainConfig config, Path out, TrainEvent.Setup setup, TrainEvent.Listener listener) {
        return new Trainer.Listener() {
            @Override public void onStart(long totalSteps, long startStep) {
                listener.on(new TrainEvent.Started(config, out, totalSteps, startStep, setup));
            }
            @Override public void onStep(Trainer.StepMetrics m) {
                listener.on(new TrainEvent.Step(m.step(), m.totalSteps(), m.loss(), m.lr(), m.gradNorm(), m.tokensPerSecond(),
                        m.epoch(), m.elapsedSeconds(), m.etaSeconds(), m.loggedLoss(), m.metrics()));
            }
            @Override public void onEval(long step, double evalLoss, Map<String, Double> metrics) { listener.on(new TrainEvent.Eval(step, evalLoss, metrics)); }
            @Override public void onCheckpoint(long step, Path dir) { listener.on(new TrainEvent.CheckpointSaved(step, dir)); }
        };
    }

    /// Refuses, with the numbers, a run whose planned Java heap ([HeapPlan#heapData] of its [MemoryEstimate]) exceeds
    /// what this JVM may use, before allocating the trainable tensors (lora_rank 100000 would otherwise end in an
    /// OutOfMemoryError minutes later). `baseBytes`: the bytes a GGUF base holds as loaded, or -1 to count the weights
    /// from the config.
    static void requireMemory(TrainArgs a, LlamaConfig c, Method method, boolean quantized, int seq, long baseBytes) {
        MemoryEstimate e = MemoryEstimate.of(a, c, method, quantized, seq);
        if (baseBytes >= 0) e = e.withWeights(baseBytes);
        long need = HeapPlan.of(e).heapData();
        long max = Runtime.getRuntime().maxMemory();
        if (need > max)
            throw new ConfigException(String.format(java.util.Locale.ROOT, "this run needs about %.1f GiB of Java heap (trainable %.1f GiB, their gradients %.1f GiB, "
                    + "optimizer %.1f GiB, activations %.1f GiB), more than the %.1f GiB this JVM may use; lower lora_rank (%d), "
                    + "per_device_train_batch_size or cutoff_len, or give Java more memory (-Xmx; ./peft4j sets it from the plan unless PEFT4J_JAVA_OPTS has one)",
                    gib(need), gib(e.adapters()), gib(e.gradients()), gib(e.optimizer()), gib(e.activations()), gib(max), a.finetuning().loraRank()));
    }

    /// The memory plan of a run, before anything is loaded (the launcher's plan step): the base read from `modelDir`'s
    /// config.json (or a GGUF file's header), the method as the run builds it (a continued adapter's LoRA config),
    /// 4-bit when the folder is quantized or quantization_bit is set, at sequence length `seq` (the run trains at
    /// min(cutoff_len, longest example)). Loading holds a float copy beside the 4-bit one when quantization_bit
    /// quantizes a float checkpoint or OFT dequantizes a 4-bit one, and keeps it with compare_prompts or
    /// forgetting_text; [HeapPlan#loading] counts it.
    public static HeapPlan plan(TrainArgs a, Path modelDir, int seq) {
        boolean gguf = GgufModel.isGguf(modelDir);
        LlamaConfig c = gguf ? GgufModel.config(modelDir) : LlamaConfig.read(modelDir.resolve("config.json"));
        Method method = a.finetuning().method();
        if (a.model().adapterNameOrPath() != null && Files.isDirectory(Path.of(a.model().adapterNameOrPath())))
            method = new Method.Lora(PeftAdapter.read(Path.of(a.model().adapterNameOrPath())).config());
        boolean lora = a.finetuning().type().equals("lora");
        boolean fourBit = !gguf && (QuantizedModel.isQuantized(modelDir) || a.model().quantizationBit() != null);
        long ggufBytes = gguf && lora ? GgufModel.baseBytes(modelDir) : -1;
        MemoryEstimate e = MemoryEstimate.of(a, c, method, fourBit && lora || ggufBytes >= 0, seq);
        if (ggufBytes >= 0) e = e.withWeights(ggufBytes);
        long loading = 0;
        boolean comparing = a.finetuning().doTrain() && (!a.peft4j().comparePrompts().isEmpty() || a.peft4j().forgettingText() != null);
        if (fourBit && (!lora || a.model().quantizationBit() != null && !QuantizedModel.isQuantized(modelDir) || comparing))
            loading = MemoryEstimate.weightBytes(c, false, 64, true) + MemoryEstimate.weightBytes(c, true, 64, a.model().doubleQuantization());
        if (fourBit && lora && comparing) e = e.withWeights(e.weights() + MemoryEstimate.weightBytes(c, false, 64, true));   // the float copy kept
        return new HeapPlan(e, loading);
    }

    private static double gib(long bytes) { return bytes / (double) (1L << 30); }

    /// The rule for an existing output_dir, which never deletes what a resume needs: a file is refused; an explicit
    /// resume_from_checkpoint is used as given and nothing is moved; with overwrite_output_dir the run starts over (as
    /// LLaMA-Factory) and the old run's checkpoints and log are moved into `previous-run-N/`, not deleted; otherwise a
    /// folder holding a checkpoint is resumed from its last one, a folder left by a run killed before its first
    /// checkpoint (only training_args.json, trainer_log.jsonl, half-written .tmp- folders and files) starts afresh, and any other
    /// non-empty folder is an error.
    static Path prepareOutputDir(TrainConfig cfg, TrainArgs.Output o) {
        Path out = o.dir();
        if (Files.exists(out) && !Files.isDirectory(out))
            throw new ConfigException("output_dir " + out + " is a file, not a folder; give a folder path (it is created if missing)");
        if (!Files.isDirectory(out) || o.resumeFromCheckpoint() != null) return null;
        try {
            List<Path> entries;
            try (Stream<Path> s = Files.list(out)) { entries = s.toList(); }
            if (o.overwrite()) {
                Path previous = null;
                for (Path p : entries) {
                    String n = p.getFileName().toString();
                    if (!n.startsWith(Checkpoint.PREFIX) && !n.equals("trainer_log.jsonl")) continue;
                    if (previous == null) {
                        int i = 1;
                        while (Files.exists(out.resolve("previous-run-" + i))) i++;
                        previous = Files.createDirectories(out.resolve("previous-run-" + i));
                    }
                    Files.move(p, previous.resolve(n));
                }
                return null;
            }
            Path last = Checkpoint.last(out);
            if (last != null) {
                cfg.with("resume_from_checkpoint", last.toString());
                return last;
            }
            boolean leftByARun = entries.stream().map(p -> p.getFileName().toString())
                    .allMatch(n -> n.startsWith(".tmp-") || n.equals("trainer_log.jsonl") || n.equals("training_args.json")
                            || n.equals(".training_args.json.tmp") || n.equals(".trainer_log.jsonl.tmp"));   // Checkpoint.writeAtomically's temporaries
            if (!leftByARun)
                throw new ConfigException("output_dir " + out + " already exists, is not empty and holds no checkpoint to resume from; "
                        + "set overwrite_output_dir: true to write over it (nothing is deleted), or choose another output_dir");
            for (Path p : entries)   // killed before its first checkpoint: the half-written one and the stale log go
                if (!p.getFileName().toString().equals("training_args.json")) deleteTree(p);
            return null;
        } catch (IOException e) {
            throw new UncheckedIOException("cannot prepare output_dir " + out + ": " + e.getMessage(), e);
        }
    }

    /// adapter_name_or_path: as LLaMA-Factory (`PeftModel.from_pretrained(..., is_trainable=True)`), the adapter's own
    /// adapter_config.json decides rank, alpha, targets, dropout, rsLoRA and DoRA. A LoRA key given a non-default value
    /// that contradicts it is an error rather than silently overruled.
    static PeftAdapter readAdapter(TrainConfig cfg, TrainArgs a, Path dir, LlamaConfig base) {
        if (!Files.isDirectory(dir)) throw new ConfigException("adapter_name_or_path " + dir + " is not a folder; give a PEFT adapter folder (adapter_config.json, adapter_model.safetensors)");
        PeftAdapter peft = PeftAdapter.read(dir);
        LoadedAdapter.of("continued", dir.toString(), peft, base);   // layers, modules and sizes fit this model
        LoraConfig lc = peft.config();
        if (!lc.rankPattern().isEmpty() || !lc.alphaPattern().isEmpty())
            throw new ConfigException("adapter_name_or_path " + dir + " has rank_pattern/alpha_pattern (per-module ranks); continuing such an adapter is not supported yet");
        TrainArgs.Finetuning f = a.finetuning();
        Map<String, Object> set = cfg.changed();
        List<String> conflicts = new ArrayList<>();
        if (set.containsKey("lora_rank") && f.loraRank() != lc.r()) conflicts.add("lora_rank " + f.loraRank() + " (adapter: r " + lc.r() + ")");
        if (set.containsKey("lora_alpha") && f.loraAlpha() != lc.loraAlpha()) conflicts.add("lora_alpha " + f.loraAlpha() + " (adapter: " + lc.loraAlpha() + ")");
        if (set.containsKey("lora_target") && !new HashSet<>(f.loraTarget()).equals(new HashSet<>(lc.targetModules())))
            conflicts.add("lora_target " + f.loraTarget() + " (adapter: " + lc.targetModules() + ")");
        if (set.containsKey("lora_dropout") && f.loraDropout() != lc.loraDropout()) conflicts.add("lora_dropout " + f.loraDropout() + " (adapter: " + lc.loraDropout() + ")");
        if (set.containsKey("use_dora") && f.useDora() != lc.useDora()) conflicts.add("use_dora " + f.useDora() + " (adapter: " + lc.useDora() + ")");
        if (set.containsKey("use_rslora") && f.useRslora() != lc.useRslora()) conflicts.add("use_rslora " + f.useRslora() + " (adapter: " + lc.useRslora() + ")");
        if (!conflicts.isEmpty())
            throw new ConfigException("adapter_name_or_path " + dir + " continues an adapter whose adapter_config.json sets its LoRA settings, but "
                    + String.join(", ", conflicts) + " contradict it; drop these keys or match the adapter");
        LOG.log(System.Logger.Level.INFO, "continuing adapter {0}: r {1}, alpha {2}, targets {3}{4}", dir, lc.r(), lc.loraAlpha(),
                lc.targetModules(), lc.useDora() ? ", DoRA" : "");
        return peft;
    }

    /// Copies the adapter's A, B (and DoRA magnitudes) into the trainable tensors of the same PEFT names; every
    /// trainable tensor must get one, and every adapter tensor must be used.
    static void copyAdapter(TrainModel model, PeftAdapter adapter, Path dir) {
        Map<String, float[]> tensors = new LinkedHashMap<>();
        for (Map.Entry<PeftAdapter.Target, LoraWeights> e : adapter.weights().entrySet()) {
            PeftAdapter.Target t = e.getKey();
            LoraWeights w = e.getValue();
            tensors.put(t.key(PeftAdapter.A), w.a());
            tensors.put(t.key(PeftAdapter.B), w.b());
            if (w.magnitude() != null) tensors.put(t.key(PeftAdapter.MAGNITUDE), w.magnitude());
        }
        for (Param p : model.params()) {
            float[] src = tensors.remove(p.name());
            if (src == null)
                throw new FormatException(dir + " has no tensor '" + p.name() + "', which this run trains; the adapter's layers_to_transform or target_modules leave it out");
            if (src.length != p.data().length)
                throw new FormatException(dir + ": tensor '" + p.name() + "' has " + src.length + " values, this run's has " + p.data().length);
            System.arraycopy(src, 0, p.data(), 0, src.length);
        }
        if (!tensors.isEmpty())
            throw new FormatException(dir + ": tensors " + tensors.keySet().stream().limit(3).toList() + (tensors.size() > 3 ? " and " + (tensors.size() - 3) + " more" : "")
                    + " have no trainable counterpart in this run");
    }

    private static Path createDirectories(Path dir) {
        try {
            return Files.createDirectories(dir);
        } catch (IOException e) {
            throw new UncheckedIOException("cannot create output_dir " + dir + ": " + e.getMessage(), e);
        }
    }

    private static void deleteTree(Path p) throws IOException {
        try (Stream<Path> s = Files.walk(p)) {
            for (Path x : s.sorted(Comparator.reverseOrder()).toList()) Files.delete(x);
        }
    }
}
