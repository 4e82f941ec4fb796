package org.peft4j.model;

import org.peft4j.core.Gemm;
import org.peft4j.core.Peft4jException.ConfigException;
import org.peft4j.formats.safetensors.ShardedSafeTensors;
import org.peft4j.model.llama.LlamaModel;
import org.peft4j.model.llama.LlamaWeights;
import org.peft4j.model.llama.TensorSource;

import java.nio.file.Files;
import java.nio.file.Path;

/// Loads a Hugging Face model folder: config.json + model.safetensors, or model.safetensors.index.json + shards.
/// Weights are converted to float32 arrays; the mapping is closed when loading ends.
public final class Models {
    private Models() {}

    /// Config and weights of `dir`, validated against each other.
    public static LlamaWeights loadWeights(Path dir) {
        if (!Files.isDirectory(dir))
            throw new ConfigException(dir + " is not a directory; pass a Hugging Face model folder holding config.json and model.safetensors");
        LlamaConfig config = LlamaConfig.read(dir);
        try (ShardedSafeTensors st = ShardedSafeTensors.open(dir)) {
            return LlamaWeights.load(config, TensorSource.of(st::tensors, st::readFloats), dir.toString());
        }
    }

    /// A runnable model whose matrix products go through `gemm` (e.g. `Gemms.get("auto")`).
    public static LlamaModel load(Path dir, Gemm gemm) {
        return new LlamaModel(loadWeights(dir), gemm);
    }
}
