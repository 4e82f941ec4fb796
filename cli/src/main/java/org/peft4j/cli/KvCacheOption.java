package org.peft4j.cli;

import org.peft4j.core.DType;
import org.peft4j.core.Peft4jException.ConfigException;
import org.peft4j.model.llama.LlamaModel;
import picocli.CommandLine.Option;

import java.util.Locale;

/// `--kv-cache`: the KV cache's type for the commands that generate (generate, chat, serve).
final class KvCacheOption {
    @Option(names = "--kv-cache", paramLabel = "TYPE", defaultValue = "f32",
            description = "KV cache type: f32 (attention sees the exact keys and values) or f16 (half the memory and half the bytes "
                    + "a decode step reads from it, llama.cpp's default; logits move by float16 rounding) (default: ${DEFAULT-VALUE}).")
    String type;

    /// The type asked for, or a refusal that names the two accepted.
    DType dtype() {
        return switch (type.toLowerCase(Locale.ROOT)) {
            case "f32", "float32" -> DType.F32;
            case "f16", "float16" -> DType.F16;
            default -> throw new ConfigException("--kv-cache " + type + " is not a KV cache type; use f32 (default) or f16");
        };
    }

    /// Sets the type on `model` (the caches its generators make from now on) and returns it.
    LlamaModel apply(LlamaModel model) { return model.kvCacheType(dtype()); }
}
