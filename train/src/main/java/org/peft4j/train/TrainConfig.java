package org.peft4j.train;

import com.fasterxml.jackson.core.JsonParser;
import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import com.fasterxml.jackson.dataformat.yaml.YAMLFactory;
import org.peft4j.core.Peft4jException.ConfigException;
import org.peft4j.train.optim.LrSchedule;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/// The configuration of `peft4j train`: LLaMA-Factory's keys (its `ModelArguments`, `DataArguments`,
/// `FinetuningArguments` and transformers' `Seq2SeqTrainingArguments`) with their defaults, read from YAML and
/// overridden by `--key value` flags. One table ([#KEYS]) gives each key's type, default and help; it serves parsing,
/// `--help` and the saved config. An unknown key is an error naming the nearest known one; a known key peft4j does not
/// support yet is an error too, never silently ignored.
public final class TrainConfig {
    /// How peft4j treats a key.
    public enum Support { SUPPORTED, IGNORED_WITH_NOTE, UNSUPPORTED }

    public enum Type { STRING, INT, FLOAT, BOOL }

    public record Key(String name, Type type, Object defaultValue, Support support, String help) {}

    public static final Map<String, Key> KEYS = new LinkedHashMap<>();

    private static void key(String name, Type type, Object def, String help) { KEYS.put(name, new Key(name, type, def, Support.SUPPORTED, help)); }
    private static void noted(String name, Type type, Object def, String help) { KEYS.put(name, new Key(name, type, def, Support.IGNORED_WITH_NOTE, help)); }
    private static void unsupported(String name, Type type, String help) { KEYS.put(name, new Key(name, type, null, Support.UNSUPPORTED, help)); }
    /// LLaMA-Factory keys that change nothing peft4j computes: accepted (any value) with `note`.
    private static void notedAll(String note, String... names) { for (String n : names) noted(n, Type.STRING, null, note); }
    /// LLaMA-Factory keys peft4j does not build yet: refused (unless false/null) with `why`.
    private static void unsupportedAll(String why, String... names) { for (String n : names) unsupported(n, Type.STRING, why); }

    static {
        // model
        key("model_name_or_path", Type.STRING, null, "Model folder (Hugging Face layout) to fine-tune.");
        key("adapter_name_or_path", Type.STRING, null, "A LoRA adapter (PEFT folder) whose training continues: its A, B (and DoRA magnitudes) start the run and its adapter_config.json sets rank, alpha, targets and dropout.");
        noted("trust_remote_code", Type.BOOL, false, "Accepted; peft4j runs no model code from the Hub.");
        noted("cache_dir", Type.STRING, null, "Accepted; see HF_HOME for the Hub cache.");
        // method
        key("stage", Type.STRING, "sft", "Training stage: sft (supervised), pt (continued pre-training), dpo (preference pairs; pref_loss picks DPO, hinge, IPO, ORPO or SimPO), kto (answers labelled good or bad by a kto_tag column) or rm (reward model: a value head on the last token, pairwise loss on ranking datasets; saves value_head.safetensors).");
        key("do_train", Type.BOOL, true, "Run training; false only evaluates (with do_eval) the base or adapter_name_or_path on the validation set.");
        key("finetuning_type", Type.STRING, "lora", "lora, full, freeze, ia3 (PEFT's (IA)3: learned vectors scaling keys, values and the feed-forward input), prompt (PEFT's prompt tuning: learned virtual tokens before every input), prefix (PEFT's prefix tuning / P-tuning v2: learned keys and values before every input at every layer) or ptuning (PEFT's P-tuning: virtual tokens from a trained prompt encoder).");
        key("lora_rank", Type.INT, 8, "LoRA rank r.");
        key("lora_alpha", Type.INT, null, "LoRA alpha (default 2 * lora_rank).");
        key("lora_dropout", Type.FLOAT, 0.0, "Dropout on the LoRA input.");
        key("lora_target", Type.STRING, "all", "Comma-separated module names (q_proj,v_proj,...) or all.");
        key("use_rslora", Type.BOOL, false, "Scale adapters by alpha/sqrt(r) (rank-stabilised LoRA).");
        key("use_dora", Type.BOOL, false, "Weight-decomposed LoRA (DoRA).");
        key("loraplus_lr_ratio", Type.FLOAT, null, "LoRA+: learning rate of B = ratio * learning_rate.");
        key("target_modules", Type.STRING, null, "ia3: comma-separated modules whose output (or, feed-forward, input) is scaled (PEFT IA3Config.target_modules); unset = k_proj,v_proj,down_proj.");
        key("feedforward_modules", Type.STRING, null, "ia3: the targets whose input is scaled (PEFT IA3Config.feedforward_modules; a subset of target_modules); unset = down_proj when targeted.");
        key("init_ia3_weights", Type.BOOL, true, "ia3: start the vectors at 1 (the base model), as PEFT; false draws them from N(0, 1).");
        key("num_virtual_tokens", Type.INT, null, "prompt, prefix, ptuning: number of virtual tokens (trained input embeddings, or keys and values at every layer) before every sequence (PEFT PromptTuningConfig / PrefixTuningConfig / PromptEncoderConfig; required).");
        key("prefix_projection", Type.BOOL, false, "prefix: train the prefix through PEFT's reparameterising MLP (Embedding, Linear, Tanh, Linear; P-tuning v2); the saved adapter holds its output, as PEFT's.");
        key("encoder_hidden_size", Type.INT, null, "prefix (with prefix_projection): hidden width of the MLP; unset = PEFT's default, token_dim (head_dim x num_key_value_heads). ptuning: the prompt encoder's hidden size; unset = PEFT's default, the model's hidden size.");
        key("encoder_reparameterization_type", Type.STRING, "MLP", "ptuning: the prompt encoder, MLP (3 linears with ReLUs) or LSTM (a bidirectional LSTM, then 2 linears) (PEFT PromptEncoderConfig).");
        key("encoder_num_layers", Type.INT, 2, "ptuning: the LSTM encoder's layers (PEFT's MLP ignores it: refused unless 2 with MLP).");
        key("encoder_dropout", Type.FLOAT, 0.0, "ptuning: the encoder's dropout; only 0 is supported (PEFT's MLP has none; the LSTM's is not built).");
        key("prompt_tuning_init", Type.STRING, "RANDOM", "prompt: RANDOM (N(0, 1), PEFT's nn.Embedding init) or TEXT (the embeddings of prompt_tuning_init_text's tokens, repeated or cut to num_virtual_tokens).");
        key("prompt_tuning_init_text", Type.STRING, null, "prompt: the text whose token embeddings start the virtual tokens (prompt_tuning_init TEXT).");
        key("freeze_trainable_layers", Type.INT, 2, "Freeze tuning: train the last n layers (first |n| if negative).");
        key("use_llama_pro", Type.BOOL, false, "LLaMA Pro (freeze tuning of a model expanded by LLaMA-Factory's scripts/llama_pro.py): train the freeze_trainable_layers added blocks, every (num_hidden_layers / freeze_trainable_layers)-th layer.");
        key("freeze_trainable_modules", Type.STRING, "all", "Freeze tuning: modules of the trainable layers (all, mlp, self_attn).");
        key("neftune_noise_alpha", Type.FLOAT, null, "NEFTune noise alpha on the input embeddings (training only).");
        key("gradient_checkpointing", Type.BOOL, false, "Recompute each block in backward to save activation memory.");
        key("pissa_init", Type.BOOL, false, "Whether or not to initialize a PiSSA adapter.");
        key("pissa_iter", Type.INT, 16, "The number of iteration steps performed by FSVD in PiSSA. Use -1 to disable it.");
        key("pissa_convert", Type.BOOL, false, "Whether or not to convert the PiSSA adapter to a normal LoRA adapter.");
        key("quantization_bit", Type.INT, null, "QLoRA: 4 freezes the base in 4-bit (bitsandbytes NF4/FP4) under the LoRA adapters.");
        key("quantization_type", Type.STRING, "nf4", "QLoRA: nf4 or fp4.");
        key("double_quantization", Type.BOOL, true, "QLoRA: quantize the absmax values too (8-bit, blocks of 256).");
        noted("quantization_method", Type.STRING, "bnb", "QLoRA: bnb (bitsandbytes 4-bit, what peft4j does; LLaMA-Factory's default); gptq, awq, hqq, eetq, ... are not supported.");
        unsupported("additional_target", Type.STRING, "modules_to_save is not supported yet.");
        // preference tuning (stages dpo and kto)
        key("pref_beta", Type.FLOAT, 0.1, "dpo/kto: beta, the strength of the preference term (DPO's inverse temperature).");
        key("pref_loss", Type.STRING, "sigmoid", "dpo: sigmoid (DPO), hinge, ipo (these three against the reference: the base with the adapter off), orpo or simpo (no reference).");
        key("pref_ftx", Type.FLOAT, 0.0, "dpo/kto: weight of an SFT term (mean token loss of the chosen / desirable answers) added to the preference loss.");
        key("dpo_label_smoothing", Type.FLOAT, 0.0, "dpo: label smoothing of the sigmoid loss (conservative DPO), in [0, 0.5].");
        key("simpo_gamma", Type.FLOAT, 0.5, "dpo: SimPO's target reward margin gamma.");
        key("ref_model", Type.STRING, null, "dpo/kto: the reference model folder (same tokenizer). Unset: with LoRA/QLoRA the base with the adapter off; with full/freeze a frozen copy of model_name_or_path as loaded.");
        key("ref_model_adapters", Type.STRING, null, "dpo/kto: one LoRA adapter (PEFT folder) applied on ref_model.");
        key("ref_model_quantization_bit", Type.INT, null, "dpo/kto: 4 loads ref_model quantized to 4 bits (NF4, double quantization), as QLoRA's base.");
        key("kto_chosen_weight", Type.FLOAT, 1.0, "kto: weight of the loss of desirable answers (TRL's desirable_weight).");
        key("kto_rejected_weight", Type.FLOAT, 1.0, "kto: weight of the loss of undesirable answers (TRL's undesirable_weight).");
        unsupported("pref_bco_weight", Type.FLOAT, "BCO is not supported yet.");
        unsupported("ld_alpha", Type.FLOAT, "LD-DPO is not supported yet.");
        // data
        key("dataset", Type.STRING, null, "Dataset names from dataset_info.json, comma-separated.");
        key("eval_dataset", Type.STRING, null, "Validation dataset names (instead of val_size).");
        key("dataset_dir", Type.STRING, "data", "Folder with dataset_info.json.");
        key("template", Type.STRING, null, "Prompt template: a LLaMA-Factory template name (default, alpaca, llama3, qwen, qwen3, deepseek3, ...; an unknown name lists them all) or 'model' for the model's own chat template; unset = the model's own chat template when it has one, else empty (as LLaMA-Factory).");
        key("cutoff_len", Type.INT, 2048, "Maximum tokens per example.");
        key("max_samples", Type.INT, null, "Use at most this many examples of each dataset.");
        key("val_size", Type.FLOAT, 0.0, "Validation split: a fraction (<1) or a count.");
        key("train_on_prompt", Type.BOOL, false, "Also compute the loss on prompts.");
        key("mask_history", Type.BOOL, false, "Train only on the last turn of each conversation.");
        key("packing", Type.BOOL, null, "Pack examples into cutoff_len blocks (default: true for pt, false for sft).");
        key("default_system", Type.STRING, null, "Override the template's default system prompt.");
        key("tool_format", Type.STRING, null, "How tools and tool calls are written: default or qwen (LLaMA-Factory's other formats are refused when a row has tools); unset = the template's own.");
        key("enable_thinking", Type.BOOL, true, "Reasoning templates (qwen3, deepseekr1, ...): true trains an empty thought added to answers without one; false cuts thoughts from answers and puts the empty thought in the prompt (untrained), as LLaMA-Factory.");
        unsupported("preserve_thinking", Type.BOOL, "keeping the thoughts of earlier turns with mask_history is not supported yet.");
        noted("overwrite_cache", Type.BOOL, false, "Accepted; peft4j keeps no dataset cache.");
        noted("preprocessing_num_workers", Type.INT, null, "Accepted; preprocessing runs in-process.");
        noted("dataloader_num_workers", Type.INT, 0, "Accepted; batches are formed in-process.");
        noted("streaming", Type.BOOL, false, "Accepted only as false.");
        // output
        key("output_dir", Type.STRING, null, "Where the adapter, checkpoints, logs and plots go: a local folder; on Spark also a Hadoop FileSystem URI (hdfs://, s3a://, file://), see README.");
        key("overwrite_output_dir", Type.BOOL, false, "Allow writing into a non-empty output_dir.");
        key("logging_steps", Type.INT, 10, "Log every n optimizer steps.");
        key("save_steps", Type.INT, 500, "Save a checkpoint every n optimizer steps (0 = never).");
        key("save_total_limit", Type.INT, null, "Keep at most n checkpoints (0 or none = all).");
        key("plot_loss", Type.BOOL, false, "Draw training_loss.png (and training_eval_loss.png); stage dpo adds training_rewards_accuracies.png and training_rewards_margins.png, stage kto training_rewards_chosen.png, training_rewards_rejected.png and training_kl.png.");
        key("resume_from_checkpoint", Type.STRING, null, "A checkpoint folder, or 'true'/'last' for the last one in output_dir.");
        noted("report_to", Type.STRING, "none", "Accepted; metrics go to trainer_log.jsonl.");
        noted("save_only_model", Type.BOOL, false, "Accepted; checkpoints always hold what resuming needs.");
        noted("run_name", Type.STRING, null, "Accepted.");
        // optimisation
        key("per_device_train_batch_size", Type.INT, 8, "Sequences per micro-batch.");
        key("per_device_eval_batch_size", Type.INT, 8, "Sequences per evaluation batch; eval_loss is the mean of the batches' losses weighted by their sizes, as in transformers.");
        key("gradient_accumulation_steps", Type.INT, 1, "Micro-batches per optimizer step.");
        key("learning_rate", Type.FLOAT, 5e-5, "Peak learning rate.");
        key("num_train_epochs", Type.FLOAT, 3.0, "Epochs (fractions allowed).");
        key("max_steps", Type.INT, -1, "Optimizer steps; overrides num_train_epochs when > 0.");
        key("lr_scheduler_type", Type.STRING, "linear", "linear, cosine, cosine_with_restarts, polynomial, constant, constant_with_warmup.");
        key("warmup_steps", Type.INT, 0, "Linear warm-up steps.");
        key("warmup_ratio", Type.FLOAT, 0.0, "Warm-up as a fraction of all steps (when warmup_steps is 0).");
        key("max_grad_norm", Type.FLOAT, 1.0, "Clip the global gradient norm (0 = off).");
        key("weight_decay", Type.FLOAT, 0.0, "Decoupled weight decay (AdamW).");
        key("adam_beta1", Type.FLOAT, 0.9, "AdamW beta1.");
        key("adam_beta2", Type.FLOAT, 0.999, "AdamW beta2.");
        key("adam_epsilon", Type.FLOAT, 1e-8, "AdamW epsilon.");
        key("optim", Type.STRING, "adamw_torch", "adamw_torch, adamw_8bit, paged_adamw_32bit, paged_adamw_8bit or sgd (use_adam_mini, use_muon, use_galore, use_apollo or use_badam replace it).");
        // memory-saving optimizers of LLaMA-Factory (at most one; they replace optim)
        key("use_adam_mini", Type.BOOL, false, "Adam-mini: Adam with one second-moment value per block (a q/k head, a row of the other matrices and embeddings, a whole norm) instead of per weight; about half of AdamW's state.");
        key("use_muon", Type.BOOL, false, "Muon: momentum orthogonalised by 5 Newton-Schulz steps for the 2-D hidden weights (lr scaled by 0.2*sqrt(max(rows, cols))), AdamW for embeddings, lm_head and norms; one state tensor per matrix instead of two.");
        key("use_galore", Type.BOOL, false, "GaLore: Adam moments in a rank-galore_rank projection of each targeted matrix's gradient (top singular vectors, refreshed every galore_update_interval steps); full or freeze fine-tuning.");
        key("galore_target", Type.STRING, "all", "GaLore: comma-separated linear module names (q_proj, ..., down_proj) whose weights are projected, or all.");
        key("galore_rank", Type.INT, 16, "GaLore: the projection rank (at most min(rows, cols) of each matrix).");
        key("galore_update_interval", Type.INT, 200, "GaLore: steps between projection updates (an SVD of the gradient).");
        key("galore_scale", Type.FLOAT, 2.0, "GaLore: scale of the update projected back to the full matrix.");
        noted("galore_proj_type", Type.STRING, "std", "GaLore: projection side; std (the smaller side of each matrix) is the one peft4j builds, other values are refused.");
        key("galore_layerwise", Type.BOOL, false, "GaLore: LLaMA-Factory steps each tensor in its gradient hook (less gradient memory); that skips gradient clipping, as here, and needs gradient_accumulation_steps 1.");
        key("use_apollo", Type.BOOL, false, "APOLLO: Adam in a rank-apollo_rank random projection of each targeted gradient only estimates a per-channel (or per-tensor) scaling of the raw gradient, applied in full rank with Fira's norm-growth limiter; full or freeze fine-tuning.");
        key("apollo_target", Type.STRING, "all", "APOLLO: comma-separated linear module names (q_proj, ..., down_proj) whose weights are scaled this way, or all.");
        key("apollo_rank", Type.INT, 16, "APOLLO: the projection rank.");
        key("apollo_update_interval", Type.INT, 200, "APOLLO: steps between new projections.");
        key("apollo_scale", Type.FLOAT, 32.0, "APOLLO: the update is multiplied by sqrt(apollo_scale).");
        key("apollo_proj", Type.STRING, "random", "APOLLO: random (Gaussian projection, seeded) or svd (GaLore's top singular vectors).");
        noted("apollo_proj_type", Type.STRING, "std", "APOLLO: projection side; std (the smaller side of each matrix) is the one peft4j builds, other values are refused.");
        key("apollo_scale_type", Type.STRING, "channel", "APOLLO: channel (one scaling per row or column, APOLLO) or tensor (one per matrix, APOLLO-Mini).");
        key("apollo_layerwise", Type.BOOL, false, "APOLLO: LLaMA-Factory steps each tensor in its gradient hook (less gradient memory); that skips gradient clipping, as here, and needs gradient_accumulation_steps 1.");
        noted("apollo_scale_front", Type.BOOL, false, "Accepted; sqrt(apollo_scale) before or after Fira's norm-growth limiter gives the same update (the limiter compares ratios of norms; only its 1e-8 guard differs), and LLaMA-Factory hands the key to a parameter group APOLLOAdamW does not read.");
        key("use_badam", Type.BOOL, false, "BAdam: block-coordinate Adam over the decoder layers; one layer trains (and holds Adam state) at a time, switching every badam_switch_interval steps; embeddings, final norm and lm_head stay frozen.");
        noted("badam_mode", Type.STRING, "layer", "BAdam: layer (blocks are decoder layers) is the mode peft4j builds; ratio is refused.");
        key("badam_start_block", Type.INT, null, "BAdam: the first active layer (default: 0 ascending, the last descending).");
        key("badam_switch_mode", Type.STRING, "ascending", "BAdam: the order of the blocks: ascending, descending, random (seeded) or fixed.");
        key("badam_switch_interval", Type.INT, 50, "BAdam: steps between block switches (the Adam state restarts at each switch); -1 never switches.");
        noted("badam_update_ratio", Type.FLOAT, 0.05, "Accepted; BAdam's ratio mode only (not built): layer mode does not use it, as in LLaMA-Factory.");
        noted("badam_mask_mode", Type.STRING, "adjacent", "Accepted; BAdam's ratio mode only (not built): layer mode does not use it, as in LLaMA-Factory.");
        noted("badam_verbose", Type.INT, 0, "Accepted; BAdam's console verbosity (peft4j prints no per-block lines).");
        key("optim_memory_budget_mb", Type.FLOAT, 1024.0, "peft4j: paged optimizers keep at most this much of their state resident; the rest lives in a file under output_dir that the OS pages in and out.");
        key("seed", Type.INT, 42, "Seed for initialisation, shuffling, dropout and NEFTune.");
        key("eval_strategy", Type.STRING, "no", "no, steps or epoch.");
        key("eval_steps", Type.INT, null, "Evaluate every n steps (default: logging_steps) when eval_strategy is steps.");
        KEYS.put("evaluation_strategy", new Key("evaluation_strategy", Type.STRING, null, Support.SUPPORTED, "Old name of eval_strategy."));
        key("do_eval", Type.BOOL, false, "Evaluate at the end of training.");
        noted("fp16", Type.BOOL, false, "Mixed precision in LLaMA-Factory; peft4j computes in float32 on the CPU (weights may be stored in bf16/f16).");
        noted("bf16", Type.BOOL, false, "Mixed precision in LLaMA-Factory; peft4j computes in float32 on the CPU (weights may be stored in bf16/f16).");
        noted("ddp_timeout", Type.INT, null, "Accepted; peft4j trains on one machine.");
        noted("flash_attn", Type.STRING, "auto", "Accepted; peft4j has its own attention kernel.");
        // LLaMA-Factory keys about the runtime: the result is the same in peft4j's one process
        noted("pure_bf16", Type.BOOL, false, "Pure bf16 training in LLaMA-Factory; peft4j computes in float32 on the CPU, as with bf16 (weights may be stored in bf16/f16).");
        noted("deepspeed", Type.STRING, null, "Accepted; DeepSpeed ZeRO partitions optimizer states, gradients and weights across GPU processes; peft4j trains in one process, which computes what one device does.");
        notedAll("Accepted; FSDP shards the model across GPU processes; peft4j trains in one process, which computes what one device does.",
                "fsdp", "fsdp_config", "fsdp_transformer_layer_cls_to_wrap");
        key("ray_num_workers", Type.INT, 1, "LLaMA-Factory's Ray workers (data-parallel processes, each with its own batches); peft4j runs one process and multiplies gradient_accumulation_steps by it, so an optimizer step sees the same number of examples.");
        notedAll("Accepted; peft4j runs in one process (no Ray or torch.distributed).", "ray_init_kwargs", "ray_run_name", "ray_storage_path", "ray_storage_filesystem",
                "resources_per_worker", "placement_strategy", "master_addr", "master_port", "local_rank", "ddp_backend", "ddp_find_unused_parameters");
        notedAll("Accepted; peft4j tokenizes the datasets in every run and writes no Arrow cache there (the examples are the same).",
                "tokenized_path", "data_shared_file_system", "preprocessing_batch_size", "buffer_size");
        notedAll("Accepted; peft4j's gradient checkpointing is gradient_checkpointing: true (the gradients are the same either way).",
                "disable_gradient_checkpointing", "use_reentrant_gc", "gradient_checkpointing_kwargs", "use_unsloth_gc");
        notedAll("Accepted; a kernel choice in LLaMA-Factory: peft4j has its own kernels, computing the same functions in float32.",
                "enable_liger_kernel", "use_unsloth", "use_v1_kernels", "apply_rope_fusion", "bias_activation_fusion", "upcast_layernorm",
                "upcast_lmhead_output", "tf32", "torch_compile", "low_cpu_mem_usage", "device_map", "quantization_device_map", "compute_dtype",
                "offload_folder", "use_fast_tokenizer", "infer_dtype", "infer_backend", "use_kv_cache");
        notedAll("Accepted; metrics go to trainer_log.jsonl and the progress bar.", "use_swanlab", "swanlab_project", "swanlab_workspace",
                "swanlab_run_name", "swanlab_mode", "swanlab_api_key", "swanlab_logdir", "swanlab_lark_webhook_url", "swanlab_lark_secret",
                "logging_dir", "disable_tqdm", "print_param_status", "include_effective_tokens_per_second", "include_num_input_tokens_seen",
                "enable_torch_profiler", "profiler_output_dir", "profiler_wait_steps", "profiler_warmup_steps", "profiler_active_steps",
                "profiler_repeat", "profiler_record_shapes", "profiler_profile_memory", "profiler_with_stack", "profile_modules");
        notedAll("Accepted; a Hub credential or revision: peft4j reads HF_TOKEN and the Hub cache (see README).", "hf_hub_token", "ms_hub_token",
                "om_hub_token", "model_revision");
        notedAll("Accepted; only used with images, videos or audio: peft4j trains text models (rows with media are refused).",
                "image_max_pixels", "image_min_pixels", "image_do_pan_and_scan", "crop_to_patches", "video_max_pixels", "video_min_pixels",
                "video_fps", "video_maxlen", "use_audio_in_video", "audio_sampling_rate", "media_dir", "freeze_vision_tower",
                "freeze_multi_modal_projector", "freeze_language_model");
        // generation (LLaMA-Factory's GeneratingArguments, its defaults): do_predict's batch generation uses them
        key("do_sample", Type.BOOL, true, "do_predict: sample (with temperature, top_p, top_k) rather than pick the most likely token.");
        key("temperature", Type.FLOAT, 0.95, "do_predict: sampling temperature (do_sample).");
        key("top_p", Type.FLOAT, 0.7, "do_predict: nucleus sampling threshold in (0, 1] (do_sample).");
        key("top_k", Type.INT, 50, "do_predict: keep the k most likely tokens (do_sample; 0 = off).");
        key("max_new_tokens", Type.INT, 1024, "do_predict: tokens to generate at most per example (the model's context also ends it).");
        key("repetition_penalty", Type.FLOAT, 1.0, "do_predict: HF repetition penalty (1 = off).");
        key("skip_special_tokens", Type.BOOL, true, "do_predict: leave special tokens out of the predictions and labels written to generated_predictions.jsonl.");
        KEYS.put("num_beams", new Key("num_beams", Type.INT, 1, Support.UNSUPPORTED, "only 1: beam search is not built; generation samples or picks greedily."));
        notedAll("Accepted; a generation setting peft4j does not use (max_new_tokens and the model's context bound the length; no beam search).",
                "max_length", "length_penalty");
        notedAll("Accepted; an export setting: training does not use it (peft4j export takes it).", "export_dir", "export_size", "export_device",
                "export_legacy_format", "export_hub_model_id", "export_hf_on_finish");
        notedAll("Accepted; a serving setting of LLaMA-Factory's vLLM/SGLang backends: training does not use it.", "vllm_maxlen", "vllm_gpu_util",
                "vllm_enforce_eager", "vllm_max_lora_rank", "vllm_config", "sglang_maxlen", "sglang_mem_fraction", "sglang_tp_size", "sglang_config",
                "sglang_lora_backend");
        // LLaMA-Factory keys not built yet: a clear refusal naming them
        key("oft_rank", Type.INT, 0, "OFT (finetuning_type oft): number of orthogonal blocks per layer input (PEFT's r); 0 = use oft_block_size. Exactly one of the two is non-zero.");
        key("oft_block_size", Type.INT, 32, "OFT: size of each orthogonal block (PEFT's oft_block_size; moved to the nearest divisor of a layer's input width, as PEFT does).");
        key("oft_target", Type.STRING, "all", "OFT: comma-separated module names (q_proj,v_proj,...) or all.");
        key("module_dropout", Type.FLOAT, 0.0, "OFT: PEFT's multiplicative block dropout; only 0 (PEFT's OFT Linear.forward does not apply it).");
        key("use_dft_loss", Type.BOOL, false, "SFT: DFT loss, each label token's cross-entropy weighted by its probability (detached), as LLaMA-Factory's dft_loss_func.");
        key("use_eaft_loss", Type.BOOL, false, "SFT: EAFT loss, each label token's cross-entropy weighted by (entropy of the top-20 softmax / 3)^eaft_alpha (detached), as LLaMA-Factory's eaft_loss_func.");
        key("eaft_alpha", Type.FLOAT, 1.0, "use_eaft_loss: the power of the entropy weight.");
        key("use_asft_loss", Type.BOOL, false, "SFT, full/freeze tuning (or LoRA with ref_model): ASFT loss, as LLaMA-Factory's asft_loss_func: the DFT loss "
                + "plus asft_alpha times the KL divergence KL(reference || model) over the whole vocabulary at each labelled token, both averaged over "
                + "the micro-batch's labelled tokens; the reference is a frozen copy of the initial model (or ref_model). As in LLaMA-Factory "
                + "(transformers does not divide a custom loss by gradient_accumulation_steps), a step's loss and gradient are the sums over its micro-batches.");
        key("asft_alpha", Type.FLOAT, 0.1, "use_asft_loss: the weight of the KL term.");
        notedAll("Accepted; FP8 mixed precision in LLaMA-Factory (matrix products in FP8 with scales, master weights kept in higher precision); "
                + "peft4j computes in float32 on the CPU, as with bf16/fp16 (what is trained and saved is the same).", "fp8", "fp8_backend", "fp8_enable_fsdp_float8_all_gather");
        unsupportedAll("vocabulary changes (new tokens and a resized embedding) are not supported yet.", "resize_vocab", "add_tokens",
                "add_special_tokens", "new_special_tokens_config", "init_special_tokens", "split_special_tokens");
        key("shift_attn", Type.BOOL, false, "LongLoRA's shifted sparse attention (S²-Attn) while training (stage sft or pt): attention within 4 groups of "
                + "a quarter of the batch length each, half the heads shifted by half a group; evaluation and generation keep full attention. Batches are padded to "
                + "a multiple of 8 tokens (LLaMA-Factory's collator does too).");
        unsupportedAll("this model change is not supported yet.", "rope_scaling", "mixture_of_depths", "train_from_scratch",
                "moe_aux_loss_coef", "block_diag_attn", "neat_packing", "model_max_length");
        unsupportedAll("stage ppo is not supported yet (reward models train with stage rm).", "ppo_buffer_size", "ppo_epochs", "ppo_score_norm", "ppo_target",
                "ppo_whiten_rewards", "reward_model", "reward_model_adapters", "reward_model_quantization_bit", "reward_model_type");
        unsupportedAll("this LoRA variant is not supported yet.", "create_new_adapter", "loraplus_lr_embedding", "freeze_extra_modules", "adapter_folder");
        // Megatron-Core (use_mca), Megatron Bridge and hyper-parallel runtimes: how the same model and loss are split over
        // GPU processes (tensor/pipeline/context/expert parallel degrees, sharded optimizer, overlapped communication,
        // recomputation); one process computes what the devices compute together
        notedAll("Accepted; LLaMA-Factory's Megatron-Core / Megatron Bridge / hyper-parallel runtime splits the same model and loss over GPU processes; "
                + "peft4j trains in one process, which computes what the devices compute together (recompute_granularity: see gradient_checkpointing).",
                "use_mca", "use_megatron_bridge", "use_hyper_parallel", "hyper_parallel_cp_size", "tensor_model_parallel_size",
                "pipeline_model_parallel_size", "context_parallel_size", "expert_model_parallel_size", "sequence_parallel",
                "use_distributed_optimizer", "overlap_grad_reduce", "overlap_param_gather", "moe_grouped_gemm", "moe_token_dispatcher_type",
                "recompute_granularity");
        noted("mixed_precision", Type.STRING, null, "Megatron's precision recipe (bf16_mixed, fp16_mixed, ...); peft4j computes in float32 on the CPU, as with bf16/fp16.");
        unsupportedAll("Megatron's packed sequences put several examples in a row with attention kept within each example (as neat_packing), which peft4j does not build yet; set use_packed_sequences: false.",
                "use_packed_sequences");
        unsupportedAll("free-form Megatron Bridge / hyper-parallel arguments can change the model or the loss; peft4j cannot check them: drop the key.",
                "megatron_bridge_args", "hyper_parallel_args");
        // KTransformers: MoE experts on the CPU with its kernels, the rest on the GPU; the model computed is the same
        // unless its experts are read from separately converted (int8/int4) weights
        notedAll("Accepted; KTransformers runs the MoE experts on the CPU with its own kernels; peft4j runs the whole model on the CPU in one process "
                + "(the same function; kt_config's kt_expert_weight_format must be a 16/32-bit float).", "use_kt", "kt_config", "kt_cpu_activation");
        unsupportedAll("KTransformers' separately converted weights (e.g. int8 experts) are not what model_name_or_path holds, so the model would differ; "
                + "point model_name_or_path at the Hugging Face model and drop the key.", "kt_weight_path", "kt_non_expert_weight_path", "kt_expert_checkpoint_path");
        unsupportedAll("LoRA on MoE experts (KTransformers) is not supported: peft4j's models have no experts.", "kt_use_lora_experts",
                "kt_lora_expert_num", "kt_lora_expert_intermediate_size");
        unsupportedAll("this data option is not supported yet.", "mix_strategy", "interleave_probs", "eval_on_each_dataset", "eval_num_beams",
                "disable_shuffling", "compute_accuracy", "early_stopping_steps");
        notedAll("Accepted; peft4j computes no loss on padding (LLaMA-Factory's default, true).", "ignore_pad_token_for_loss");
        notedAll("Accepted; peft4j trains on the CPU.", "use_cpu", "no_cuda");
        for (String k : List.of("save_strategy", "logging_strategy"))
            KEYS.put(k, new Key(k, Type.STRING, "steps", Support.UNSUPPORTED, "only 'steps' (the default, every save_steps/logging_steps) is supported yet."));
        key("do_predict", Type.BOOL, false, "Generate an answer for every example of eval_dataset (stage sft, predict_with_generate: true) with the model "
                + "(and adapter_name_or_path): generated_predictions.jsonl and predict_results.json with BLEU-4 and ROUGE-1/2/L, as LLaMA-Factory.");
        key("predict_with_generate", Type.BOOL, false, "do_predict: generate the answers (the only prediction peft4j builds); as in LLaMA-Factory not while training.");
        unsupportedAll("export quantization (GPTQ) is not supported; peft4j quantize writes bitsandbytes 4-bit.", "export_quantization_bit",
                "export_quantization_dataset", "export_quantization_nsamples", "export_quantization_maxlen");
        unsupportedAll("this trainer option is not supported yet.", "label_smoothing_factor", "group_by_length", "lr_scheduler_kwargs", "optim_args",
                "load_best_model_at_end", "metric_for_best_model", "greater_is_better", "push_to_hub", "hub_model_id",
                "eval_accumulation_steps", "eval_delay");
        // peft4j
        key("threads", Type.INT, null, "Worker threads (default: all cores).");
        key("gemm", Type.STRING, "auto", "Matrix-product backend: auto, java, openblas or scalar.");
        key("compare_prompts", Type.STRING, null, "peft4j: '|'-separated prompts answered before and after training (greedy), side by side.");
        key("forgetting_text", Type.STRING, null, "peft4j: a text file (one passage per line) whose loss is compared before and after training.");
    }

    private final Map<String, Object> values = new LinkedHashMap<>();
    private final List<String> notes = new ArrayList<>();
    private final java.util.Set<String> given = new java.util.HashSet<>();     // keys set by the YAML or a flag
    private final java.util.Set<String> givenIn = new java.util.HashSet<>();   // "where key", to catch a key and its alias together

    private TrainConfig() {
        for (Key k : KEYS.values()) values.put(k.name, k.defaultValue);
    }

    /// The defaults, then the YAML file (may be null), then the flags (`--key value`, `--key=value`, bare `--flag`).
    public static TrainConfig load(Path yaml, List<String> flags) {
        TrainConfig c = new TrainConfig();
        if (yaml != null) c.applyYaml(yaml);
        c.applyFlags(flags);
        c.validate();
        return c;
    }

    private void applyYaml(Path yaml) {
        for (Map.Entry<String, String> e : readYaml(yaml).entrySet()) set(e.getKey(), e.getValue(), yaml.toString());
    }

    /// A LLaMA-Factory YAML file as key → text (null for null; lists joined with commas; mappings as JSON), in order.
    public static Map<String, String> readYaml(Path yaml) {
        JsonNode root;
        try {
            root = new ObjectMapper(new YAMLFactory()).enable(JsonParser.Feature.STRICT_DUPLICATE_DETECTION).readTree(Files.readString(yaml));
        } catch (JsonProcessingException e) {
            var loc = e.getLocation();
            String where = yaml + (loc != null ? ":" + loc.getLineNr() + ":" + loc.getColumnNr() : "");
            String msg = e.getOriginalMessage();
            if (msg != null && msg.startsWith("Duplicate field"))
                throw new ConfigException(where + ": key " + msg.substring("Duplicate field ".length()) + " is given twice; keep one of them");
            throw new ConfigException(where + ": malformed YAML: " + msg);
        } catch (IOException e) {
            throw new ConfigException("cannot read " + yaml + ": " + e.getMessage(), e);
        }
        Map<String, String> out = new LinkedHashMap<>();
        if (root == null || root.isNull()) return out;
        if (!root.isObject()) throw new ConfigException(yaml + ": expected a mapping of keys to values at the top level");
        for (Iterator<Map.Entry<String, JsonNode>> it = root.fields(); it.hasNext(); ) {
            var e = it.next();
            JsonNode v = e.getValue();
            out.put(e.getKey(), v.isNull() ? null : v.isArray() ? join(v) : v.isObject() ? v.toString() : v.asText());
        }
        return out;
    }

    private static String join(JsonNode arr) {
        List<String> parts = new ArrayList<>();
        arr.forEach(x -> parts.add(x.asText()));
        return String.join(",", parts);
    }

    private void applyFlags(List<String> flags) {
        for (int i = 0; i < flags.size(); i++) {
            String f = flags.get(i);
            if (!f.startsWith("--")) throw new ConfigException("unexpected argument '" + f + "'; flags look like --learning_rate 1e-4");
            String name = f.substring(2), value;
            int eq = name.indexOf('=');
            if (eq >= 0) { value = name.substring(eq + 1); name = name.substring(0, eq); }
            else if (i + 1 < flags.size() && !flags.get(i + 1).startsWith("--")) value = flags.get(++i);
            else {
                Key k = KEYS.get(name.replace('-', '_'));
                if (k != null && k.type != Type.BOOL) throw new ConfigException("flag --" + name + " needs a value");
                value = "true";
            }
            set(name.replace('-', '_'), value, "command line");
        }
    }

    private void set(String name, String text, String where) {
        Key k = KEYS.get(name);
        if (k == null) {
            throw new ConfigException(where + ": unknown key '" + name + "'" + suggestion(name)
                    + "; run 'peft4j train --help-keys' for the list");
        }
        if (k.support == Support.UNSUPPORTED && text != null && !text.equals("false") && !text.equals("null") && !text.equals(String.valueOf(k.defaultValue)))
            throw new ConfigException(where + ": '" + name + "' is a LLaMA-Factory key that peft4j does not support yet (" + k.help + ")");
        if (k.support == Support.IGNORED_WITH_NOTE && text != null && !text.equals(String.valueOf(k.defaultValue)))
            notes.add(name + "=" + text + ": " + k.help);
        if ((name.equals("evaluation_strategy") || name.equals("eval_strategy")) && text != null
                && !givenIn.add(where + " eval_strategy"))
            throw new ConfigException(where + ": eval_strategy and its old name evaluation_strategy are both given; keep eval_strategy only");
        if (name.equals("evaluation_strategy")) {
            if (text == null) return;   // an unset alias (training_args.json lists it as null) leaves eval_strategy alone
            name = "eval_strategy";
        }
        // `key: null` (or `key:` with nothing) unsets the key: its default, as when it is left out (a key whose default
        // is a number would otherwise hold null and fail later; found by TrainFuzzTest)
        values.put(name, text == null ? KEYS.get(name).defaultValue : parse(KEYS.get(name), text, where));
        if (text != null) given.add(name);
    }

    private static Object parse(Key k, String text, String where) {
        try {
            return switch (k.type) {
                case STRING -> text;
                case INT -> {
                    if (k.defaultValue == null && text.equalsIgnoreCase("none")) yield null;   // save_total_limit: none
                    double d = Double.parseDouble(text);
                    if (d != Math.rint(d) || Math.abs(d) > Integer.MAX_VALUE) throw new NumberFormatException();
                    yield (int) d;
                }
                case FLOAT -> {
                    double d = Double.parseDouble(text);
                    if (!Double.isFinite(d)) throw new ConfigException(where + ": '" + k.name + "' must be a finite number, got '" + text + "'");
                    yield d;
                }
                case BOOL -> switch (text.toLowerCase()) {
                    case "true", "yes", "1" -> true;
                    case "false", "no", "0" -> false;
                    default -> throw new NumberFormatException();
                };
            };
        } catch (NumberFormatException e) {
            throw new ConfigException(where + ": '" + k.name + "' must be " + switch (k.type) {
                case INT -> "an integer";
                case FLOAT -> "a number";
                case BOOL -> "true or false";
                case STRING -> "a string";
            } + ", got '" + text + "'");
        }
    }

    /// " (did you mean 'x'?)" for the nearest key by edit distance, or "".
    static String suggestion(String name) {
        return closest(name, KEYS.keySet(), Math.max(3, name.length() / 3));
    }

    static int editDistance(String a, String b) {
        int[] prev = new int[b.length() + 1], cur = new int[b.length() + 1];
        for (int j = 0; j <= b.length(); j++) prev[j] = j;
        for (int i = 1; i <= a.length(); i++) {
            cur[0] = i;
            for (int j = 1; j <= b.length(); j++)
                cur[j] = Math.min(Math.min(cur[j - 1] + 1, prev[j] + 1), prev[j - 1] + (a.charAt(i - 1) == b.charAt(j - 1) ? 0 : 1));
            int[] t = prev; prev = cur; cur = t;
        }
        return prev[b.length()];
    }

    private void validate() {
        require("model_name_or_path");
        require("output_dir");
        if (str("output_dir").isBlank()) throw new ConfigException("output_dir is empty; give the folder to write checkpoints and the adapter to");
        checkRanges();
        String stage = str("stage");
        if (!List.of("sft", "pt", "dpo", "kto", "rm").contains(stage))
            throw new ConfigException("stage '" + stage + "' is not supported; use sft, pt, dpo, kto or rm (ppo is not available yet)");
        checkPredict(stage);
        if (b("use_dft_loss") || b("use_eaft_loss")) {
            String which = b("use_dft_loss") ? "use_dft_loss" : "use_eaft_loss";
            if (!stage.equals("sft"))   // LLaMA-Factory sets these compute_loss_func in its CustomSeq2SeqTrainer (stage sft) only
                throw new ConfigException(which + " weights the token cross-entropy of stage sft (as in LLaMA-Factory); stage " + stage + " does not use it: drop " + which);
            if (b("use_dft_loss") && b("use_eaft_loss"))
                notes.add("use_dft_loss and use_eaft_loss are both set: DFT is used, as LLaMA-Factory's CustomSeq2SeqTrainer checks use_dft_loss first");
            if (!(d("eaft_alpha") >= 0)) throw new ConfigException("eaft_alpha must be >= 0, got " + d("eaft_alpha"));
        }
        if (b("use_asft_loss")) {
            // LLaMA-Factory: CustomSeq2SeqTrainer (stage sft) only; its create_ref_model returns no reference for LoRA without
            // ref_model (the trainer then fails), and with use_dft_loss/use_eaft_loss also set it would call their loss
            // function with the reference logits in the place of num_items_in_batch
            if (!stage.equals("sft"))
                throw new ConfigException("use_asft_loss is a loss of stage sft (as in LLaMA-Factory); stage " + stage + " does not use it: drop use_asft_loss");
            if (b("use_dft_loss") || b("use_eaft_loss"))
                throw new ConfigException("use_asft_loss already contains the DFT loss; drop " + (b("use_dft_loss") ? "use_dft_loss" : "use_eaft_loss")
                        + " (LLaMA-Factory would pass the reference logits to that loss instead)");
            if (str("finetuning_type").equals("lora") && str("ref_model") == null)
                throw new ConfigException("use_asft_loss needs a reference model: with finetuning_type lora set ref_model (LLaMA-Factory's create_ref_model "
                        + "makes none for LoRA and its ASFT trainer then fails), or use finetuning_type full or freeze (a frozen copy of the initial model)");
            if (!(d("asft_alpha") >= 0) || !Double.isFinite(d("asft_alpha")))
                throw new ConfigException("asft_alpha must be a finite number >= 0, got " + d("asft_alpha"));
        }
        if (str("dataset") == null && !(b("do_predict") && !b("do_train") && !b("do_eval")))   // predicting alone reads eval_dataset only
            throw new ConfigException("'dataset' is required: name one or more datasets of " + str("dataset_dir") + "/dataset_info.json");
        String ft = str("finetuning_type");
        if (b("shift_attn")) {
            // LLaMA-Factory patches the attention of any trainer; peft4j's preference and reward passes score with full attention
            if (!List.of("sft", "pt").contains(stage))
                throw new ConfigException("shift_attn (LongLoRA's S²-Attn) trains stage sft or pt in peft4j; stage " + stage + " is not supported with it: drop shift_attn");
            if (List.of("prompt", "prefix", "ptuning", "p_tuning").contains(ft))
                throw new ConfigException("shift_attn does not combine with finetuning_type " + ft + " (virtual tokens would sit in the first group only); "
                        + "use lora, full, freeze, oft or ia3, or drop shift_attn");
        }
        if (ft.equals("p_tuning")) throw new ConfigException("finetuning_type p_tuning: peft4j names PEFT's P-tuning 'ptuning'; set finetuning_type: ptuning");
        if (!List.of("lora", "full", "freeze", "oft", "ia3", "prompt", "prefix", "ptuning").contains(ft))
            throw new ConfigException("finetuning_type '" + ft + "' must be lora, oft, full, freeze, ia3, prompt, prefix or ptuning");
        if (!List.of("prompt", "prefix", "ptuning").contains(ft) && get("num_virtual_tokens") != null)
            throw new ConfigException("num_virtual_tokens configures finetuning_type prompt, prefix or ptuning (PEFT's prompt tuning, prefix tuning, P-tuning); set one of them or drop it");
        if (!ft.equals("prompt") && get("prompt_tuning_init_text") != null)
            throw new ConfigException("prompt_tuning_init_text configures finetuning_type prompt (PEFT's prompt tuning); set finetuning_type: prompt or drop it");
        checkPrefix(ft, stage);
        if (!ft.equals("ptuning")) {
            Map<String, Object> set = changed();
            for (String k : List.of("encoder_reparameterization_type", "encoder_num_layers", "encoder_dropout"))
                if (set.containsKey(k)) throw new ConfigException(k + " configures finetuning_type ptuning (PEFT's P-tuning prompt encoder); set finetuning_type: ptuning or drop it");
        }
        if (ft.equals("ptuning")) {
            TrainArgs.ptuning(this);   // PEFT's required num_virtual_tokens and the encoder's settings checked up front
            if (!stage.equals("sft") && !stage.equals("pt"))
                throw new ConfigException("finetuning_type ptuning with stage " + stage + " is not supported; use stage sft or pt, or finetuning_type lora");
            if (str("adapter_name_or_path") != null && b("do_train"))
                throw new ConfigException("adapter_name_or_path continues a LoRA adapter's training; a P-tuning run starts a new prompt encoder (PEFT saves only its output): drop adapter_name_or_path");
        }
        if (ft.equals("prompt")) {
            TrainArgs.prompt(this);
            if (stage.equals("dpo") || stage.equals("kto"))
                throw new ConfigException("finetuning_type prompt with stage " + stage + " is not supported yet; use stage sft or pt, or finetuning_type lora");
        }
        if (!ft.equals("ia3"))
            for (String k : List.of("target_modules", "feedforward_modules"))
                if (get(k) != null) throw new ConfigException(k + " configures finetuning_type ia3 (PEFT's IA3Config); with " + ft + " use lora_target, or set finetuning_type: ia3");
        if (ft.equals("ia3")) TrainArgs.ia3(this);   // names and the subset rule checked up front
        if (ft.equals("oft")) {
            for (String t : str("oft_target").split("\\s*,\\s*"))
                if (!t.equals("all") && org.peft4j.model.llama.Projection.byName(t) == null)
                    throw new ConfigException("oft_target '" + t + "' is not a linear layer of this model; use names among " + org.peft4j.model.llama.Projection.MODULE_NAMES + " or all");
            new org.peft4j.model.adapter.oft.OftConfig(i("oft_rank"), i("oft_block_size"), List.of("q_proj"), d("module_dropout"), 5);   // validates
            if (optInt("quantization_bit") != null)
                notes.add("quantization_bit with finetuning_type oft (QOFT): peft4j trains the rotation over the dequantized 4-bit weights, "
                        + "the numbers PEFT's bnb OFT multiplies by, held in float (no memory saving over OFT)");
        }
        if (i("lora_rank") < 1) throw new ConfigException("lora_rank must be >= 1, got " + i("lora_rank"));
        double p = d("lora_dropout");
        if (p < 0 || p >= 1) throw new ConfigException("lora_dropout must be in [0, 1), got " + p);
        if (i("cutoff_len") < 2) throw new ConfigException("cutoff_len must be >= 2, got " + i("cutoff_len"));
        if (i("per_device_train_batch_size") < 1 || i("gradient_accumulation_steps") < 1)
            throw new ConfigException("per_device_train_batch_size and gradient_accumulation_steps must be >= 1");
        if (d("learning_rate") <= 0) throw new ConfigException("learning_rate must be > 0, got " + d("learning_rate"));
        String opt = str("optim");
        if (!List.of("adamw_torch", "adamw_hf", "adamw_torch_fused", "adamw_8bit", "adamw_bnb_8bit", "paged_adamw_32bit", "paged_adamw_8bit", "sgd").contains(opt))
            throw new ConfigException("optim '" + opt + "' is not supported yet; use adamw_torch, adamw_8bit, paged_adamw_32bit, paged_adamw_8bit or sgd");
        validateOptimizerMethod(ft, opt);
        if (b("use_llama_pro") && !ft.equals("freeze"))
            throw new ConfigException("use_llama_pro trains the expanded blocks by freeze tuning; set finetuning_type: freeze (LoRA on the expanded blocks is not built yet)");
        if (!List.of("no", "steps", "epoch").contains(str("eval_strategy")))
            throw new ConfigException("eval_strategy must be no, steps or epoch, got '" + str("eval_strategy") + "'");
        if (optInt("quantization_bit") != null) {
            if (i("quantization_bit") != 4) throw new ConfigException("quantization_bit " + i("quantization_bit") + " is not supported; peft4j quantizes to 4 bits (QLoRA)");
            if (!ft.equals("lora") && !ft.equals("oft")) throw new ConfigException("quantization_bit 4 trains LoRA (or OFT) adapters over a frozen 4-bit base; set finetuning_type: lora or oft");
            if (!List.of("nf4", "fp4").contains(str("quantization_type"))) throw new ConfigException("quantization_type must be nf4 or fp4, got '" + str("quantization_type") + "'");
        }
        if (b("pissa_init")) {
            if (!ft.equals("lora")) throw new ConfigException("pissa_init initialises LoRA adapters; set finetuning_type: lora or pissa_init: false");
            if (optInt("quantization_bit") != null)
                throw new ConfigException("pissa_init with quantization_bit is not supported: PiSSA rewrites the base weights, which must stay full precision; drop one of them");
            if (b("use_dora")) throw new ConfigException("pissa_init with use_dora is not supported; drop one of them");
            if (str("adapter_name_or_path") != null) throw new ConfigException("pissa_init initialises a new adapter; it cannot be combined with adapter_name_or_path");
            if (i("pissa_iter") < -1) throw new ConfigException("pissa_iter must be -1 (exact SVD) or >= 0, got " + i("pissa_iter"));
        }
        if (stage.equals("dpo")) {
            var kind = org.peft4j.model.layers.PreferenceLoss.Kind.of(str("pref_loss"));
            new org.peft4j.model.layers.PreferenceLoss.Config(kind, d("pref_beta"), d("pref_ftx"), d("dpo_label_smoothing"), d("simpo_gamma"));
        }
        if (stage.equals("kto")) {
            new org.peft4j.model.layers.KtoLoss.Config(d("pref_beta"), d("kto_chosen_weight"), d("kto_rejected_weight"), d("pref_ftx"));
        }
        if (str("ref_model") == null) {
            for (String k : List.of("ref_model_adapters", "ref_model_quantization_bit"))
                if (get(k) != null) throw new ConfigException(k + " configures ref_model, which is unset; set ref_model to the reference model folder, or drop " + k);
        } else {
            if (!stage.equals("dpo") && !stage.equals("kto") && !(stage.equals("sft") && b("use_asft_loss")))
                throw new ConfigException("ref_model is the reference of stages dpo and kto (and of use_asft_loss); stage " + stage + " has none: drop ref_model");
            if (optInt("ref_model_quantization_bit") != null && i("ref_model_quantization_bit") != 4)
                throw new ConfigException("ref_model_quantization_bit " + i("ref_model_quantization_bit") + " is not supported; peft4j quantizes to 4 bits (NF4)");
            if (str("ref_model_adapters") != null && str("ref_model_adapters").contains(","))
                throw new ConfigException("ref_model_adapters '" + str("ref_model_adapters") + "' names several adapters; peft4j applies one: merge the others into ref_model first with peft4j export");
        }
        if (stage.equals("dpo") || stage.equals("kto") || stage.equals("rm")) {
            if (Boolean.TRUE.equals(optBool("packing"))) throw new ConfigException("packing does not apply to stage " + stage + " (each sequence is its own row); set packing: false");
            if (optDouble("neftune_noise_alpha") != null && !stage.equals("rm"))
                throw new ConfigException("neftune_noise_alpha is not supported with stage " + stage + " (its policy pass runs without noise or dropout, as LLaMA-Factory's disable_dropout); drop it");
        }
        if (!List.of("bnb", "bitsandbytes").contains(str("quantization_method")))
            throw new ConfigException("quantization_method '" + str("quantization_method") + "' is not supported; peft4j quantizes with bitsandbytes' 4-bit formats: "
                    + "use quantization_method: bnb (LLaMA-Factory's default) with quantization_bit: 4, or a model folder already in bitsandbytes 4-bit");
        if (i("ray_num_workers") < 1) throw new ConfigException("ray_num_workers must be >= 1, got " + i("ray_num_workers"));
        if (i("ray_num_workers") > 1)
            notes.add("ray_num_workers=" + i("ray_num_workers") + ": peft4j trains in one process; gradient_accumulation_steps "
                    + i("gradient_accumulation_steps") + " is multiplied by " + i("ray_num_workers") + " so each optimizer step sees as many examples as the " + i("ray_num_workers") + " workers would");
        if (b("streaming")) throw new ConfigException("streaming datasets are not supported; set streaming: false");
        checkKtConfig();
        if (i("per_device_eval_batch_size") < 1) throw new ConfigException("per_device_eval_batch_size must be >= 1, got " + i("per_device_eval_batch_size"));
        if (optInt("eval_steps") != null && i("eval_steps") < 1) throw new ConfigException("eval_steps must be >= 1, got " + i("eval_steps"));
        String adapter = str("adapter_name_or_path");
        if (adapter != null) {
            if (!ft.equals("lora"))
                throw new ConfigException("adapter_name_or_path continues a LoRA adapter; it cannot be used with finetuning_type " + ft + " (merge it first with peft4j export)");
            if (adapter.contains(","))
                throw new ConfigException("adapter_name_or_path '" + adapter + "' names several adapters; peft4j continues one: merge the others into the base first with peft4j export");
        }
        if (!b("do_train") && !b("do_predict")) {
            if (!b("do_eval")) throw new ConfigException("do_train and do_eval are both false: nothing to do; set do_train: true to train or do_eval: true to evaluate");
            if (str("eval_dataset") == null && d("val_size") <= 0)
                throw new ConfigException("do_train: false with do_eval: true evaluates on the validation set; set val_size or eval_dataset");
        }
    }

    /// use_adam_mini, use_muon, use_galore, use_apollo, use_badam: at most one, each replacing optim, with its keys checked.
    private void validateOptimizerMethod(String ft, String opt) {
        List<String> on = new ArrayList<>();
        for (String k : List.of("use_galore", "use_apollo", "use_badam", "use_adam_mini", "use_muon")) if (b(k)) on.add(k);
        if (on.isEmpty()) return;
        if (on.size() > 1) throw new ConfigException(String.join(" and ", on) + " each choose the optimizer; keep one of them");
        String k = on.getFirst();
        if (!List.of("adamw_torch", "adamw_hf", "adamw_torch_fused").contains(opt))
            throw new ConfigException(k + " replaces the optimizer, so optim " + opt + " cannot take effect; drop optim (or set adamw_torch) or drop " + k);
        if (optDouble("loraplus_lr_ratio") != null) throw new ConfigException(k + " and loraplus_lr_ratio both choose the optimizer; drop one of them");
        if (k.equals("use_galore")) {
            if (ft.equals("lora")) throw new ConfigException("use_galore projects full-weight gradients and cannot be used with LoRA (as LLaMA-Factory); set finetuning_type: full or freeze");
            if (b("galore_layerwise") && i("gradient_accumulation_steps") * i("ray_num_workers") != 1)
                throw new ConfigException("galore_layerwise steps each tensor as its gradient arrives, which does not support gradient accumulation (as LLaMA-Factory); set gradient_accumulation_steps: 1 or galore_layerwise: false");
            for (String t : str("galore_target").split("\\s*,\\s*"))
                if (!t.equals("all") && org.peft4j.model.llama.Projection.byName(t) == null)
                    throw new ConfigException("galore_target '" + t + "' is not a linear layer of this model; use names among "
                            + org.peft4j.model.adapter.lora.LoraConfig.ALL_LINEAR + " or all");
            new org.peft4j.train.optim.GaLore.Config(List.of(str("galore_target").split("\\s*,\\s*")), i("galore_rank"),
                    i("galore_update_interval"), d("galore_scale"), str("galore_proj_type"), b("galore_layerwise"));
        }
        if (k.equals("use_apollo")) {
            if (ft.equals("lora")) throw new ConfigException("use_apollo scales full-weight gradients and cannot be used with LoRA (as LLaMA-Factory); set finetuning_type: full or freeze");
            if (b("apollo_layerwise") && i("gradient_accumulation_steps") * i("ray_num_workers") != 1)
                throw new ConfigException("apollo_layerwise steps each tensor as its gradient arrives, which does not support gradient accumulation (as LLaMA-Factory); set gradient_accumulation_steps: 1 or apollo_layerwise: false");
            for (String t : str("apollo_target").split("\\s*,\\s*"))
                if (!t.equals("all") && org.peft4j.model.llama.Projection.byName(t) == null)
                    throw new ConfigException("apollo_target '" + t + "' is not a linear layer of this model; use names among "
                            + org.peft4j.model.adapter.lora.LoraConfig.ALL_LINEAR + " or all");
            TrainArgs.apollo(this);
        }
        if (k.equals("use_badam")) {
            if (!str("badam_mode").equals("layer"))
                throw new ConfigException("badam_mode '" + str("badam_mode") + "' is not built yet; peft4j builds BAdam's layer mode (badam_mode: layer)");
            new org.peft4j.train.optim.BlockAdam.Config(optInt("badam_start_block"), str("badam_switch_mode"), i("badam_switch_interval"));
        }
    }

    /// do_predict as LLaMA-Factory runs it: stage sft with predict_with_generate, never while training (its
    /// get_train_args refuses predict_with_generate with do_train), over eval_dataset. LLaMA-Factory's do_train defaults
    /// to false, peft4j's to true: with do_predict and no do_train given, the run only predicts (a note says so).
    private void checkPredict(String stage) {
        if (!b("do_predict")) {
            if (b("predict_with_generate") && b("do_train") && given.contains("do_train"))
                throw new ConfigException("predict_with_generate cannot be set while training (as in LLaMA-Factory); use it with do_predict: true and do_train: false");
            return;
        }
        if (!b("predict_with_generate"))
            throw new ConfigException("do_predict without predict_with_generate (LLaMA-Factory's token accuracy of the eval set) is not supported; "
                    + "set predict_with_generate: true to generate answers, or use do_eval for the validation loss");
        if (!stage.equals("sft")) throw new ConfigException("do_predict generates answers with stage sft; stage " + stage + " has no prediction: set stage: sft");
        if (b("do_train")) {
            if (given.contains("do_train"))
                throw new ConfigException("predict_with_generate cannot be set while training (as in LLaMA-Factory): train first, then run do_predict: true "
                        + "with do_train: false and adapter_name_or_path set to the trained adapter");
            values.put("do_train", false);
            notes.add("do_predict: do_train is unset, so (LLaMA-Factory's default do_train: false) this run only predicts");
        }
        if (str("eval_dataset") == null)
            throw new ConfigException("do_predict generates over eval_dataset; name the datasets to predict with eval_dataset");
        if (i("max_new_tokens") < 1) throw new ConfigException("max_new_tokens must be >= 1, got " + i("max_new_tokens"));
        if (d("temperature") < 0) throw new ConfigException("temperature must be >= 0, got " + d("temperature"));
        if (!(d("top_p") > 0 && d("top_p") <= 1)) throw new ConfigException("top_p must be in (0, 1], got " + d("top_p"));
        if (i("top_k") < 0) throw new ConfigException("top_k must be >= 0 (0 = off), got " + i("top_k"));
        if (!(d("repetition_penalty") > 0)) throw new ConfigException("repetition_penalty must be > 0, got " + d("repetition_penalty"));
    }

    /// kt_config (a mapping): its kt_expert_weight_format must keep the experts' weights as they are (bf16, fp16,
    /// fp32); a quantized format (int8, int4, ...) computes another model, which peft4j would not match.
    /// finetuning_type prefix (PEFT's PrefixTuningConfig): num_virtual_tokens required; prefix_projection and
    /// encoder_hidden_size only with it (encoder_hidden_size only with the projection, the one place PEFT reads it; P-tuning's
    /// prompt encoder reads it too); stages sft and pt.
    private void checkPrefix(String ft, String stage) {
        if (!ft.equals("prefix") && get("prefix_projection") != null && b("prefix_projection"))
            throw new ConfigException("prefix_projection configures finetuning_type prefix (PEFT's prefix tuning); set finetuning_type: prefix or drop it");
        if (!List.of("prefix", "ptuning", "p_tuning").contains(ft) && get("encoder_hidden_size") != null)
            throw new ConfigException("encoder_hidden_size configures the prompt encoder of finetuning_type prefix (with prefix_projection) or ptuning; set one of them or drop it");
        if (!ft.equals("prefix")) return;
        TrainArgs.prefix(this);
        if (get("encoder_hidden_size") != null && !b("prefix_projection"))
            throw new ConfigException("encoder_hidden_size " + get("encoder_hidden_size") + " is the width of prefix tuning's MLP, which only prefix_projection: true uses "
                    + "(PEFT ignores it otherwise); set prefix_projection: true or drop encoder_hidden_size");
        if (!stage.equals("sft") && !stage.equals("pt"))
            throw new ConfigException("finetuning_type prefix with stage " + stage + " is not supported yet; use stage sft or pt, or finetuning_type lora");
    }

    private void checkKtConfig() {
        String kt = str("kt_config");
        if (kt == null || kt.isBlank()) return;
        String format;
        try {
            JsonNode n = new ObjectMapper().readTree(kt);
            format = n != null && n.isObject() && n.has("kt_expert_weight_format") ? n.get("kt_expert_weight_format").asText() : null;
        } catch (JsonProcessingException e) {
            throw new ConfigException("kt_config must be a mapping (kt_expert_weight_format: bf16, ...), got '" + kt + "'");
        }
        if (format != null && !List.of("bf16", "bfloat16", "fp16", "float16", "fp32", "float32").contains(format.toLowerCase()))
            throw new ConfigException("kt_config: kt_expert_weight_format '" + format + "' quantizes the MoE experts, so the model trained would differ from "
                    + "model_name_or_path's; peft4j trains the weights as stored: use kt_expert_weight_format: bf16 or drop kt_config");
    }

    /// Plain range checks of numeric keys, so a typo is a message rather than a failure deep in training.
    private void checkRanges() {
        for (String k : List.of("adam_beta1", "adam_beta2"))
            if (d(k) < 0 || d(k) >= 1) throw new ConfigException(k + " must be in [0, 1), got " + d(k));
        for (String k : List.of("weight_decay", "max_grad_norm", "adam_epsilon", "warmup_ratio", "val_size"))
            if (get(k) != null && d(k) < 0) throw new ConfigException(k + " must be >= 0, got " + d(k));
        if (d("warmup_ratio") > 1) throw new ConfigException("warmup_ratio must be in [0, 1] (a fraction of all steps), got " + d("warmup_ratio"));
        List<String> schedules = Arrays.stream(LrSchedule.Kind.values()).map(k -> k.hfName).toList();
        if (!schedules.contains(str("lr_scheduler_type")))
            throw new ConfigException("lr_scheduler_type '" + str("lr_scheduler_type") + "' is not known" + closest(str("lr_scheduler_type"), schedules, 3)
                    + "; use one of " + String.join(", ", schedules));
        if (optInt("threads") != null && i("threads") < 1) throw new ConfigException("threads must be >= 1, got " + i("threads") + " (leave it unset for all cores)");
        if (optInt("max_samples") != null && i("max_samples") < 1) throw new ConfigException("max_samples must be >= 1, got " + i("max_samples") + " (leave it unset for all rows)");
        if (optInt("save_total_limit") != null && i("save_total_limit") < 0)
            throw new ConfigException("save_total_limit must be >= 0 (0 or none keeps every checkpoint), got " + i("save_total_limit"));
        if (i("max_steps") <= 0 && d("num_train_epochs") <= 0)
            throw new ConfigException("num_train_epochs must be > 0 when max_steps is unset, got " + d("num_train_epochs") + "; set num_train_epochs or max_steps");
        if (i("save_steps") < 0) throw new ConfigException("save_steps must be >= 0 (0 = never), got " + i("save_steps"));
    }

    /// " (did you mean 'x'?)" for the nearest of `names` within `maxDistance` edits, or "".
    private static String closest(String name, java.util.Collection<String> names, int maxDistance) {
        String best = null;
        int bestD = Integer.MAX_VALUE;
        for (String n : names) {
            int d = editDistance(name, n);
            if (d < bestD) { bestD = d; best = n; }
        }
        return best != null && bestD <= maxDistance ? " (did you mean '" + best + "'?)" : "";
    }

    private void require(String k) {
        if (values.get(k) == null) throw new ConfigException("'" + k + "' is required (" + KEYS.get(k).help + ")");
    }

    public String str(String k) { return (String) get(k); }
    public int i(String k) { return (Integer) get(k); }
    public double d(String k) { return ((Number) get(k)).doubleValue(); }
    public boolean b(String k) { return (Boolean) get(k); }
    public Integer optInt(String k) { return (Integer) get(k); }
    public Double optDouble(String k) { Object o = get(k); return o == null ? null : ((Number) o).doubleValue(); }
    public Boolean optBool(String k) { return (Boolean) get(k); }

    private Object get(String k) {
        if (!KEYS.containsKey(k)) throw new IllegalArgumentException("no config key " + k);
        return values.get(k);
    }

    /// The typed view of this configuration ([TrainArgs#of]).
    public TrainArgs args() { return TrainArgs.of(this); }

    /// Overrides one value programmatically (validated like a flag).
    public TrainConfig with(String key, Object value) {
        set(key, value == null ? null : String.valueOf(value), "override");
        return this;
    }

    /// Notes about accepted keys that peft4j treats differently (fp16/bf16, ...), for the start-up banner.
    public List<String> notes() { return notes; }

    /// The resolved configuration, every key with its value, as pretty JSON (saved in output_dir).
    public String toJson() {
        try {
            return new ObjectMapper().enable(SerializationFeature.INDENT_OUTPUT).writeValueAsString(values);
        } catch (JsonProcessingException e) {
            throw new IllegalStateException(e);
        }
    }

    /// The keys that differ from their defaults, for the start-up banner.
    public Map<String, Object> changed() {
        Map<String, Object> m = new LinkedHashMap<>();
        for (Key k : KEYS.values()) {
            Object v = values.get(k.name);
            if (v == null ? k.defaultValue != null : !v.equals(k.defaultValue)) m.put(k.name, v);
        }
        return m;
    }

    /// A table of every key for `--help-keys`.
    public static String keyTable() {
        StringBuilder sb = new StringBuilder();
        for (Key k : KEYS.values()) {
            String tag = switch (k.support) { case SUPPORTED -> ""; case IGNORED_WITH_NOTE -> " [accepted, see note]"; case UNSUPPORTED -> " [not supported yet]"; };
            sb.append(String.format("  %-30s %-6s default %-10s %s%s%n", k.name, k.type.name().toLowerCase(), k.defaultValue, k.help, tag));
        }
        return sb.toString();
    }
}
