package org.peft4j.train;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;
import org.peft4j.core.Peft4jException.ConfigException;
import org.peft4j.testkit.Shared;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;

import static org.junit.jupiter.api.Assertions.*;

class TrainConfigTest {
    static final List<String> REQUIRED = List.of("--model_name_or_path", "m", "--output_dir", "o", "--dataset", "identity");

    static List<String> flags(String... more) {
        var l = new java.util.ArrayList<>(REQUIRED);
        l.addAll(List.of(more));
        return l;
    }

    /// LLaMA-Factory's examples/train_lora/llama3_lora_sft.yaml (as published, model path swapped) parses unchanged.
    /// training_args.json, the resolved config a run saves, is itself a config: loading it gives the same config back
    /// (its unset alias evaluation_strategy: null leaves eval_strategy as saved).
    @Test
    void savedTrainingArgsReloadAsTheSameConfig(@TempDir Path dir) throws Exception {
        TrainConfig c = TrainConfig.load(null, List.of("--model_name_or_path", "m", "--dataset", "identity_en", "--output_dir", "o",
                "--stage", "kto", "--eval_strategy", "steps", "--val_size", "0.1", "--learning_rate", "2e-4"));
        Path json = dir.resolve("training_args.json");
        Files.writeString(json, c.toJson());
        TrainConfig again = TrainConfig.load(json, List.of());
        assertEquals(c.toJson(), again.toJson());
        assertEquals("steps", again.str("eval_strategy"));
    }

    @Test
    void llamaFactoryExampleYamlParses(@TempDir Path dir) throws Exception {
        Path y = dir.resolve("llama3_lora_sft.yaml");
        Files.writeString(y, Shared.llamaFactoryExample("llama3_lora_sft.yaml", Path.of("models/tinystories-656k")));
        TrainConfig c = TrainConfig.load(y, List.of("--learning_rate", "2e-4"));
        assertEquals("identity,alpaca_en_demo", c.str("dataset"));
        assertEquals(8, c.i("gradient_accumulation_steps"));
        assertEquals(2e-4, c.d("learning_rate"));               // flags override the YAML
        assertEquals(0.1, c.d("warmup_ratio"));
        assertNull(c.str("resume_from_checkpoint"));
        assertTrue(c.notes().stream().anyMatch(n -> n.startsWith("bf16=true")), c.notes().toString());
        assertEquals(8, c.i("lora_rank"));
    }

    @Test
    void unknownKeySuggestsNearest() {
        var e = assertThrows(ConfigException.class, () -> TrainConfig.load(null, flags("--learning_rat", "1e-4")));
        assertTrue(e.getMessage().contains("unknown key 'learning_rat'") && e.getMessage().contains("did you mean 'learning_rate'"), e.getMessage());
    }

    @Test
    void unsupportedKeyIsAnError() {
        var e = assertThrows(ConfigException.class, () -> TrainConfig.load(null, flags("--additional_target", "lm_head")));
        assertTrue(e.getMessage().contains("does not support yet"), e.getMessage());
    }

    /// shift_attn trains sft and pt; the preference and reward stages, and virtual-token methods, are refused by name.
    @Test
    void shiftAttnRefusesStagesAndMethodsItDoesNotTrain() {
        for (String stage : List.of("dpo", "kto", "rm")) {
            var e = assertThrows(ConfigException.class, () -> TrainConfig.load(null, flags("--shift_attn", "true", "--stage", stage)));
            assertTrue(e.getMessage().contains("shift_attn") && e.getMessage().contains(stage), e.getMessage());
        }
        var e = assertThrows(ConfigException.class, () -> TrainConfig.load(null, flags("--shift_attn", "true", "--finetuning_type", "prompt")));
        assertTrue(e.getMessage().contains("shift_attn") && e.getMessage().contains("prompt"), e.getMessage());
        assertTrue(TrainConfig.load(null, flags("--shift_attn", "true", "--stage", "pt")).b("shift_attn"));
    }

    @Test
    void badValuesAndMissingKeys() {
        var e = assertThrows(ConfigException.class, () -> TrainConfig.load(null, flags("--lora_rank", "eight")));
        assertTrue(e.getMessage().contains("'lora_rank' must be an integer, got 'eight'"), e.getMessage());
        e = assertThrows(ConfigException.class, () -> TrainConfig.load(null, List.of("--output_dir", "o", "--dataset", "x")));
        assertTrue(e.getMessage().contains("'model_name_or_path' is required"), e.getMessage());
        e = assertThrows(ConfigException.class, () -> TrainConfig.load(null, flags("--stage", "ppo")));
        assertTrue(e.getMessage().contains("stage 'ppo'"), e.getMessage());
    }

    @Test
    void malformedYamlPointsAtTheLine(@TempDir Path dir) throws Exception {
        Path y = dir.resolve("bad.yaml");
        Files.writeString(y, "model_name_or_path: m\noutput_dir: o\ndataset: [unclosed\nlora_rank: 8\n");
        var e = assertThrows(ConfigException.class, () -> TrainConfig.load(y, List.of()));
        assertTrue(e.getMessage().matches("(?s).*bad\\.yaml:\\d+:\\d+: malformed YAML.*"), e.getMessage());
    }

    @Test
    void editDistance() {
        assertEquals(3, TrainConfig.editDistance("kitten", "sitting"));
        assertEquals(0, TrainConfig.editDistance("", ""));
        assertEquals("", TrainConfig.suggestion("zzzzzzzzzzzzzzzzzzzzzzzz"));
    }

    /// LLaMA-Factory's runtime keys whose result is the same in one process are accepted with a note and change
    /// nothing peft4j computes (the typed arguments are equal to a run without them).
    @Test
    void runtimeKeysAreAcceptedWithANoteAndChangeNothing() {
        TrainArgs plain = TrainConfig.load(null, flags()).args();
        List<String> keys = List.of("--deepspeed", "examples/deepspeed/ds_z3_config.json", "--pure_bf16", "true", "--ddp_timeout", "180000000",
                "--tokenized_path", "saves/x/dataset", "--preprocessing_num_workers", "16", "--dataloader_num_workers", "4",
                "--report_to", "wandb", "--quantization_method", "bnb", "--ray_num_workers", "1", "--fsdp", "full_shard auto_wrap",
                "--disable_gradient_checkpointing", "true", "--use_reentrant_gc", "false", "--enable_liger_kernel", "true",
                "--image_max_pixels", "262144", "--temperature", "0.95", "--export_dir", "x");
        TrainConfig c = TrainConfig.load(null, flags(keys.toArray(String[]::new)));
        assertEquals(plain, c.args());
        for (String k : List.of("deepspeed", "pure_bf16", "tokenized_path", "report_to", "fsdp", "enable_liger_kernel", "image_max_pixels"))
            assertTrue(c.notes().stream().anyMatch(n -> n.startsWith(k + "=")), k + ": " + c.notes());
        assertTrue(c.notes().stream().noneMatch(n -> n.startsWith("quantization_method=") || n.startsWith("ray_num_workers=")),
                "defaults need no note: " + c.notes());
        assertTrue(TrainConfig.keyTable().contains("deepspeed") && TrainConfig.keyTable().contains("use_galore"), "--help-keys lists them");
    }

    /// quantization_method bnb is what peft4j does; other methods are refused, saying why. Ray workers become
    /// gradient accumulation (the same examples per optimizer step), with a note.
    @Test
    void quantizationMethodAndRayWorkers() {
        assertEquals(4, TrainConfig.load(null, flags("--quantization_bit", "4", "--quantization_method", "bnb")).args().model().quantizationBit());
        var e = assertThrows(ConfigException.class, () -> TrainConfig.load(null, flags("--quantization_bit", "4", "--quantization_method", "hqq")));
        assertTrue(e.getMessage().contains("quantization_method 'hqq'") && e.getMessage().contains("quantization_method: bnb"), e.getMessage());
        TrainConfig ray = TrainConfig.load(null, flags("--ray_num_workers", "4", "--gradient_accumulation_steps", "2"));
        assertEquals(8, ray.args().training().gradientAccumulationSteps(), "4 workers' batches per step");
        assertTrue(ray.notes().stream().anyMatch(n -> n.startsWith("ray_num_workers=4")), ray.notes().toString());
    }

    /// LLaMA-Factory's keys peft4j has not built are refused as LLaMA-Factory keys with what they are, never called
    /// unknown with a look-alike suggested; false/null values and the default of a strategy key pass.
    @Test
    void llamaFactoryKeysNotBuiltAreNamedAsSuch() {
        for (String[] kv : List.of(new String[]{"kt_weight_path", "/x", "int8"}, new String[]{"use_packed_sequences", "true", "neat_packing"},
                new String[]{"save_strategy", "epoch", "steps"})) {
            var e = assertThrows(ConfigException.class, () -> TrainConfig.load(null, flags("--" + kv[0], kv[1])), kv[0]);
            assertTrue(e.getMessage().contains("'" + kv[0] + "' is a LLaMA-Factory key that peft4j does not support yet")
                    && e.getMessage().contains(kv[2]) && !e.getMessage().contains("did you mean"), e.getMessage());
        }
        assertDoesNotThrow(() -> TrainConfig.load(null, flags("--use_galore", "false", "--save_strategy", "steps", "--fp8", "null")));
    }

    /// finetuning_type oft builds PEFT's OFTConfig as LLaMA-Factory fills it; bad OFT settings are refused by key.
    @Test
    void oftKeys() {
        var m = TrainConfig.load(null, flags("--finetuning_type", "oft")).args().finetuning().method();
        var oc = assertInstanceOf(org.peft4j.train.engine.Method.Oft.class, m).config();
        assertEquals(0, oc.r());
        assertEquals(32, oc.blockSize());
        assertEquals(org.peft4j.model.llama.Projection.MODULE_NAMES, oc.targetModules());
        var e = assertThrows(ConfigException.class, () -> TrainConfig.load(null, flags("--finetuning_type", "oft", "--oft_rank", "4")));
        assertTrue(e.getMessage().contains("oft_rank") && e.getMessage().contains("oft_block_size"), e.getMessage());
        e = assertThrows(ConfigException.class, () -> TrainConfig.load(null, flags("--finetuning_type", "oft", "--oft_target", "q_proj,c_attn")));
        assertTrue(e.getMessage().contains("oft_target 'c_attn'"), e.getMessage());
        e = assertThrows(ConfigException.class, () -> TrainConfig.load(null, flags("--finetuning_type", "oft", "--module_dropout", "0.1")));
        assertTrue(e.getMessage().contains("module_dropout"), e.getMessage());
        var q = TrainConfig.load(null, flags("--finetuning_type", "oft", "--quantization_bit", "4"));
        assertTrue(q.notes().stream().anyMatch(n -> n.contains("QOFT")), q.notes().toString());
    }

    /// finetuning_type prefix (PEFT's PrefixTuningConfig): num_virtual_tokens required, the MLP's keys only where they
    /// take effect, stages sft and pt only.
    @ParameterizedTest
    @CsvSource(delimiter = '|', value = {
            "--finetuning_type prefix                                              | finetuning_type prefix needs num_virtual_tokens",
            "--finetuning_type prefix --num_virtual_tokens 4 --encoder_hidden_size 32 | encoder_hidden_size 32 is the width of prefix tuning's MLP",
            "--prefix_projection true                                              | prefix_projection configures finetuning_type prefix",
            "--encoder_hidden_size 32                                              | encoder_hidden_size configures the prompt encoder",
            "--finetuning_type prefix --num_virtual_tokens 0                       | num_virtual_tokens must be >= 1",
            "--finetuning_type prefix --num_virtual_tokens 4 --stage pt --prefix_projection true --encoder_hidden_size 0 | encoder_hidden_size must be >= 1"})
    void prefixRefusals(String args, String message) {
        var e = assertThrows(ConfigException.class, () -> TrainConfig.load(null, flags(args.trim().split("\\s+"))));
        assertTrue(e.getMessage().contains(message), e.getMessage());
    }

    @org.junit.jupiter.api.Test
    void prefixKeysMakeThePeftConfig() {
        var c = TrainConfig.load(null, flags("--finetuning_type", "prefix", "--num_virtual_tokens", "8", "--prefix_projection", "true", "--encoder_hidden_size", "32"));
        assertEquals(new org.peft4j.train.engine.Method.Prefix(8, true, 32), TrainArgs.of(c).finetuning().method());
        c = TrainConfig.load(null, flags("--finetuning_type", "prefix", "--num_virtual_tokens", "8"));
        assertEquals(new org.peft4j.train.engine.Method.Prefix(8, false, null), TrainArgs.of(c).finetuning().method());
    }

    /// The memory-saving optimizers: one at a time, each replacing optim, refused where LLaMA-Factory refuses them
    /// or where peft4j has not built the variant, with the key and what to do.
    @ParameterizedTest
    @CsvSource(delimiter = '|', value = {
            "--use_galore true --use_muon true                                  | use_galore and use_muon each choose the optimizer",
            "--use_adam_mini true --optim adamw_8bit                            | optim adamw_8bit cannot take effect",
            "--use_muon true --loraplus_lr_ratio 16                             | use_muon and loraplus_lr_ratio",
            "--use_galore true                                                  | use_galore projects full-weight gradients and cannot be used with LoRA",
            "--use_apollo true                                                  | use_apollo scales full-weight gradients and cannot be used with LoRA",
            "--use_galore true --finetuning_type full --galore_layerwise true --gradient_accumulation_steps 2 | galore_layerwise",
            "--use_galore true --finetuning_type full --galore_target qkv       | galore_target 'qkv'",
            "--use_galore true --finetuning_type full --galore_proj_type left   | galore_proj_type 'left' is not built yet",
            "--use_apollo true --finetuning_type full --apollo_scale_type row   | apollo_scale_type must be channel or tensor",
            "--use_badam true --finetuning_type full --badam_mode ratio         | badam_mode 'ratio' is not built yet",
            "--use_badam true --finetuning_type full --badam_switch_mode spiral | badam_switch_mode 'spiral'",
            "--use_llama_pro true                                               | use_llama_pro trains the expanded blocks by freeze tuning"})
    void memorySavingOptimizerRefusals(String args, String message) {
        var e = assertThrows(ConfigException.class, () -> TrainConfig.load(null, flags(args.trim().split("\\s+"))));
        assertTrue(e.getMessage().contains(message), e.getMessage());
    }

    /// P-tuning's keys: PEFT's required num_virtual_tokens, settings PEFT ignores or peft4j does not build, and the
    /// encoder keys outside finetuning_type ptuning (encoder_hidden_size is also prefix tuning's), each refused naming the key.
    @ParameterizedTest
    @CsvSource(delimiter = '|', value = {
            "--finetuning_type ptuning                                                     | finetuning_type ptuning needs num_virtual_tokens",
            "--finetuning_type p_tuning                                                    | set finetuning_type: ptuning",
            "--finetuning_type ptuning --num_virtual_tokens 8 --encoder_num_layers 3       | encoder_num_layers 3 has no effect with encoder_reparameterization_type MLP",
            "--finetuning_type ptuning --num_virtual_tokens 8 --encoder_dropout 0.1        | encoder_dropout 0.1 is not supported",
            "--finetuning_type ptuning --num_virtual_tokens 8 --encoder_reparameterization_type GRU | encoder_reparameterization_type 'GRU'",
            "--finetuning_type ptuning --num_virtual_tokens 8 --stage rm                   | finetuning_type ptuning with stage rm is not supported",
            "--encoder_reparameterization_type LSTM                                        | encoder_reparameterization_type configures finetuning_type ptuning",
            "--encoder_hidden_size 64                                                      | encoder_hidden_size configures the prompt encoder of finetuning_type prefix (with prefix_projection) or ptuning"})
    void ptuningRefusals(String args, String message) {
        var e = assertThrows(ConfigException.class, () -> TrainConfig.load(null, flags(args.trim().split("\\s+"))));
        assertTrue(e.getMessage().contains(message), e.getMessage());
    }

    /// LLaMA-Factory's distributed-runtime keys (FP8 mixed precision, Megatron-Core / Bridge parallel degrees,
    /// KTransformers' placement) are accepted with a note saying what peft4j computes instead, as bf16 and deepspeed
    /// are; where the result would differ (experts quantized by kt_config, converted KT weights, Megatron's packed
    /// sequences, free-form engine arguments) the key is refused naming why.
    @Test
    void runtimeKeysAreNotedWhereTheResultIsTheSame() {
        TrainConfig c = TrainConfig.load(null, flags("--fp8", "true", "--fp8_backend", "torchao", "--tensor_model_parallel_size", "4",
                "--pipeline_model_parallel_size", "2", "--use_distributed_optimizer", "true", "--recompute_granularity", "full",
                "--mixed_precision", "bf16_mixed", "--use_mca", "true", "--use_kt", "true", "--kt_cpu_activation", "retain",
                "--kt_config", "{\"kt_expert_weight_format\":\"bf16\",\"kt_num_threads\":96}"));
        for (String k : List.of("fp8", "fp8_backend", "tensor_model_parallel_size", "pipeline_model_parallel_size", "use_distributed_optimizer",
                "recompute_granularity", "mixed_precision", "use_mca", "use_kt", "kt_cpu_activation", "kt_config"))
            assertTrue(c.notes().stream().anyMatch(n -> n.startsWith(k + "=")), k + " has a note: " + c.notes());
        assertTrue(c.notes().stream().anyMatch(n -> n.startsWith("fp8=") && n.contains("float32")), c.notes().toString());
        var e = assertThrows(ConfigException.class, () -> TrainConfig.load(null, flags("--use_kt", "true", "--kt_config", "{\"kt_expert_weight_format\":\"int8\"}")));
        assertTrue(e.getMessage().contains("kt_expert_weight_format 'int8'"), e.getMessage());
        e = assertThrows(ConfigException.class, () -> TrainConfig.load(null, flags("--megatron_bridge_args", "{\"a\":1}")));
        assertTrue(e.getMessage().contains("megatron_bridge_args"), e.getMessage());
    }

    /// do_predict as LLaMA-Factory accepts it: with predict_with_generate, stage sft, over eval_dataset, not while
    /// training (do_train unset means predicting only, LLaMA-Factory's default); the rest is refused naming the key.
    /// DFT/EAFT belong to the token losses of sft/pt.
    @Test
    void predictAndLossVariantsAreCheckedUpFront() {
        TrainConfig c = TrainConfig.load(null, List.of("--model_name_or_path", "m", "--output_dir", "o", "--do_predict", "true",
                "--predict_with_generate", "true", "--eval_dataset", "identity", "--num_beams", "1"));
        assertFalse(c.b("do_train"), "do_predict without do_train only predicts");
        // ASFT: full/freeze tuning read a frozen copy of the model; LoRA needs ref_model (LLaMA-Factory makes none for it)
        assertTrue(TrainConfig.load(null, flags("--use_asft_loss", "true", "--finetuning_type", "full")).args().preference().needsReference("sft"));
        assertTrue(TrainConfig.load(null, flags("--use_asft_loss", "true", "--ref_model", "r")).args().preference().needsReference("sft"));
        assertFalse(TrainConfig.load(null, flags("--use_dft_loss", "true")).args().preference().needsReference("sft"));
        assertTrue(c.notes().stream().anyMatch(n -> n.startsWith("do_predict")), c.notes().toString());
        for (String[] bad : new String[][] {
                {"do_predict", "--do_predict", "true", "--eval_dataset", "identity"},
                {"while training", "--do_predict", "true", "--predict_with_generate", "true", "--eval_dataset", "identity", "--do_train", "true"},
                {"while training", "--predict_with_generate", "true", "--do_train", "true"},
                {"stage sft", "--do_predict", "true", "--predict_with_generate", "true", "--eval_dataset", "identity", "--stage", "dpo"},
                {"eval_dataset", "--do_predict", "true", "--predict_with_generate", "true"},
                {"num_beams", "--do_predict", "true", "--predict_with_generate", "true", "--eval_dataset", "identity", "--num_beams", "4"},
                {"top_p", "--do_predict", "true", "--predict_with_generate", "true", "--eval_dataset", "identity", "--top_p", "0"},
                {"use_dft_loss", "--use_dft_loss", "true", "--stage", "dpo"},
                {"use_asft_loss", "--use_asft_loss", "true", "--stage", "pt"},
                {"ref_model", "--use_asft_loss", "true"},
                {"use_dft_loss", "--use_asft_loss", "true", "--use_dft_loss", "true", "--finetuning_type", "full"},
                {"asft_alpha", "--use_asft_loss", "true", "--finetuning_type", "full", "--asft_alpha", "-1"}}) {
            var e = assertThrows(ConfigException.class, () -> TrainConfig.load(null, flags(java.util.Arrays.copyOfRange(bad, 1, bad.length))), bad[0]);
            assertTrue(e.getMessage().contains(bad[0]), bad[0] + ": " + e.getMessage());
        }
    }

    /// Plain input errors found by trying the CLI as a new user: each is a ConfigException naming the key and the
    /// accepted range, never a failure deep in training (issue 17, items 2, 3, 4, 5 and 8).
    @ParameterizedTest
    @CsvSource(delimiter = '|', value = {
            "--learning_rate NaN               | 'learning_rate' must be a finite number, got 'NaN'",
            "--learning_rate Infinity          | 'learning_rate' must be a finite number",
            "--lora_dropout -Infinity          | 'lora_dropout' must be a finite number",
            "--max_steps Infinity              | 'max_steps' must be an integer",
            "--adam_beta1 1.5                  | adam_beta1 must be in [0, 1), got 1.5",
            "--adam_beta2 -0.1                 | adam_beta2 must be in [0, 1)",
            "--weight_decay -0.5               | weight_decay must be >= 0, got -0.5",
            "--lr_scheduler_type cosinee       | lr_scheduler_type 'cosinee' is not known (did you mean 'cosine'?)",
            "--threads 0                       | threads must be >= 1, got 0",
            "--max_steps -1 --num_train_epochs -2 | num_train_epochs must be > 0 when max_steps is unset",
            "--num_train_epochs 0              | num_train_epochs must be > 0 when max_steps is unset",
            "--max_samples -1                  | max_samples must be >= 1, got -1",
            "--save_total_limit -1             | save_total_limit must be >= 0 (0 or none keeps every checkpoint), got -1",
            "--warmup_ratio 2                  | warmup_ratio must be in [0, 1]",
            "--val_size -1                     | val_size must be >= 0, got -1.0",
            "--eval_steps 0                    | eval_steps must be >= 1, got 0",
            "--save_steps -3                   | save_steps must be >= 0 (0 = never), got -3",
    })
    void badValuesAreRefusedWithTheKeyAndTheRange(String given, String expected) {
        var e = assertThrows(ConfigException.class, () -> TrainConfig.load(null, flags(given.strip().split(" +"))));
        assertTrue(e.getMessage().contains(expected.strip()), e.getMessage());
    }

    @Test
    void anEmptyOutputDirIsRefused() {
        var e = assertThrows(ConfigException.class, () -> TrainConfig.load(null, List.of("--model_name_or_path", "m", "--dataset", "identity", "--output_dir", "")));
        assertTrue(e.getMessage().startsWith("output_dir is empty"), e.getMessage());
    }

    /// save_total_limit as transformers: 0 or none keeps every checkpoint.
    @Test
    void saveTotalLimitNoneAndZeroMeanNoLimit() {
        assertNull(TrainConfig.load(null, flags("--save_total_limit", "none")).optInt("save_total_limit"));
        assertEquals(0, TrainConfig.load(null, flags("--save_total_limit", "0")).i("save_total_limit"));
    }

    /// A key given twice in a YAML (last would silently win) and eval_strategy with its old alias are errors (item 8).
    @Test
    void duplicateKeysAndAliasTogetherAreRefused(@TempDir Path dir) throws Exception {
        Path y = Files.writeString(dir.resolve("dup.yaml"), "model_name_or_path: m\noutput_dir: o\ndataset: identity\nlearning_rate: 1e-4\nlearning_rate: 1e-3\n");
        var e = assertThrows(ConfigException.class, () -> TrainConfig.load(y, List.of()));
        assertTrue(e.getMessage().startsWith(y + ":5:") && e.getMessage().contains("key 'learning_rate' is given twice"), e.getMessage());
        e = assertThrows(ConfigException.class, () -> TrainConfig.load(null, flags("--eval_strategy", "steps", "--evaluation_strategy", "no")));
        assertTrue(e.getMessage().contains("both given"), e.getMessage());
        assertEquals("steps", TrainConfig.load(null, flags("--evaluation_strategy", "steps")).str("eval_strategy"));
    }
}
