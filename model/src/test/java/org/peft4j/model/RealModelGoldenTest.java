package org.peft4j.model;

import com.fasterxml.jackson.databind.JsonNode;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;
import org.peft4j.core.kernels.ScalarGemm;
import org.peft4j.model.generate.Generator;
import org.peft4j.model.generate.Sampler;
import org.peft4j.model.llama.Activations;
import org.peft4j.model.llama.KvCache;
import org.peft4j.model.llama.LlamaModel;
import org.peft4j.testkit.Shared;

import java.nio.file.Path;
import java.util.Arrays;
import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.peft4j.testkit.Assert.assertClose;
import static org.peft4j.testkit.Assert.maxAbsDiff;

/// The shared real checkpoints against the float64 numpy reference's goldens (shared/models/*/golden): logits of the
/// prompt + 10 generated tokens, and 40 greedy ids, computed by batched prefill then cached one-token decode.
@Tag("slow")
class RealModelGoldenTest {
    /// float32 activations vs float64-accumulated reference over 2-5 layers of width ≤ 384: seen ≤ 2e-5;
    /// numpy builds differ by up to 1e-5 (shared/README.md).
    static final double LOGITS_ATOL = 1e-4;
    /// incremental decode and one full pass do the same float operations except in attention sum lengths
    /// and GEMM blocking: agree to float rounding.
    static final double CACHE_ATOL = 2e-5;

    @ParameterizedTest
    @ValueSource(strings = {"tinystories-656k", "stories260K-hf"})
    void goldenLogitsPrefillThenDecode(String name) {
        Path dir = Shared.require("models/" + name);
        LlamaModel model = Models.load(dir, ScalarGemm.INSTANCE);
        JsonNode greedy = Fixtures.json(dir.resolve("golden/greedy.json"));
        int[] prompt = Fixtures.ints(greedy.get("prompt_ids")), ids = Fixtures.ints(greedy.get("logits_ids"));
        int[] shape = new int[2];
        float[] golden = Fixtures.npy(dir.resolve("golden/logits.npy"), shape);
        int V = model.config.vocabSize(), T = ids.length, P = prompt.length;
        assert shape[0] == T && shape[1] == V;

        KvCache cache = model.newCache(1, T);
        Activations acts = model.newActivations(1, P, cache);
        float[] incremental = new float[T * V];
        float[] prefill = new float[P * V];
        model.forward(prefill, prompt, 1, P, 0, cache, acts, true);
        System.arraycopy(prefill, 0, incremental, 0, P * V);
        float[] last = new float[V];
        for (int t = P; t < T; t++) {
            model.forward(last, new int[]{ids[t]}, 1, 1, t, cache, acts, false);
            System.arraycopy(last, 0, incremental, t * V, V);
        }
        assertClose(name + " prefill+decode logits vs golden", golden, incremental, LOGITS_ATOL, 0);

        float[] full = model.logits(ids);
        assertClose(name + " full-sequence logits vs golden", golden, full, LOGITS_ATOL, 0);
        assertClose(name + " full-sequence vs incremental logits", full, incremental, CACHE_ATOL, 0);
        System.out.printf("%s: max |logits - golden| prefill+decode %.2e, full pass %.2e; full vs incremental %.2e%n", name,
                maxAbsDiff(golden, incremental), maxAbsDiff(golden, full), maxAbsDiff(full, incremental));
    }

    @ParameterizedTest
    @ValueSource(strings = {"tinystories-656k", "stories260K-hf"})
    void greedyIdsMatch(String name) {
        Path dir = Shared.require("models/" + name);
        LlamaModel model = Models.load(dir, ScalarGemm.INSTANCE);
        JsonNode greedy = Fixtures.json(dir.resolve("golden/greedy.json"));
        int[] expected = Fixtures.ints(greedy.get("greedy_new_ids"));
        GenerationConfig gen = GenerationConfig.read(dir, model.config);
        int[] stopIds = gen.eosTokenIds().stream().mapToInt(Integer::intValue).toArray();
        int[] streamed = new int[expected.length];
        int[] n = {0};
        Generator.Result r = Generator.generate(model, new org.peft4j.model.generate.GenerateRequest(Fixtures.ints(greedy.get("prompt_ids")),
                Sampler.of(gen), 0, expected.length, stopIds, null), id -> { streamed[n[0]++] = id; return true; });
        assertArrayEquals(expected, r.tokens(), name + " greedy ids " + Arrays.toString(r.tokens()));
        assertArrayEquals(expected, streamed, "listener saw every token in order");
    }

    /// Sequences other than the goldens', made by reference/make_model_goldens.py with the same numpy reference.
    @ParameterizedTest
    @ValueSource(strings = {"tinystories-656k", "stories260K-hf"})
    void otherSequences(String name) {
        Path dir = Shared.require("models/" + name);
        LlamaModel model = Models.load(dir, ScalarGemm.INSTANCE);
        JsonNode exp = Fixtures.json(Fixtures.resource("real/" + name + ".json"));
        for (int s = 0; s < exp.get("ids").size(); s++) {
            int[] ids = Fixtures.ints(exp.get("ids").get(s));
            assertClose(name + " sequence " + s, Fixtures.floats(exp.get("logits").get(s)), model.logits(ids), LOGITS_ATOL, 0);
        }
    }
}
