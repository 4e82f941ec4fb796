package org.peft4j.train;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
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
