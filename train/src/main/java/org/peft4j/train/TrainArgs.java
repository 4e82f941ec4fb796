package org.peft4j.train;

import org.peft4j.core.Peft4jException.ConfigException;
import org.peft4j.model.adapter.ia3.Ia3Config;
import org.peft4j.model.adapter.lora.LoraConfig;
import org.peft4j.model.layers.KtoLoss;
import org.peft4j.model.layers.PreferenceLoss;
import org.peft4j.model.llama.Projection;
import org.peft4j.train.engine.Method;
import org.peft4j.train.optim.Apollo;
import org.peft4j.train.optim.BlockAdam;
import org.peft4j.train.optim.GaLore;

import java.nio.file.Path;
import java.util.Arrays;
import java.util.List;

/// The typed view of a [TrainConfig]: LLaMA-Factory's argument groups (`ModelArguments`, `FinetuningArguments`,
/// `DataArguments`, transformers' `Seq2SeqTrainingArguments`) as records with camelCase names, built from the key
/// table in one method ([#of]) with the derived defaults resolved there: lora_alpha = 2·lora_rank, lora_target `all`
/// = the seven projections, packing = (stage == pt), eval_steps = logging_steps. The recipe, the trainer and the data
/// pipeline read these records; the key table stays the one place for names, defaults and help.
public record TrainArgs(Model model, Finetuning finetuning, Data data, Output output, Training training, Eval eval,
                        Peft4j peft4j, Preference preference, OptimizerMethod optimizerMethod) {

    /// LLaMA-Factory's optimizers that replace `optim` (at most one on; validated by [TrainConfig]): use_adam_mini,
    /// use_muon, use_galore with its keys (null when off), use_badam with its keys (null when off).
    public record OptimizerMethod(boolean adamMini, boolean muon, GaLore.Config galore, Apollo.Config apollo, BlockAdam.Config badam) {
        public boolean any() { return adamMini || muon || galore != null || apollo != null || badam != null; }

        /// galore_layerwise / apollo_layerwise: LLaMA-Factory steps in the gradient hooks, before (hence without)
        /// gradient clipping.
        public boolean skipsClipping() { return galore != null && galore.layerwise() || apollo != null && apollo.layerwise(); }
    }

    /// The APOLLO keys as its optimizer's config.
    static Apollo.Config apollo(TrainConfig c) {
        return new Apollo.Config(List.of(c.str("apollo_target").split("\\s*,\\s*")), c.i("apollo_rank"), c.i("apollo_update_interval"),
                c.d("apollo_scale"), c.str("apollo_proj"), c.str("apollo_proj_type"), c.str("apollo_scale_type"), c.b("apollo_layerwise"),
                false);   // apollo_scale_front: noted (the same update either way, see its key)
    }

    /// Stage dpo: `pref_loss`, `pref_beta`, `pref_ftx`, `dpo_label_smoothing`, `simpo_gamma` as the loss op's config;
    /// stage kto: `pref_beta`, `kto_chosen_weight`, `kto_rejected_weight`, `pref_ftx` as KTO's. `refModel` (null: the
    /// default reference), `refModelAdapters` (null: none), `refModelQuantizationBit` (4 or null); `asft`: use_asft_loss,
    /// whose KL term reads the same reference in stage sft.
    public record Preference(PreferenceLoss.Config loss, KtoLoss.Config kto, String refModel, String refModelAdapters,
                             Integer refModelQuantizationBit, boolean asft) {

        /// Whether `stage` compares against a reference model (DPO's sigmoid, hinge and IPO; KTO; SFT with use_asft_loss).
        public boolean needsReference(String stage) {
            return stage.equals("kto") || stage.equals("dpo") && loss.kind().needsReference() || stage.equals("sft") && asft;
        }
    }

    /// `adapterNameOrPath`: one PEFT folder whose training continues (LLaMA-Factory's adapter_to_resume), or null.
    /// `quantizationBit`: 4 or null.
    public record Model(String nameOrPath, String adapterNameOrPath, Integer quantizationBit, String quantizationType,
                        boolean doubleQuantization) {}

    /// `type`: lora, full, freeze or ia3. `loraTarget`: module names, `all` expanded. `ia3`: PEFT's IA3Config from
    /// target_modules, feedforward_modules and init_ia3_weights when the type is ia3, else null.
    public record Finetuning(String stage, boolean doTrain, String type, int loraRank, int loraAlpha, double loraDropout,
                             List<String> loraTarget, boolean useRslora, boolean useDora, Double loraplusLrRatio,
                             int freezeTrainableLayers, List<String> freezeTrainableModules, Double neftuneNoiseAlpha,
                             boolean gradientCheckpointing, boolean pissaInit, int pissaIter, boolean pissaConvert, boolean useLlamaPro,
                             Ia3Config ia3, Method.Prompt prompt, org.peft4j.model.adapter.oft.OftConfig oft, Method.Prefix prefix,
                             Method.PTuning ptuning) {

        /// What is trained, from finetuning_type and the LoRA/freeze keys.
        public Method method() {
            return switch (type) {
                case "full" -> new Method.Full();
                case "oft" -> new Method.Oft(oft);
                case "freeze" -> new Method.Freeze(freezeTrainableLayers, freezeTrainableModules, useLlamaPro);
                case "ia3" -> new Method.Ia3(ia3);
                case "prompt" -> prompt;
                case "prefix" -> prefix;
                case "ptuning" -> ptuning;
                default -> {
                    for (String t : loraTarget)
                        if (Projection.byName(t) == null)
                            throw new ConfigException("lora_target '" + t + "' is not a linear layer of this model; use names among " + LoraConfig.ALL_LINEAR + " or all");
                    // LLaMA-Factory: pissa_init → init_lora_weights "pissa" (pissa_iter -1) or "pissa_niter_<pissa_iter>"
                    LoraConfig.Init init = pissaInit ? LoraConfig.Init.PISSA : LoraConfig.Init.KAIMING_UNIFORM;
                    yield new Method.Lora(new LoraConfig(loraRank, loraAlpha, loraDropout, loraTarget, useRslora, useDora,
                            init, "none", false, null, null, null, null, pissaIter));
                }
            };
        }
    }

    /// `packing` resolved (default: true for stage pt); `evalDataset` null when the split comes from `valSize`.
    public record Data(String dataset, String evalDataset, Path datasetDir, String template, int cutoffLen,
                       Integer maxSamples, double valSize, boolean trainOnPrompt, boolean maskHistory, boolean packing,
                       String defaultSystem, boolean enableThinking, String toolFormat) {}

    /// `saveSteps` 0 = never; `resumeFromCheckpoint`: a folder, `true`/`last`, or null.
    public record Output(Path dir, boolean overwrite, int loggingSteps, int saveSteps, Integer saveTotalLimit,
                         boolean plotLoss, String resumeFromCheckpoint) {}

    /// `maxSteps` > 0 overrides `numTrainEpochs`; `maxGradNorm` 0 = no clipping.
    public record Training(int perDeviceTrainBatchSize, int gradientAccumulationSteps, double learningRate,
                           double numTrainEpochs, int maxSteps, String lrSchedulerType, int warmupSteps,
                           double warmupRatio, double maxGradNorm, double weightDecay, double adamBeta1,
                           double adamBeta2, double adamEpsilon, String optim, long optimMemoryBudgetBytes, int seed) {}

    /// `strategy`: no, steps or epoch (evaluation_strategy is its old name); `steps` resolved (default logging_steps).
    public record Eval(String strategy, int steps, boolean doEval, int perDeviceEvalBatchSize) {}

    /// peft4j's own keys. `threads` null = all cores; `comparePrompts` empty and `forgettingText` null when unset.
    public record Peft4j(Integer threads, String gemm, List<String> comparePrompts, Path forgettingText) {}

    /// PEFT's IA3Config: target_modules unset = PEFT's Llama defaults (k_proj, v_proj, down_proj); feedforward_modules
    /// unset = PEFT's default (down_proj) among the targets, as PEFT's `_prepare_adapter_config` fills it.
    static Ia3Config ia3(TrainConfig c) {
        List<String> targets = c.str("target_modules") == null ? Ia3Config.DEFAULT_TARGETS
                : LoraConfig.expandTargets(List.of(c.str("target_modules").split("\\s*,\\s*")));
        List<String> ff = c.str("feedforward_modules") == null
                ? Ia3Config.DEFAULT_FEEDFORWARD.stream().filter(targets::contains).toList()
                : List.of(c.str("feedforward_modules").split("\\s*,\\s*"));
        return new Ia3Config(targets, ff, c.b("init_ia3_weights"));
    }

    /// PEFT's PromptTuningConfig: num_virtual_tokens (required, as in PEFT), prompt_tuning_init RANDOM or TEXT with
    /// prompt_tuning_init_text (tokenized by the recipe).
    static Method.Prompt prompt(TrainConfig c) {
        if (c.optInt("num_virtual_tokens") == null)
            throw new ConfigException("finetuning_type prompt needs num_virtual_tokens (PEFT has no default), e.g. --num_virtual_tokens 8");
        String init = c.str("prompt_tuning_init").toUpperCase(java.util.Locale.ROOT);
        var a = new org.peft4j.model.adapter.prompt.PromptAdapter(c.i("num_virtual_tokens"), 1, init, c.str("prompt_tuning_init_text"), null, null,
                new float[c.i("num_virtual_tokens")]);   // checks init and its text as PEFT's config does
        return new Method.Prompt(a.numVirtualTokens(), init, a.initText(), null);
    }

    /// PEFT's PromptEncoderConfig: num_virtual_tokens (required, as in PEFT), encoder_reparameterization_type,
    /// encoder_hidden_size (unset: the model's hidden size), encoder_num_layers, encoder_dropout.
    static Method.PTuning ptuning(TrainConfig c) {
        if (c.optInt("num_virtual_tokens") == null)
            throw new ConfigException("finetuning_type ptuning needs num_virtual_tokens (PEFT has no default), e.g. --num_virtual_tokens 20");
        return new Method.PTuning(new org.peft4j.model.adapter.ptuning.PromptEncoderConfig(c.i("num_virtual_tokens"),
                c.str("encoder_reparameterization_type").toUpperCase(java.util.Locale.ROOT), c.optInt("encoder_hidden_size"),
                c.i("encoder_num_layers"), c.d("encoder_dropout")));
    }

    /// PEFT's PrefixTuningConfig: num_virtual_tokens (required, as in PEFT), prefix_projection, encoder_hidden_size.
    static Method.Prefix prefix(TrainConfig c) {
        if (c.optInt("num_virtual_tokens") == null)
            throw new ConfigException("finetuning_type prefix needs num_virtual_tokens (PEFT has no default), e.g. --num_virtual_tokens 16");
        return new Method.Prefix(c.i("num_virtual_tokens"), c.b("prefix_projection"), c.optInt("encoder_hidden_size"));
    }

    /// The one mapping from the key table to the typed groups.
    public static TrainArgs of(TrainConfig c) {
        int rank = c.i("lora_rank");
        String stage = c.str("stage");
        return new TrainArgs(
                new Model(c.str("model_name_or_path"), c.str("adapter_name_or_path"), c.optInt("quantization_bit"),
                        c.str("quantization_type"), c.b("double_quantization")),
                new Finetuning(stage, c.b("do_train"), c.str("finetuning_type"), rank,
                        c.optInt("lora_alpha") != null ? c.i("lora_alpha") : 2 * rank, c.d("lora_dropout"),
                        LoraConfig.expandTargets(List.of(c.str("lora_target").split("\\s*,\\s*"))), c.b("use_rslora"),
                        c.b("use_dora"), c.optDouble("loraplus_lr_ratio"), c.i("freeze_trainable_layers"),
                        Arrays.stream(c.str("freeze_trainable_modules").split(",")).map(String::strip).toList(),
                        c.optDouble("neftune_noise_alpha"), c.b("gradient_checkpointing"), c.b("pissa_init"),
                        c.i("pissa_iter"), c.b("pissa_convert"), c.b("use_llama_pro"), c.str("finetuning_type").equals("ia3") ? ia3(c) : null,
                        c.str("finetuning_type").equals("prompt") ? prompt(c) : null,
                        c.str("finetuning_type").equals("oft") ? new org.peft4j.model.adapter.oft.OftConfig(c.i("oft_rank"), c.i("oft_block_size"),
                                LoraConfig.expandTargets(List.of(c.str("oft_target").split("\\s*,\\s*"))), c.d("module_dropout"), 5) : null,
                        c.str("finetuning_type").equals("prefix") ? prefix(c) : null,
                        c.str("finetuning_type").equals("ptuning") ? ptuning(c) : null),
                new Data(c.str("dataset"), c.str("eval_dataset"), Path.of(c.str("dataset_dir")), c.str("template"),
                        c.i("cutoff_len"), c.optInt("max_samples"), c.d("val_size"), c.b("train_on_prompt"),
                        c.b("mask_history"), c.optBool("packing") != null ? c.b("packing") : stage.equals("pt"),
                        c.str("default_system"), c.b("enable_thinking"), c.str("tool_format")),
                new Output(Path.of(c.str("output_dir")), c.b("overwrite_output_dir"), Math.max(1, c.i("logging_steps")),
                        c.i("save_steps"), c.optInt("save_total_limit"), c.b("plot_loss"), c.str("resume_from_checkpoint")),
                new Training(c.i("per_device_train_batch_size"), c.i("gradient_accumulation_steps") * c.i("ray_num_workers"), c.d("learning_rate"),
                        c.d("num_train_epochs"), c.i("max_steps"), c.str("lr_scheduler_type"), c.i("warmup_steps"),
                        c.d("warmup_ratio"), c.d("max_grad_norm"), c.d("weight_decay"), c.d("adam_beta1"),
                        c.d("adam_beta2"), c.d("adam_epsilon"), c.str("optim"),
                        (long) (c.d("optim_memory_budget_mb") * 1048576), c.i("seed")),
                new Eval(c.str("eval_strategy"), c.optInt("eval_steps") != null ? c.i("eval_steps") : Math.max(1, c.i("logging_steps")),
                        c.b("do_eval"), c.i("per_device_eval_batch_size")),
                new Peft4j(c.optInt("threads"), c.str("gemm"),
                        c.str("compare_prompts") == null ? List.of() : List.of(c.str("compare_prompts").split("\\|")),
                        c.str("forgetting_text") == null ? null : Path.of(c.str("forgetting_text"))),
                new Preference(new PreferenceLoss.Config(PreferenceLoss.Kind.of(c.str("pref_loss")), c.d("pref_beta"), c.d("pref_ftx"),
                        c.d("dpo_label_smoothing"), c.d("simpo_gamma")),
                        new KtoLoss.Config(c.d("pref_beta"), c.d("kto_chosen_weight"), c.d("kto_rejected_weight"), c.d("pref_ftx")),
                        c.str("ref_model"), c.str("ref_model_adapters"), c.optInt("ref_model_quantization_bit"), c.b("use_asft_loss")),
                new OptimizerMethod(c.b("use_adam_mini"), c.b("use_muon"),
                        c.b("use_galore") ? new GaLore.Config(List.of(c.str("galore_target").split("\\s*,\\s*")), c.i("galore_rank"),
                                c.i("galore_update_interval"), c.d("galore_scale"), c.str("galore_proj_type"), c.b("galore_layerwise")) : null,
                        c.b("use_apollo") ? apollo(c) : null,
                        c.b("use_badam") ? new BlockAdam.Config(c.optInt("badam_start_block"), c.str("badam_switch_mode"), c.i("badam_switch_interval")) : null));
    }
}
