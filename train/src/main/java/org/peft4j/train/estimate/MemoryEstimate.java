package org.peft4j.train.estimate;

import org.peft4j.core.Peft4jException.ConfigException;
import org.peft4j.model.LlamaConfig;
import org.peft4j.model.layers.PreferenceLoss;
import org.peft4j.model.llama.Activations;
import org.peft4j.model.llama.KvCache;
import org.peft4j.model.llama.LayerTensor;
import org.peft4j.model.llama.Projection;
import org.peft4j.model.adapter.lora.LoraConfig;
import org.peft4j.quant.QuantLinear;
import org.peft4j.train.engine.Method;
import org.peft4j.train.engine.TrainModel;
import org.peft4j.train.optim.AdamMini;
import org.peft4j.train.optim.AdamW8bit;
import org.peft4j.train.optim.GaLore;
import org.peft4j.train.optim.Muon;

import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Set;

/// Peak memory of a training run, per component, predicted from the config before anything is allocated
/// (`./peft4j estimate`). Every count mirrors an allocation: activations and scratch are read from the plan the decoder
/// allocates from ([TrainModel#plan], [Activations#bytesByName]), so [#trainModelActivationBytes] equals
/// `TrainModel.activationBytes()` by construction; adapters and gradients
/// its `params()`, optimizer state `AdamW` / [AdamW8bit] / `PagedAdamW`. QLoRA weights are bitsandbytes' NF4 layout
/// (specs.md §1.2-1.5): packed codes, absmax (double-quantized: 8-bit codes + per-256 float absmax + map).
/// What no array count can give, the JVM itself, is one calibrated constant, [#RUNTIME_BYTES].
///
/// @param weights      the base model: float32, or for QLoRA the 4-bit linears plus float32 (or, see
///                     [#weightBytes(LlamaConfig, boolean, int, boolean, int)], 16-bit) embeddings, norms, biases
/// @param adapters     LoRA A and B (float32)
/// @param gradients    one float32 gradient per trainable tensor (tied embeddings share one)
/// @param optimizer    optimizer state (for paged optimizers: file-mapped, resident up to the budget; counted in full)
/// @param activations  saved activations and gradient scratch without the logits (N = batch·seq)
/// @param logits       (N, V) logits, turned into their gradient in place
/// @param scratch      LoRA h / dropout buffers, RoPE tables, the NF4 dequantization tile
/// @param runtime      JVM, JIT, GC and thread overhead ([#RUNTIME_BYTES])
/// @param kvCache      a KV cache for generating `batch` sequences of `seq` tokens (not part of the training total)
/// @param activationsOther  `activations` with gradient checkpointing toggled, for comparison
/// @param preference   stages dpo and kto (and sft with use_asft_loss): the scoring passes' buffers
///                     ([TrainModel#scoringBytes]) and a separate reference model's weights ([Preference])
/// @param offHeap      of the components above, the bytes held off the Java heap (file mappings, native arenas): the
///                     paged optimizers' state and a 4-bit base's codes ([#offHeapBytes]); [HeapPlan] sizes the
///                     heap from the rest and -XX:MaxDirectMemorySize from this
public record MemoryEstimate(long weights, long adapters, long gradients, long optimizer, long activations, long logits,
                             long scratch, long runtime, long kvCache, boolean checkpointing, long activationsOther,
                             long preference, long offHeap) {

    /// What the reference model of a preference stage is: none (SFT/PT; DPO with pref_loss orpo or simpo), the LoRA
    /// base with the adapter off (no extra weights), or a separate frozen model (full/freeze tuning's copy, or
    /// ref_model) in float32 or in 4 bits (ref_model_quantization_bit 4).
    public enum Reference { NONE, ADAPTER_OFF, FLOAT32, NF4 }

    /// `stage`: sft, pt, dpo or kto; for dpo `batch` counts pairs, two rows each.
    public record Preference(String stage, Reference reference) {
        public static final Preference NONE = new Preference("sft", Reference.NONE);

        public Preference {
            if (!List.of("sft", "pt", "dpo", "kto", "rm").contains(stage)) throw new ConfigException("stage must be sft, pt, dpo, kto or rm, got '" + stage + "'");
            if (stage.equals("kto") && reference == Reference.NONE) throw new ConfigException("stage kto always has a reference model");
        }

        boolean scores() { return stage.equals("dpo") || stage.equals("kto"); }

        /// The reference a run has, as the recipe builds it: none for sft/pt and the reference-free losses (orpo,
        /// simpo); the base with the adapter off for LoRA/QLoRA; otherwise a separate frozen model (full and freeze
        /// tuning's copy, or ref_model), in 4 bits with ref_model_quantization_bit 4.
        /// `separate`: ref_model is set; `refModel4bit`: ref_model_quantization_bit is 4.
        public static Preference of(String stage, PreferenceLoss.Kind loss, String finetuningType, boolean separate, boolean refModel4bit) {
            boolean needsReference = stage.equals("kto") || stage.equals("dpo") && loss.needsReference();
            if (!needsReference) return new Preference(stage, Reference.NONE);   // (a ref_model there is unused, as in LLaMA-Factory)
            if (!separate && !refModel4bit && finetuningType.equals("lora")) return new Preference(stage, Reference.ADAPTER_OFF);
            return new Preference(stage, refModel4bit ? Reference.NF4 : Reference.FLOAT32);
        }

        /// [#of] for a run's resolved keys; stage sft with use_asft_loss has the reference of ASFT's KL term (a separate
        /// frozen model: the configuration refuses LoRA without ref_model).
        public static Preference of(org.peft4j.train.TrainArgs a) {
            if (a.finetuning().stage().equals("sft") && a.preference().asft())
                return new Preference("sft", a.preference().refModelQuantizationBit() != null ? Reference.NF4 : Reference.FLOAT32);
            return of(a.finetuning().stage(), a.preference().loss().kind(), a.finetuning().type(), a.preference().refModel() != null,
                    a.preference().refModelQuantizationBit() != null);
        }
    }

    /// Resident memory beyond the planned arrays. Calibrated on random SmolLM2-135M, LoRA r8 on all linears, batch 1,
    /// seq 512, adamw_torch, -Xmx2g, gemm auto (OpenBLAS), 2 steps (`MemoryEstimateMeasure`): VmHWM 1706 MiB against
    /// 1436 MiB of arrays predicted here, i.e. 270 MiB: ~51 MiB idle JVM (VmHWM before any model allocation: classes,
    /// CDS, code cache, thread stacks) plus ~220 MiB of GC bookkeeping, OpenBLAS thread buffers and native GEMM staging.
    /// Rounded down to 256 MiB (predicted/measured 0.99 on that run; 0.90 with the former 96 MiB). Part of the native
    /// staging scales with the largest GEMM operand (lm_head, logits), so expect this to under-count on large vocabularies.
    public static final long RUNTIME_BYTES = 256L << 20;

    /// This estimate with the base weights' bytes replaced by `bytes`: a GGUF base, counted from its file as it is
    /// held (linear weights in their stored blocks, the rest float32; [org.peft4j.model.gguf.GgufModel#baseBytes]).
    public MemoryEstimate withWeights(long bytes) {
        return new MemoryEstimate(bytes, adapters, gradients, optimizer, activations, logits, scratch, runtime, kvCache, checkpointing,
                activationsOther, preference, offHeap);
    }

    public long total() { return weights + adapters + gradients + optimizer + activations + logits + scratch + runtime + preference; }

    /// What `TrainModel.activationBytes()` counts: the whole activation plan (activations, gradient, adapter and
    /// base-weight scratch) and the loss buffers.
    public long trainModelActivationBytes() { return activations + logits + scratch; }

    /// `method`: lora | qlora | full | freeze. `targets`: LoRA target modules (`all` = every linear); for freeze the
    /// trainable modules (`all`, `self_attn`, `mlp`), with LLaMA-Factory's default of the last 2 layers.
    /// `optim`: adamw_torch, adamw_8bit, paged_adamw_32bit, paged_adamw_8bit or sgd (no momentum), or the state of
    /// use_adam_mini / use_muon / use_galore / use_badam: adam_mini, muon, galore (galore:RANK), badam.
    /// `quantBlockSize`, `doubleQuant`: the NF4 layout for qlora (64 and true in QLoRA's recipe).
    public static MemoryEstimate estimate(LlamaConfig c, String method, int loraRank, List<String> targets, int batch, int seq,
                                          boolean checkpointing, String optim, int quantBlockSize, boolean doubleQuant) {
        return estimate(c, method(method, loraRank, targets), method.equalsIgnoreCase("qlora"), batch, seq, checkpointing, optim, quantBlockSize, doubleQuant);
    }

    /// The estimate of a run's resolved keys over a base of config `c` ([Method] `method`, which a continued adapter
    /// may replace; `quantized`: a 4-bit base) at sequence length `seq`: per_device_train_batch_size (pairs for dpo and
    /// rm), gradient_checkpointing, the optimizer ([#optimOf]), double quantization in blocks of 64, the preference
    /// stage's reference ([Preference#of]). The trainer's check, the launcher's plan ([HeapPlan]) and the board read it.
    public static MemoryEstimate of(org.peft4j.train.TrainArgs a, LlamaConfig c, Method method, boolean quantized, int seq) {
        return estimate(c, method, quantized, a.training().perDeviceTrainBatchSize(), seq, a.finetuning().gradientCheckpointing(),
                optimOf(a), 64, a.model().doubleQuantization(), Preference.of(a));
    }

    /// `method` (lora | qlora | full | freeze) as the [Method] it trains; `targets` as in [#estimate].
    public static Method method(String method, int loraRank, List<String> targets) {
        return switch (method.toLowerCase(Locale.ROOT)) {
            case "lora", "qlora" -> new Method.Lora(LoraConfig.of(loraRank, LoraConfig.expandTargets(targets)));
            case "full" -> new Method.Full();
            case "freeze" -> new Method.Freeze(2, targets.isEmpty() ? List.of("all") : targets);
            default -> throw new ConfigException("method '" + method + "' is not one of lora, qlora, full, freeze");
        };
    }

    /// As above for a [Method] as the trainer builds it; `quantized` = a 4-bit base (QLoRA).
    public static MemoryEstimate estimate(LlamaConfig c, Method method, boolean quantized, int batch, int seq,
                                          boolean checkpointing, String optim, int quantBlockSize, boolean doubleQuant) {
        return estimate(c, method, quantized, batch, seq, checkpointing, optim, quantBlockSize, doubleQuant, Preference.NONE);
    }

    /// As above for stage `pref.stage()`: stage dpo runs 2·batch rows (chosen and rejected), and the preference stages
    /// add their scoring buffers and reference model.
    public static MemoryEstimate estimate(LlamaConfig c, Method method, boolean quantized, int pairsOrBatch, int seq,
                                          boolean checkpointing, String optim, int quantBlockSize, boolean doubleQuant, Preference pref) {
        if (pairsOrBatch < 1 || seq < 2) throw new ConfigException("estimate needs batch >= 1 and sequence length >= 2, got " + pairsOrBatch + " x " + seq);
        if (pref.reference() == Reference.ADAPTER_OFF && !method.adapter())
            throw new ConfigException("only a LoRA model has its base as reference; full and freeze tuning compare against a frozen copy");
        int batch = pref.stage().equals("dpo") || pref.stage().equals("rm") ? 2 * pairsOrBatch : pairsOrBatch;   // rm: pairs too
        MemoryEstimate e = estimateRows(c, method, quantized, batch, seq, checkpointing, optim, quantBlockSize, doubleQuant);
        return new MemoryEstimate(e.weights, e.adapters, e.gradients, e.optimizer, e.activations, e.logits, e.scratch, e.runtime,
                e.kvCache, e.checkpointing, e.activationsOther, preferenceBytes(c, method, quantized, batch, seq, pref, quantBlockSize, doubleQuant),
                e.offHeap);
    }

    /// The preference stages' extras for `B` rows of `T` tokens, as [TrainModel#scoringBytes] counts them, plus a
    /// separate reference model's weights (float32, or NF4 with double quantization and blocks of 64).
    static long preferenceBytes(LlamaConfig c, Method method, boolean quantized, int B, int T, Preference pref, int quantBlockSize, boolean doubleQuant) {
        if (pref.stage().equals("sft") && (pref.reference() == Reference.FLOAT32 || pref.reference() == Reference.NF4)) {
            // use_asft_loss, as TrainModel allocates it: the labelled positions' hidden states and indices, the reference
            // logits at up to B·T positions, the reference model and its activations (no backward)
            long n = (long) B * T;
            boolean q = pref.reference() == Reference.NF4;
            return 4 * n * c.hiddenSize() + 12 * n + 4 * n * c.vocabSize()
                    + weightBytes(c, q, 64, true) + Activations.bytes(c, TrainModel.scorePlan(B, T, 0, 0), tile(c, q));
        }
        if (!pref.scores()) return 0;
        long n = (long) B * T;
        long bytes = 4 * n;                                                     // rowScales
        boolean kto = pref.stage().equals("kto");
        if (pref.reference() == Reference.NONE && !kto) return bytes;
        bytes += 4 * n * c.hiddenSize() + 12 * n;                              // scoreHidden, positions, targets, rows
        Activations.Plan train = TrainModel.plan(c, method, B, T, false);
        if (!kto)                                                              // DPO's paired reference pass: KV cache, inputs
            bytes += KvCache.bytes(c, B, T) + 4L * (n + 2L * B);
        if (pref.reference() == Reference.ADAPTER_OFF || kto)                  // the policy's decoder scores (KTO's KL pass)
            bytes += Activations.bytes(c, TrainModel.scorePlan(B, T, train.maxRank(), train.maxDoraOut()), tile(c, quantized));
        if (pref.reference() == Reference.FLOAT32 || pref.reference() == Reference.NF4) {
            boolean q = pref.reference() == Reference.NF4;
            bytes += weightBytes(c, q, 64, true) + Activations.bytes(c, TrainModel.scorePlan(B, T, 0, 0), tile(c, q));
        }
        return bytes;
    }

    private static int tile(LlamaConfig c, boolean quantized) {
        int tile = 0;
        if (quantized) for (Projection m : Projection.values()) tile = Math.max(tile, QuantLinear.scratchSize(m.in(c), m.out(c)));
        return tile;
    }

    private static MemoryEstimate estimateRows(LlamaConfig c, Method method, boolean quantized, int batch, int seq,
                                               boolean checkpointing, String optim, int quantBlockSize, boolean doubleQuant) {
        if (batch < 1 || seq < 2) throw new ConfigException("estimate needs batch >= 1 and sequence length >= 2, got " + batch + " x " + seq);
        if (quantized && !(method instanceof Method.Lora))
            throw new ConfigException("a 4-bit base only trains with LoRA (qlora); use lora, full or freeze on an unquantized model");
        List<Long> trainable = trainable(c, method);
        long adapters = method.adapter() ? 4 * sum(trainable) : 0;
        long gradients = 4 * sum(trainable);
        if (method instanceof Method.Oft(var oc)) {
            // TrainModel's OFT: theta, a frozen float copy of each targeted weight and its rotations; the gradient
            // dL/dW' of each targeted weight besides dL/dtheta
            long targeted = 0, rot = 0;
            for (int l = 0; l < c.numHiddenLayers(); l++)
                for (Projection m : Projection.values())
                    if (oc.targets(m.module)) {
                        targeted += (long) m.in(c) * m.out(c);
                        int[] nb = oc.blocks(m.in(c));
                        rot += (long) nb[0] * nb[1] * nb[1];
                    }
            adapters = 4 * (sum(trainable) + targeted + rot);
            gradients += 4 * targeted;
        }
        long optimizer = 0;
        if (isMethodOptimizer(optim)) optimizer = methodOptimizerBytes(c, method, optim);
        else for (long n : trainable) optimizer += optimizerBytes(optim, n);
        int rowLen = seq + method.virtualTokens();   // prompt and prefix tuning, P-tuning: n + T per row
        long N = (long) batch * rowLen;
        long logits = 4 * N * c.vocabSize();
        long lse = TrainModel.lossBytes(c, batch, rowLen) - logits;
        long[] with = planBytes(c, method, quantized, batch, seq, true), without = planBytes(c, method, quantized, batch, seq, false);
        long[] mine = checkpointing ? with : without, other = checkpointing ? without : with;
        // off the heap: a paged optimizer's state (PagedState: a mapped file) and a 4-bit base's codes (native arena or mapped)
        long offHeap = (optim.toLowerCase(Locale.ROOT).startsWith("paged_") ? optimizer : 0) + offHeapBytes(c, quantized, quantBlockSize, doubleQuant);
        return new MemoryEstimate(weightBytes(c, quantized, quantBlockSize, doubleQuant), adapters, gradients, optimizer, mine[0] + lse, logits,
                mine[1], RUNTIME_BYTES, KvCache.bytes(c, batch, seq), checkpointing, other[0] + lse, 0, offHeap);
    }

    /// TrainModel's activation plan ([TrainModel#plan], the buffers the decoder allocates) in bytes: {activations and
    /// gradient scratch, adapter and base-weight scratch}.
    static long[] planBytes(LlamaConfig c, Method method, boolean quantized, int B, int T, boolean checkpointing) {
        T += method.virtualTokens();   // prompt and prefix tuning, P-tuning: TrainModel runs (B, n + T)
        Map<String, Long> bytes = Activations.bytesByName(c, TrainModel.plan(c, method, B, T, checkpointing), tile(c, quantized));
        long act = 0, scratch = 0;
        for (var e : bytes.entrySet()) {
            if (SCRATCH.contains(e.getKey())) scratch += e.getValue();
            else act += e.getValue();
        }
        if (method instanceof Method.Ia3)   // Activations.fitIa3: the scaled input and the scaled output gradient
            scratch += 2L * 4 * B * T * Math.max(Math.max(c.hiddenSize(), c.qDim()), c.intermediateSize());
        return new long[] {act, scratch};
    }

    /// The plan's buffers reported as scratch rather than activations: adapter paths, RoPE tables, base-weight tiles.
    private static final Set<String> SCRATCH = Set.of("h", "u", "xd", "mask", "dh", "dxd", "du", "cos", "sin", "baseScratch");

    /// Element counts of the trainable tensors in `TrainModel.params()` order.
    static List<Long> trainable(LlamaConfig c, Method method) {
        List<Long> out = new ArrayList<>();
        int L = c.numHiddenLayers();
        switch (method) {
            case Method.Lora(LoraConfig lc) -> {
                for (int l = 0; l < L; l++) {
                    if (!lc.transformsLayer(l)) continue;
                    for (Projection m : Projection.values()) {
                        if (!lc.targets(m.module)) continue;
                        long r = lc.rank(m.module);
                        out.add(r * m.in(c));
                        out.add(m.out(c) * r);
                    }
                }
                if (out.isEmpty()) throw new ConfigException("lora_target " + lc.targetModules() + " matches no linear layer");
            }
            case Method.Ia3(var ic) -> {
                for (int l = 0; l < L; l++)
                    for (Projection m : Projection.values())
                        if (ic.targets(m.module)) out.add((long) (ic.feedforward(m.module) ? m.in(c) : m.out(c)));
            }
            case Method.Prompt pm -> out.add((long) pm.numVirtualTokens() * c.hiddenSize());
            case Method.PTuning pt -> {
                for (var e : named(c, method)) out.add(numel(e.getValue()));
            }
            case Method.Prefix pf -> { for (var e : pf.tensors(c)) out.add(java.util.Arrays.stream(e.getValue()).reduce(1, (a, b) -> a * b)); }
            case Method.Oft(var oc) -> {
                for (var e : named(c, method)) out.add(e.getValue()[0] * e.getValue()[1]);
            }
            case Method.Full() -> {
                long VC = (long) c.vocabSize() * c.hiddenSize();
                out.add(VC);
                if (!c.tieWordEmbeddings()) out.add(VC);
                out.add((long) c.hiddenSize());
                for (int l = 0; l < L; l++) for (LayerTensor t : LayerTensor.values()) if (t.present(c)) out.add(numel(t.shape(c)));
            }
            case Method.Freeze fz -> {
                for (int l = 0; l < L; l++)
                    for (LayerTensor t : LayerTensor.values())
                        if (t.present(c) && fz.trains(l, L) && fz.trainsModule(t.suffix.substring(0, t.suffix.indexOf('.'))))
                            out.add(numel(t.shape(c)));
                if (out.isEmpty()) throw new ConfigException("the freeze settings select no trainable parameter");
            }
        }
        return out;
    }

    /// LLaMA-Factory's optimizers that replace `optim` ([#methodOptimizerBytes]): adam_mini, muon, galore or
    /// galore:RANK, apollo or apollo:RANK (default rank 16), badam.
    static boolean isMethodOptimizer(String optim) {
        String o = optim.toLowerCase(Locale.ROOT);
        return o.equals("adam_mini") || o.equals("muon") || o.equals("galore") || o.startsWith("galore:") || o.equals("apollo")
                || o.startsWith("apollo:") || o.equals("badam");
    }

    /// The name of the optimizer state a run's keys choose, for [#estimate]: `optim`, or adam_mini, muon,
    /// galore:RANK or badam when use_adam_mini, use_muon, use_galore or use_badam replace it.
    public static String optimOf(org.peft4j.train.TrainArgs a) {
        var m = a.optimizerMethod();
        if (m.adamMini()) return "adam_mini";
        if (m.muon()) return "muon";
        if (m.galore() != null) return "galore:" + m.galore().rank();
        if (m.apollo() != null) return "apollo:" + m.apollo().rank();
        if (m.badam() != null) return "badam";
        return a.training().optim();
    }

    /// Optimizer state of the method optimizers from the trainable tensors' names and shapes (galore's targets: all
    /// linear layers): Adam-mini m (n) plus one v per block; Muon one momentum (n) per hidden matrix and m, v for the
    /// rest; GaLore m, v of the projected shape and the projection ([GaLore#stateFloats]) per linear weight; BAdam
    /// m, v of the largest decoder layer only.
    static long methodOptimizerBytes(LlamaConfig c, Method method, String optim) {
        String o = optim.toLowerCase(Locale.ROOT);
        List<Map.Entry<String, long[]>> named = named(c, method);
        long floats = 0;
        if (o.equals("badam")) {
            Map<String, Long> perLayer = new java.util.HashMap<>();
            for (var e : named)
                if (e.getKey().startsWith("model.layers."))
                    perLayer.merge(e.getKey().substring(0, e.getKey().indexOf('.', "model.layers.".length())), numel(e.getValue()), Long::sum);
            for (long n : perLayer.values()) floats = Math.max(floats, 2 * n);
            return 4 * floats;
        }
        int colon = o.indexOf(':');
        int rank = colon > 0 ? Integer.parseInt(o.substring(colon + 1)) : 16;
        boolean apollo = o.startsWith("apollo");
        for (var e : named) {
            String name = e.getKey();
            long[] shape = e.getValue();
            long n = numel(shape);
            floats += switch (o) {
                case "adam_mini" -> n + AdamMini.vCount(name, shape, c.hiddenSize(), c.numAttentionHeads());
                case "muon" -> Muon.usesMuon(name, shape) ? n : 2 * n;
                default -> shape.length == 2 && GaLore.isLinear(name, new java.util.HashSet<>(LoraConfig.ALL_LINEAR))
                        ? (apollo ? org.peft4j.train.optim.Apollo.stateFloats(shape[0], shape[1], rank) : GaLore.stateFloats(shape[0], shape[1], rank)) : 2 * n;
            };
        }
        return 4 * floats;
    }

    /// The trainable tensors' names and shapes in `TrainModel.params()` order (full and freeze: the model's names;
    /// LoRA: PEFT's lora_A / lora_B names).
    static List<Map.Entry<String, long[]>> named(LlamaConfig c, Method method) {
        List<Map.Entry<String, long[]>> out = new ArrayList<>();
        int L = c.numHiddenLayers();
        long V = c.vocabSize(), C = c.hiddenSize();
        switch (method) {
            case Method.Lora(LoraConfig lc) -> {
                for (int l = 0; l < L; l++) {
                    if (!lc.transformsLayer(l)) continue;
                    for (Projection m : Projection.values()) {
                        if (!lc.targets(m.module)) continue;
                        long r = lc.rank(m.module);
                        String base = "base_model.model.model.layers." + l + "." + m.path();
                        out.add(Map.entry(base + ".lora_A.weight", new long[]{r, m.in(c)}));
                        out.add(Map.entry(base + ".lora_B.weight", new long[]{m.out(c), r}));
                    }
                }
            }
            case Method.Ia3(var ic) -> {
                for (int l = 0; l < L; l++)
                    for (Projection m : Projection.values())
                        if (ic.targets(m.module))
                            out.add(Map.entry("base_model.model.model.layers." + l + "." + m.path() + ".ia3_l",
                                    ic.feedforward(m.module) ? new long[]{1, m.in(c)} : new long[]{m.out(c), 1}));
            }
            case Method.Prompt pm -> out.add(Map.entry("prompt_embeddings", new long[]{pm.numVirtualTokens(), C}));
            case Method.PTuning pt -> {   // the encoder trains; TrainModel names its tensors prompt_encoder.<PEFT name>
                for (var e : org.peft4j.model.adapter.ptuning.PromptEncoder.shapes(pt.config(), (int) C))
                    out.add(Map.entry("prompt_encoder." + e.getKey(), e.getValue()));
            }
            case Method.Prefix pf -> out.addAll(pf.tensors(c));
            case Method.Oft(var oc) -> {
                for (int l = 0; l < L; l++)
                    for (Projection m : Projection.values()) {
                        if (!oc.targets(m.module)) continue;
                        int[] nb = oc.blocks(m.in(c));
                        out.add(Map.entry("base_model.model.model.layers." + l + "." + m.path() + ".oft_R.weight",
                                new long[]{nb[0], org.peft4j.model.adapter.oft.OftRotation.elements(nb[1])}));
                    }
            }
            case Method.Full() -> {
                out.add(Map.entry("model.embed_tokens.weight", new long[]{V, C}));
                if (!c.tieWordEmbeddings()) out.add(Map.entry("lm_head.weight", new long[]{V, C}));
                out.add(Map.entry("model.norm.weight", new long[]{C}));
                for (int l = 0; l < L; l++) for (LayerTensor t : LayerTensor.values()) if (t.present(c)) out.add(Map.entry(t.name(l), t.shape(c)));
            }
            case Method.Freeze fz -> {
                for (int l = 0; l < L; l++)
                    for (LayerTensor t : LayerTensor.values())
                        if (t.present(c) && fz.trains(l, L) && fz.trainsModule(t.suffix.substring(0, t.suffix.indexOf('.'))))
                            out.add(Map.entry(t.name(l), t.shape(c)));
            }
        }
        return out;
    }

    static long optimizerBytes(String optim, long n) {
        return switch (optim.toLowerCase(Locale.ROOT)) {
            case "adamw_torch", "adamw", "paged_adamw_32bit" -> 8 * n;
            case "adamw_8bit", "paged_adamw_8bit" -> AdamW8bit.stateBytes(n);
            case "sgd" -> 0;
            default -> throw new ConfigException("optim '" + optim + "' is not one of adamw_torch, adamw_8bit, paged_adamw_32bit, paged_adamw_8bit, sgd, "
                    + "or LLaMA-Factory's adam_mini, muon, galore (galore:RANK), badam");
        };
    }

    /// Base weights: float32, or NF4 linears (packed codes + absmax, specs.md §1.2-1.4) and float32 for the rest.
    public static long weightBytes(LlamaConfig c, boolean quantized, int blockSize, boolean doubleQuant) {
        return weightBytes(c, quantized, blockSize, doubleQuant, 4);
    }

    /// As above with embeddings and lm_head held at `embedBytes` bytes a value: 2 for a 4-bit base that keeps them
    /// BF16/F16 (`QuantizedModel.embed16/head16`: a `quantize`d folder, `createRandom(..., BF16)`), 4 for float32.
    public static long weightBytes(LlamaConfig c, boolean quantized, int blockSize, boolean doubleQuant, int embedBytes) {
        if (embedBytes != 2 && embedBytes != 4) throw new IllegalArgumentException("embedBytes must be 2 or 4, got " + embedBytes);
        long VC = (long) c.vocabSize() * c.hiddenSize();
        long bytes = embedBytes * VC * (c.tieWordEmbeddings() ? 1 : 2) + 4L * c.hiddenSize();
        for (int l = 0; l < c.numHiddenLayers(); l++)
            for (LayerTensor t : LayerTensor.values()) {
                if (!t.present(c)) continue;
                long n = numel(t.shape(c));
                bytes += quantized && isLinear(t) ? nf4Bytes(n, blockSize, doubleQuant) : 4 * n;
            }
        return bytes;
    }

    /// The part of [#weightBytes] held outside the Java heap for a 4-bit base ([org.peft4j.quant.Nf4Tensor]): every
    /// linear's packed codes, plus its 8-bit absmax codes with double quantization; 0 for a float base. Native memory
    /// when quantized in memory (counted against -XX:MaxDirectMemorySize), file-backed pages when a 4-bit folder is
    /// loaded in place (resident once touched, not counted against it); RSS either way. Equals
    /// `QuantizedModel.offHeapBytes()` of such a model.
    public static long offHeapBytes(LlamaConfig c, boolean quantized, int blockSize, boolean doubleQuant) {
        if (!quantized) return 0;
        long bytes = 0;
        for (int l = 0; l < c.numHiddenLayers(); l++)
            for (LayerTensor t : LayerTensor.values())
                if (t.present(c) && isLinear(t)) {
                    long n = numel(t.shape(c));
                    bytes += (n + 1) / 2 + (doubleQuant ? (n + blockSize - 1) / blockSize : 0);
                }
        return bytes;
    }

    /// One NF4 tensor: (n+1)/2 packed bytes; absmax float32 per block, or with double quantization a uint8 code per
    /// block, a float32 absmax per 256 blocks, the 256-entry map and the offset.
    public static long nf4Bytes(long n, int blockSize, boolean doubleQuant) {
        if (blockSize <= 0) throw new ConfigException("bnb_4bit block size must be positive, got " + blockSize);
        long blocks = (n + blockSize - 1) / blockSize;
        long absmax = doubleQuant ? blocks + 4 * ((blocks + 255) / 256) + 4 * 256 + 4 : 4 * blocks;
        return (n + 1) / 2 + absmax;
    }

    private static boolean isLinear(LayerTensor t) {
        return switch (t) {
            case Q_PROJ, K_PROJ, V_PROJ, O_PROJ, GATE_PROJ, UP_PROJ, DOWN_PROJ -> true;
            default -> false;
        };
    }

    private static long numel(long[] shape) {
        long n = 1;
        for (long d : shape) n = Math.multiplyExact(n, d);
        return n;
    }

    private static long sum(List<Long> xs) {
        long s = 0;
        for (long x : xs) s += x;
        return s;
    }

    /// The per-component table `./peft4j estimate` prints.
    public String toTable() {
        StringBuilder sb = new StringBuilder();
        row(sb, "weights", weights);
        row(sb, "adapters", adapters);
        row(sb, "gradients", gradients);
        row(sb, "optimizer state", optimizer);
        row(sb, "activations" + (checkpointing ? " (checkpointing)" : ""), activations);
        row(sb, "logits", logits);
        row(sb, "scratch", scratch);
        row(sb, "runtime (JVM)", runtime);
        if (preference > 0) row(sb, "preference (reference, scoring)", preference);
        sb.append("-".repeat(44)).append('\n');
        row(sb, "total (peak, predicted)", total());
        sb.append('\n');
        row(sb, "activations " + (checkpointing ? "without" : "with") + " checkpointing", activationsOther);
        row(sb, "KV cache (generation)", kvCache);
        return sb.toString();
    }

    private static void row(StringBuilder sb, String name, long bytes) {
        sb.append(String.format(Locale.ROOT, "%-32s %9.1f MiB%n", name, bytes / (double) (1 << 20)));
    }
}
