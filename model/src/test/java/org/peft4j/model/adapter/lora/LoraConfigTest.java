package org.peft4j.model.adapter.lora;

import org.junit.jupiter.api.Test;
import org.peft4j.core.Peft4jException.ConfigException;

import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/// LoraConfig: scaling rules (PEFT update_layer), pattern overrides (get_pattern_key), target matching, validation.
class LoraConfigTest {

    static LoraConfig config(int r, double alpha, boolean rslora, Map<String, Integer> ranks, Map<String, Double> alphas) {
        return new LoraConfig(r, alpha, 0.05, List.of("q_proj", "v_proj"), rslora, false, LoraConfig.Init.KAIMING_UNIFORM,
                "none", false, null, ranks, alphas, null);
    }

    @Test
    void scalingIsAlphaOverROrOverSqrtR() {
        assertEquals(16.0 / 8, config(8, 16, false, null, null).scaling(), 0);
        assertEquals(16.0 / Math.sqrt(8), config(8, 16, true, null, null).scaling(), 0);
    }

    @Test
    void llamaFactoryDefaultsAlphaToTwiceR() {
        LoraConfig c = LoraConfig.of(8, List.of("q_proj"));
        assertEquals(16.0, c.loraAlpha(), 0);
        assertEquals(2.0, c.scaling(), 0);
        assertEquals(0.0, c.loraDropout(), 0);
        assertEquals(LoraConfig.Init.KAIMING_UNIFORM, c.initLoraWeights());
        assertEquals("none", c.bias());
    }

    @Test
    void allExpandsToEveryLinearLayerButTheHead() {
        assertEquals(List.of("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"), LoraConfig.expandTargets(List.of("all")));
        assertEquals(LoraConfig.ALL_LINEAR, LoraConfig.expandTargets(List.of("all-linear")));
        assertEquals(List.of("q_proj"), LoraConfig.expandTargets(List.of("q_proj")));
    }

    @Test
    void rankAndAlphaPatternsOverridePerModuleLikePeft() {
        Map<String, Integer> ranks = new LinkedHashMap<>();
        ranks.put("layers.1.self_attn.q_proj", 4); // PEFT regex (.*\.)?(K)$: a dotted suffix …
        ranks.put("v_proj", 2);
        LoraConfig c = config(8, 16, false, ranks, Map.of("q_proj", 32.0));
        assertEquals(4, c.rank("model.layers.1.self_attn.q_proj"));
        assertEquals(8, c.rank("model.layers.11.self_attn.q_proj"), "… anchored at a dot: layers.11 is not layers.1");
        assertEquals(2, c.rank("model.layers.0.self_attn.v_proj"));
        assertEquals(8, c.rank("model.layers.0.self_attn.k_proj"));
        assertEquals(32.0 / 4, c.scaling("model.layers.1.self_attn.q_proj"), 0);
        assertEquals(16.0 / 2, c.scaling("model.layers.3.self_attn.v_proj"), 0);
        assertEquals(32.0 / 8, c.scaling("model.layers.3.self_attn.q_proj"), 0);
    }

    @Test
    void targetsMatchWholeNamesOrDottedSuffixes() {
        LoraConfig c = config(8, 16, false, null, null);
        assertTrue(c.targets("model.layers.0.self_attn.q_proj"));
        assertTrue(c.targets("q_proj"));
        assertFalse(c.targets("model.layers.0.self_attn.qq_proj"));
        assertFalse(c.targets("model.layers.0.self_attn.k_proj"));
    }

    @Test
    void invalidValuesSayWhatAndWhy() {
        assertTrue(assertThrows(ConfigException.class, () -> config(0, 16, false, null, null)).getMessage().contains("r = 0"));
        assertThrows(ConfigException.class, () -> new LoraConfig(8, 16, 1.0, List.of("q_proj"), false, false,
                LoraConfig.Init.KAIMING_UNIFORM, "none", false, null, null, null, null));
        assertTrue(assertThrows(ConfigException.class, () -> new LoraConfig(8, 16, 0, List.of("q_proj"), false, false,
                LoraConfig.Init.KAIMING_UNIFORM, "all", false, null, null, null, null)).getMessage().contains("bias = 'all'"));
        assertThrows(ConfigException.class, () -> new LoraConfig(8, 16, 0, List.of(), false, false,
                LoraConfig.Init.KAIMING_UNIFORM, "none", false, null, null, null, null));
        assertThrows(ConfigException.class, () -> new LoraConfig(8, 16, 0, List.of("q_proj"), false, false,
                LoraConfig.Init.KAIMING_UNIFORM, "none", false, List.of("lm_head"), null, null, null));
    }
}
