package org.peft4j.model;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.peft4j.core.Peft4jException;
import org.peft4j.testkit.Shared;

import java.nio.file.Files;
import java.nio.file.Path;

import static org.junit.jupiter.api.Assertions.*;

/// Absurd sizes in a downloaded config.json are refused with the numbers before anything is allocated from them
/// (issue 17): a weight matrix past 2^31 values, a model far larger than the heap, a size that is no int.
class ResourceLimitsTest {
    static final String BASE = """
            {"model_type": "llama", "hidden_size": 128, "intermediate_size": 384, "num_hidden_layers": 2,
             "num_attention_heads": 8, "num_key_value_heads": 4, "vocab_size": 2048, "tie_word_embeddings": true, %s}""";

    static Peft4jException refused(String extra) {
        return assertThrows(Peft4jException.class, () -> LlamaConfig.fromJson(BASE.formatted(extra), "m/config.json"));
    }

    @Test
    void absurdConfigSizesAreRefusedWithTheNumbers() {
        // hidden_size 10^9 (num_attention_heads x head_dim follow it): 2048 x 10^9 embeddings
        var e = refused("\"head_dim\": 16, \"hidden_size\": 1000000000");
        assertTrue(e.getMessage().startsWith("m/config.json: vocab_size 2048 x hidden_size 1000000000 = 2.05e+12 values in model.embed_tokens.weight"), e.getMessage());
        e = refused("\"intermediate_size\": 100000000");
        assertTrue(e.getMessage().contains("intermediate_size 100000000 x hidden_size 128 = 1.28e+10 values in mlp.gate_proj.weight"), e.getMessage());
        // vocab_size 10^10 is not even an int
        e = refused("\"vocab_size\": 10000000000");
        assertTrue(e.getMessage().contains("'vocab_size' must be an integer, got 10000000000"), e.getMessage());
    }

    @Test
    void aMillionLayersAreRefusedBeforeAllocating(@TempDir Path tmp) throws Exception {
        // every tensor fits, the whole does not: random weights check the total against the heap first
        LlamaConfig c = LlamaConfig.fromJson(BASE.formatted("\"num_hidden_layers\": 1000000"), "m/config.json");
        var e = assertThrows(Peft4jException.class, () -> RandomModels.create(c, 1));
        assertTrue(e.getMessage().contains("196864262272 parameters (1000000 layers) needs 750978 MiB as float32, more than the heap"), e.getMessage());
        // loaded from a file, the layers past the file's are missing tensors, found before they are allocated
        Path model = Files.createDirectories(tmp.resolve("m"));
        Files.writeString(model.resolve("config.json"), BASE.formatted("\"num_hidden_layers\": 1000000"));
        Files.createSymbolicLink(model.resolve("model.safetensors"), Shared.root().resolve("models/tinystories-656k/model.safetensors"));
        var f = assertThrows(Peft4jException.class, () -> Models.loadWeights(model));
        assertTrue(f.getMessage().contains("model.layers.2."), f.getMessage());
    }
}
