package org.peft4j.model.adapter.lora;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.peft4j.core.DType;
import org.peft4j.core.Peft4jException.ConfigException;
import org.peft4j.core.Peft4jException.FormatException;
import org.peft4j.formats.safetensors.SafeTensors;

import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;
import java.util.TreeMap;
import java.util.logging.Handler;
import java.util.logging.LogRecord;
import java.util.logging.Logger;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/// PEFT adapter files: write → read bit-exact, config text as Python's json.dumps writes it (golden made by
/// reference/lora_adapter_config.py), tolerant reading of PEFT's configs, clear errors on what cannot be loaded.
class LoraAdapterTest {

    static String resource(String name) throws Exception {
        try (InputStream in = LoraAdapterTest.class.getResourceAsStream("/lora/" + name)) {
            if (in == null) throw new AssertionError("test resource lora/" + name + " is missing");
            return new String(in.readAllBytes(), StandardCharsets.UTF_8);
        }
    }

    /// The config of the golden file: DoRA, rsLoRA, gaussian init, rank/alpha patterns, layers_to_transform.
    static LoraConfig goldenConfig() {
        return new LoraConfig(8, 16, 0.05, List.of("q_proj", "v_proj", "o_proj", "down_proj"), true, true,
                LoraConfig.Init.GAUSSIAN, "none", false, null, Map.of("o_proj", 4), Map.of("o_proj", 32.0, "down_proj", 24.5), List.of(0, 1));
    }

    /// Random weights for 2 layers × targets with hidden 12, intermediate 20, kv 6; o_proj at rank 4 (rank_pattern).
    static Map<PeftAdapter.Target, LoraWeights> randomWeights(LoraConfig c) {
        SplittableRandom rng = new SplittableRandom(17);
        Map<PeftAdapter.Target, LoraWeights> w = new TreeMap<>();
        for (int layer = 0; layer < 2; layer++)
            for (String module : c.targetModules()) {
                PeftAdapter.Target t = new PeftAdapter.Target(layer, module);
                int in = module.equals("down_proj") ? 20 : 12, out = module.equals("v_proj") ? 6 : 12, r = c.rank(t.path());
                w.put(t, new LoraWeights(r, in, out, Fixtures.uniform(rng, r * in, 1), Fixtures.uniform(rng, out * r, 1),
                        c.useDora() ? Fixtures.uniform(rng, out, 3) : null));
            }
        return w;
    }

    @Test
    void configJsonIsWhatPythonJsonDumpsWrites() throws Exception {
        PeftAdapter adapter = new PeftAdapter(goldenConfig(), "HuggingFaceTB/SmolLM2-135M é", null, Map.of());
        assertEquals(resource("expected_adapter_config.json"), adapter.configJson());
    }

    @Test
    void writeThenReadIsBitExact(@TempDir Path dir) throws Exception {
        LoraConfig c = goldenConfig();
        Map<PeftAdapter.Target, LoraWeights> w = randomWeights(c);
        new PeftAdapter(c, "some/base", "main", w).write(dir, DType.F32);
        PeftAdapter back = PeftAdapter.read(dir);
        assertEquals(c, back.config());
        assertEquals("some/base", back.baseModelNameOrPath());
        assertEquals("main", back.revision());
        assertEquals(w.keySet(), back.weights().keySet());
        for (var e : w.entrySet()) {
            LoraWeights x = e.getValue(), y = back.weights().get(e.getKey());
            assertEquals(List.of(x.r(), x.in(), x.out()), List.of(y.r(), y.in(), y.out()), e.getKey().toString());
            assertArrayEquals(x.a(), y.a(), e.getKey() + " A"); // assertArrayEquals on float[] compares bits (floatToIntBits)
            assertArrayEquals(x.b(), y.b(), e.getKey() + " B");
            assertArrayEquals(x.magnitude(), y.magnitude(), e.getKey() + " magnitude");
        }
        assertTrue(Files.list(dir).noneMatch(p -> p.getFileName().toString().contains("tmp")), "temp files left behind");
    }

    @Test
    void bf16WriteRoundsToNearestEvenAndReadsBackExactly(@TempDir Path dir) {
        LoraConfig c = LoraConfig.of(4, List.of("q_proj"));
        Map<PeftAdapter.Target, LoraWeights> w = new TreeMap<>();
        SplittableRandom rng = new SplittableRandom(5);
        w.put(new PeftAdapter.Target(0, "q_proj"), new LoraWeights(4, 8, 8, Fixtures.uniform(rng, 32, 1), Fixtures.uniform(rng, 32, 1), null));
        new PeftAdapter(c, null, null, w).write(dir, DType.BF16);
        LoraWeights orig = w.values().iterator().next(), back = PeftAdapter.read(dir).weights().values().iterator().next();
        for (int i = 0; i < 32; i++)
            assertEquals(DType.bf16ToFloat(DType.floatToBf16(orig.a()[i])), back.a()[i], 0f);
        try (SafeTensors st = SafeTensors.open(dir.resolve(PeftAdapter.WEIGHTS_FILE))) {
            assertEquals(DType.BF16, st.info("base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight").dtype());
        }
    }

    /// A config as PEFT 0.18 writes it (every field, many unused here) plus a key no PEFT has: loads, and the
    /// unknown key is warned about through System.Logger.
    @Test
    void readsPeftConfigTolerantlyAndWarnsAboutUnknownKeys(@TempDir Path dir) throws Exception {
        Path file = dir.resolve(PeftAdapter.CONFIG_FILE);
        Files.writeString(file, resource("peft_0_18_adapter_config.json"));
        List<String> warnings = new ArrayList<>();
        Logger jul = Logger.getLogger(PeftAdapter.class.getName());
        Handler h = new Handler() {
            @Override public void publish(LogRecord r) { warnings.add(java.text.MessageFormat.format(r.getMessage(), r.getParameters())); }
            @Override public void flush() {}
            @Override public void close() {}
        };
        jul.addHandler(h);
        LoraConfig c;
        try { c = PeftAdapter.readConfig(file); } finally { jul.removeHandler(h); }
        assertEquals(16, c.r());
        assertEquals(32.0, c.loraAlpha(), 0);
        assertEquals(0.05, c.loraDropout(), 0);
        assertEquals(List.of("v_proj", "q_proj"), c.targetModules());
        assertEquals(2.0, c.scaling(), 0);
        assertNull(c.layersToTransform());
        assertEquals(1, warnings.size(), warnings.toString());
        assertTrue(warnings.getFirst().contains("future_peft_option") && warnings.getFirst().contains(file.toString()), warnings.getFirst());
    }

    @Test
    void olderConfigWithFewKeysTakesPeftDefaults(@TempDir Path dir) throws Exception {
        Path file = dir.resolve(PeftAdapter.CONFIG_FILE);
        Files.writeString(file, "{\"peft_type\": \"LORA\", \"r\": 4, \"target_modules\": \"all-linear\"}");
        LoraConfig c = PeftAdapter.readConfig(file);
        assertEquals(8.0, c.loraAlpha(), 0); // PEFT's default lora_alpha
        assertEquals(LoraConfig.ALL_LINEAR, c.targetModules());
        assertEquals(LoraConfig.Init.KAIMING_UNIFORM, c.initLoraWeights());
        Files.writeString(file, "{\"peft_type\": \"LORA\", \"r\": 4, \"target_modules\": null, \"init_lora_weights\": false}");
        c = PeftAdapter.readConfig(file);
        assertEquals(List.of("q_proj", "v_proj"), c.targetModules()); // PEFT's llama default
        assertEquals(LoraConfig.Init.NO_INIT, c.initLoraWeights());
    }

    @Test
    void missingRIsAClearErrorNamingFileAndKey(@TempDir Path dir) throws Exception {
        Path file = dir.resolve(PeftAdapter.CONFIG_FILE);
        Files.writeString(file, "{\"peft_type\": \"LORA\", \"lora_alpha\": 16, \"target_modules\": [\"q_proj\"]}");
        String msg = assertThrows(ConfigException.class, () -> PeftAdapter.readConfig(file)).getMessage();
        assertTrue(msg.contains(file.toString()) && msg.contains("'r'"), msg);
        Files.writeString(file, "{\"r\": 8}");
        msg = assertThrows(ConfigException.class, () -> PeftAdapter.readConfig(file)).getMessage();
        assertTrue(msg.contains(file.toString()) && msg.contains("'peft_type'"), msg);
    }

    @Test
    void unsupportedConfigsFailWithTheReason(@TempDir Path dir) throws Exception {
        Path file = dir.resolve(PeftAdapter.CONFIG_FILE);
        Map<String, String> cases = Map.of(
                "\"init_lora_weights\": \"pissa\"", "pissa",
                "\"bias\": \"all\"", "bias = 'all'",
                "\"lora_bias\": true", "lora_bias",
                "\"target_modules\": \".*q_proj\"", "regex",
                "\"r\": \"eight\"", "should be an integer",
                "\"peft_type\": \"IA3\"", "IA3");
        for (var e : cases.entrySet()) {
            String json = "{\"peft_type\": \"LORA\", \"r\": 8, \"target_modules\": [\"q_proj\"], " + e.getKey() + "}";
            Files.writeString(file, json);
            String msg = assertThrows(ConfigException.class, () -> PeftAdapter.readConfig(file), json).getMessage();
            assertTrue(msg.contains(e.getValue()) && msg.contains(file.toString()), msg);
        }
    }

    @Test
    void weightsThatDisagreeWithTheConfigAreRejected(@TempDir Path dir) throws Exception {
        LoraConfig c = LoraConfig.of(4, List.of("q_proj"));
        Map<PeftAdapter.Target, LoraWeights> w = Map.of(new PeftAdapter.Target(0, "q_proj"), LoraWeights.allocate(4, 8, 8, false));
        new PeftAdapter(c, null, null, w).write(dir, DType.F32);
        Files.writeString(dir.resolve(PeftAdapter.CONFIG_FILE), Files.readString(dir.resolve(PeftAdapter.CONFIG_FILE)).replace("\"r\": 4", "\"r\": 8"));
        String msg = assertThrows(FormatException.class, () -> PeftAdapter.read(dir)).getMessage();
        assertTrue(msg.contains("rank 4") && msg.contains("r = 8"), msg);
        assertThrows(ConfigException.class, () -> new PeftAdapter(c, null, null,
                Map.of(new PeftAdapter.Target(0, "q_proj"), LoraWeights.allocate(4, 8, 8, true))), "magnitude without use_dora");
        assertThrows(ConfigException.class, () -> new PeftAdapter.Target(0, "lm_head"));
    }

    @Test
    void foreignTensorsAreNamedInTheError(@TempDir Path dir) {
        LoraConfig c = LoraConfig.of(4, List.of("q_proj"));
        new PeftAdapter(c, null, null, Map.of()).write(dir, DType.F32);
        SafeTensors.write(dir.resolve(PeftAdapter.WEIGHTS_FILE), List.of(
                SafeTensors.Entry.ofFloats("base_model.model.lm_head.weight", new long[]{2, 2}, new float[4], DType.F32)), Map.of("format", "pt"));
        String msg = assertThrows(FormatException.class, () -> PeftAdapter.read(dir)).getMessage();
        assertTrue(msg.contains("base_model.model.lm_head.weight"), msg);
    }
}
