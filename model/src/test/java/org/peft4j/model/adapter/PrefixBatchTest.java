package org.peft4j.model.adapter;

import org.junit.jupiter.api.Test;
import org.peft4j.core.kernels.ScalarGemm;
import org.peft4j.model.Models;
import org.peft4j.model.generate.GenerateRequest;
import org.peft4j.model.generate.Generator;
import org.peft4j.model.generate.Sampler;
import org.peft4j.model.llama.LlamaModel;
import org.peft4j.testkit.Shared;

import java.net.URISyntaxException;
import java.nio.file.Path;
import java.util.Arrays;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/// Prefix tuning's rows in the serving path: adapters are per-row values, so a prefix row shares a batched forward
/// (and the KV cache, which holds its prefix) with rows of other kinds.
class PrefixBatchTest {
    static Path resource(String name) throws URISyntaxException {
        return Path.of(PrefixBatchTest.class.getResource("/adapters/" + name).toURI());
    }

    /// A prefix row, an unadapted row, a prompt-tuning row, a LoRA row and another prefix row in one generator (one
    /// batched forward, per-row adapters; prefill in chunks of 3, so the prefix spans two chunks) give what each gives
    /// alone.
    @Test
    void prefixRowsBatchWithOtherRows() throws URISyntaxException {
        LlamaModel m = Models.load(Shared.require("models/tinystories-656k"), ScalarGemm.INSTANCE);
        LoadedAdapter a = LoadedAdapter.read("p", resource("prefix-tuning"), m.config);
        LoadedAdapter prompt = LoadedAdapter.read("q", resource("prompt-tuning"), m.config);
        LoadedAdapter lora = LoadedAdapter.of("l", "test", AdapterInferenceTest.randomAdapter(m, AdapterInferenceTest.ALL, 4, false, 0.3, 31), m.config);
        int[][] prompts = {{1, 400, 37, 99}, {1, 12, 1024}, {1, 7, 7, 300, 55, 6}, {1, 9, 44}, {1, 5}};
        LoadedAdapter[] rows = {a, null, prompt, lora, a};
        int R = rows.length;
        int[][] alone = new int[R][];
        for (int i = 0; i < R; i++)
            alone[i] = Generator.generate(m, new GenerateRequest(prompts[i], new Sampler.Greedy(), 0, 5, null, rows[i]), null).tokens();
        Generator g = new Generator(m, R, 32, 3);
        var seqs = new Generator.Sequence[R];
        for (int i = 0; i < R; i++) seqs[i] = g.add(new GenerateRequest(prompts[i], new Sampler.Greedy(), 0, 5, null, rows[i]), null);
        while (g.step()) { }
        for (int i = 0; i < R; i++) assertArrayEquals(alone[i], seqs[i].result().tokens(), "row " + i);
        assertTrue(!Arrays.equals(alone[0], Generator.generate(m, GenerateRequest.greedy(prompts[0], 5), null).tokens()), "the prefix changes the answer");
    }

}
