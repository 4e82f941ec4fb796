package org.peft4j.train;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.peft4j.core.Peft4jException.ConfigException;

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
    @Test
    void llamaFactoryExampleYamlParses(@TempDir Path dir) throws Exception {
        Path y = dir.resolve("llama3_lora_sft.yaml");
        Files.writeString(y, """
                ### model
                model_name_or_path: models/tinystories-656k
                trust_remote_code: true

                ### method
                stage: sft
                do_train: true
                finetuning_type: lora
                lora_rank: 8
                lora_target: all

                ### dataset
                dataset: identity,alpaca_en_demo
                template: llama3
                cutoff_len: 2048
                max_samples: 1000
                overwrite_cache: true
                preprocessing_num_workers: 16
                dataloader_num_workers: 4

                ### output
                output_dir: saves/llama3-8b/lora/sft
                logging_steps: 10
                save_steps: 500
                plot_loss: true
                overwrite_output_dir: true
                save_only_model: false
                report_to: none  # choices: [none, wandb, tensorboard, swanlab, mlflow]

                ### train
                per_device_train_batch_size: 1
                gradient_accumulation_steps: 8
                learning_rate: 1.0e-4
                num_train_epochs: 3.0
                lr_scheduler_type: cosine
                warmup_ratio: 0.1
                bf16: true
                ddp_timeout: 180000000
                resume_from_checkpoint: null
                """);
        TrainConfig c = TrainConfig.load(y, List.of("--learning_rate", "2e-4"));
        assertEquals("identity,alpaca_en_demo", c.str("dataset"));
        assertEquals(8, c.i("gradient_accumulation_steps"));
        assertEquals(2e-4, c.d("learning_rate"));               // flags override the YAML
        assertEquals(0.1, c.d("warmup_ratio"));
        assertNull(c.str("resume_from_checkpoint"));
        assertTrue(c.notes().stream().anyMatch(n -> n.startsWith("bf16=true")), c.notes().toString());
        assertEquals(16, c.i("lora_rank") * 2);
    }

    @Test
    void unknownKeySuggestsNearest() {
        var e = assertThrows(ConfigException.class, () -> TrainConfig.load(null, flags("--learning_rat", "1e-4")));
        assertTrue(e.getMessage().contains("unknown key 'learning_rat'") && e.getMessage().contains("did you mean 'learning_rate'"), e.getMessage());
    }

    @Test
    void unsupportedKeyIsAnError() {
        var e = assertThrows(ConfigException.class, () -> TrainConfig.load(null, flags("--pissa_init", "true")));
        assertTrue(e.getMessage().contains("does not support yet"), e.getMessage());
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
}
