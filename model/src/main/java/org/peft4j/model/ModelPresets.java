package org.peft4j.model;

import org.peft4j.core.Peft4jException.ConfigException;

import java.util.List;

/// Public configs of models peft4j targets, as literal builders (torchtune style), for random-weight benchmarks and
/// the CLI. Values are those of each model's config.json on the Hugging Face Hub.
public final class ModelPresets {
    private ModelPresets() {}

    public static final List<String> NAMES = List.of("smollm2-135m", "qwen2.5-0.5b", "llama3.2-1b", "llama2-7b");

    /// HuggingFaceTB/SmolLM2-135M(-Instruct).
    public static LlamaConfig smollm2_135m() {
        return new LlamaConfig(new Architecture.Llama(), 576, 1536, 30, 9, 3, 64, 49152, 8192, 1e-5, 100000.0,
                new RopeScaling.None(), true, false, false, 1, List.of(2), 0, 0.041666666666666664, "bfloat16");
    }

    /// Qwen/Qwen2.5-0.5B (sliding_window is in the file but use_sliding_window is false).
    public static LlamaConfig qwen25_05b() {
        return new LlamaConfig(new Architecture.Qwen2(), 896, 4864, 24, 14, 2, 64, 151936, 32768, 1e-6, 1000000.0,
                new RopeScaling.None(), true, false, false, 151643, List.of(151643), 0, 0.02, "bfloat16");
    }

    /// meta-llama/Llama-3.2-1B.
    public static LlamaConfig llama32_1b() {
        return new LlamaConfig(new Architecture.Llama(), 2048, 8192, 16, 32, 8, 64, 128256, 131072, 1e-5, 500000.0,
                new RopeScaling.Llama3(32.0, 1.0, 4.0, 8192), true, false, false, 128000, List.of(128001), 0, 0.02, "bfloat16");
    }

    /// meta-llama/Llama-2-7b-hf.
    public static LlamaConfig llama2_7b() {
        return new LlamaConfig(new Architecture.Llama(), 4096, 11008, 32, 32, 32, 128, 32000, 4096, 1e-5, 10000.0,
                new RopeScaling.None(), false, false, false, 1, List.of(2), 0, 0.02, "float16");
    }

    public static LlamaConfig byName(String name) {
        return switch (name.toLowerCase(java.util.Locale.ROOT)) {
            case "smollm2-135m" -> smollm2_135m();
            case "qwen2.5-0.5b" -> qwen25_05b();
            case "llama3.2-1b" -> llama32_1b();
            case "llama2-7b" -> llama2_7b();
            default -> throw new ConfigException("unknown model preset '" + name + "'; choose one of " + NAMES);
        };
    }
}
