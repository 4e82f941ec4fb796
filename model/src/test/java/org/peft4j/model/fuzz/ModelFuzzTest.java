package org.peft4j.model.fuzz;

import com.code_intelligence.jazzer.junit.FuzzTest;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.peft4j.model.LlamaConfig;
import org.peft4j.model.adapter.lora.PeftAdapter;
import org.peft4j.testkit.Fuzz;

import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Arrays;

import static org.junit.jupiter.api.Assertions.assertNotNull;

/// Fuzz targets for what a model or adapter folder from a stranger holds (issue 17): config.json and a PEFT adapter
/// folder (adapter_config.json + adapter_model.safetensors). Contract: [Fuzz#contract]. Each target is a Jazzer
/// `@FuzzTest` (the suite replays `ModelFuzzTestInputs/<target>/`: seeds and kept crashes; `scripts/fuzz.sh` fuzzes
/// coverage-guided) and runs a fixed number of mutated inputs in the suite ([Fuzz#run]).
class ModelFuzzTest {
    static final Path INPUTS = Path.of("src/test/resources/org/peft4j/model/fuzz/ModelFuzzTestInputs");

    /// config.json: a config, or a ConfigException / UnsupportedModelException naming the field.
    @Tag("jazzer")
    @FuzzTest(maxDuration = "60s")
    void config(byte[] data) {
        Fuzz.contract(data, 2_000, d -> assertNotNull(LlamaConfig.fromJson(new String(d, StandardCharsets.UTF_8), "fuzz/config.json")));
    }

    /// An adapter folder: the input is a 4-byte big-endian length L, then L bytes of adapter_config.json, then
    /// adapter_model.safetensors.
    @Tag("jazzer")
    @FuzzTest(maxDuration = "60s")
    void adapter(byte[] data) {
        Fuzz.contract(data, 2_000, d -> {
            Path dir = Files.createTempDirectory("fuzz-adapter");
            try {
                int l = d.length >= 4 ? Math.floorMod(ByteBuffer.wrap(d, 0, 4).getInt(), d.length - 3) : 0;
                byte[] config = Arrays.copyOfRange(d, Math.min(4, d.length), Math.min(4 + l, d.length));
                byte[] weights = Arrays.copyOfRange(d, Math.min(4 + l, d.length), d.length);
                Files.write(dir.resolve("adapter_config.json"), config);
                Files.write(dir.resolve("adapter_model.safetensors"), weights);
                assertNotNull(PeftAdapter.read(dir).weights());
            } finally {
                try (var s = Files.list(dir)) { for (Path p : s.toList()) Files.delete(p); }
                Files.delete(dir);
            }
        });
    }

    @Test
    void configMutated() { Fuzz.run("config", Fuzz.seeds(INPUTS.resolve("config")), 3000, Duration.ofSeconds(5), this::config); }

    @Test
    void adapterMutated() { Fuzz.run("adapter", Fuzz.seeds(INPUTS.resolve("adapter")), 400, Duration.ofSeconds(5), this::adapter); }
}
