package org.peft4j.model;

import com.fasterxml.jackson.databind.JsonNode;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;
import org.peft4j.core.kernels.ScalarGemm;
import org.peft4j.model.llama.Activations;
import org.peft4j.model.llama.KvCache;
import org.peft4j.model.llama.LlamaModel;

import java.nio.file.Path;

import static org.peft4j.testkit.Assert.assertClose;

/// Tiny random checkpoints written by reference/make_model_goldens.py (Qwen2 biases + GQA + head_dim ≠ C/NH,
/// llama3 and linear rope scaling, Mistral, F16/BF16/F32 storage, untied and lm_head-only tied) against the numpy
/// reference's logits, both in one pass and as prefill + cached decode.
class TinyModelGoldenTest {
    /// unit-scale random weights give logits of magnitude ~10 after 1-3 layers; float32 vs float64 accumulation: ~1e-5.
    static final double ATOL = 1e-4, RTOL = 1e-5;

    @ParameterizedTest
    @ValueSource(strings = {"qwen2-tiny", "llama3-rope-tiny", "linear-rope-tiny", "mistral-tiny"})
    void logitsMatchReference(String name) {
        Path dir = Fixtures.resource(name);
        LlamaModel model = Models.load(dir, ScalarGemm.INSTANCE);
        JsonNode exp = Fixtures.json(dir.resolve("expected.json"));
        int V = model.config.vocabSize();
        for (int s = 0; s < exp.get("ids").size(); s++) {
            int[] ids = Fixtures.ints(exp.get("ids").get(s));
            float[] expected = Fixtures.floats(exp.get("logits").get(s));
            assertClose(name + " seq " + s + " full pass", expected, model.logits(ids), ATOL, RTOL);

            int T = ids.length, P = (T + 1) / 2;
            KvCache cache = model.newCache(1, T);
            Activations acts = model.newActivations(1, P, cache);
            float[] got = new float[T * V], row = new float[V];
            float[] prefill = new float[P * V];
            model.forward(prefill, java.util.Arrays.copyOf(ids, P), 1, P, 0, cache, acts, true);
            System.arraycopy(prefill, 0, got, 0, P * V);
            for (int t = P; t < T; t++) {
                model.forward(row, new int[]{ids[t]}, 1, 1, t, cache, acts, false);
                System.arraycopy(row, 0, got, t * V, V);
            }
            assertClose(name + " seq " + s + " prefill " + P + " + decode", expected, got, ATOL, RTOL);
            System.out.printf("%s seq %d: max |logits - reference| %.2e (prefill + decode)%n", name, s, org.peft4j.testkit.Assert.maxAbsDiff(expected, got));
        }
    }

    /// Two rows in one batch give the same logits as each row alone.
    @ParameterizedTest
    @ValueSource(strings = {"qwen2-tiny"})
    void batchRowsAreIndependent(String name) {
        LlamaModel model = Models.load(Fixtures.resource(name), ScalarGemm.INSTANCE);
        int V = model.config.vocabSize(), T = 5;
        int[] a = {3, 17, 42, 8, 90}, b = {60, 1, 1, 77, 5};
        int[] both = new int[2 * T];
        System.arraycopy(a, 0, both, 0, T);
        System.arraycopy(b, 0, both, T, T);
        KvCache cache = model.newCache(2, T + 1);
        Activations acts = model.newActivations(2, T, cache);
        float[] out = new float[2 * V];
        model.forward(out, both, 2, T, 0, cache, acts, false);
        float[] la = model.logits(a), lb = model.logits(b);
        assertClose("row 0", java.util.Arrays.copyOfRange(la, (T - 1) * V, T * V), java.util.Arrays.copyOfRange(out, 0, V), 1e-5, 0);
        assertClose("row 1", java.util.Arrays.copyOfRange(lb, (T - 1) * V, T * V), java.util.Arrays.copyOfRange(out, V, 2 * V), 1e-5, 0);
    }
}
