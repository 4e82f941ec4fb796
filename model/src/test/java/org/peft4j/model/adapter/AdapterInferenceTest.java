package org.peft4j.model.adapter;

import org.peft4j.model.llama.Projection;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;
import org.peft4j.core.DType;
import org.peft4j.core.Peft4jException.ConfigException;
import org.peft4j.core.kernels.ScalarGemm;
import org.peft4j.model.LlamaConfig;
import org.peft4j.model.Models;
import org.peft4j.model.llama.Activations;
import org.peft4j.model.llama.KvCache;
import org.peft4j.model.llama.LayerTensor;
import org.peft4j.model.llama.LlamaModel;
import org.peft4j.model.llama.LlamaWeights;
import org.peft4j.model.adapter.lora.LoraConfig;
import org.peft4j.model.adapter.lora.LoraWeights;
import org.peft4j.model.adapter.lora.PeftAdapter;
import org.peft4j.testkit.Shared;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;
import java.util.TreeMap;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.peft4j.testkit.Assert.assertClose;
import static org.peft4j.testkit.Assert.maxAbsDiff;

/// Adapters at inference on the shared real checkpoints, with random non-zero A and B written by PeftAdapter.write
/// and loaded through LlamaModel: PEFT's invariants (B = 0 is the base, merged = unmerged, unmerge restores),
/// switching without reloading, and the adapted forward against the base forward over weights merged here in double.
@Tag("slow")
class AdapterInferenceTest {
    /// Float noise floor of these logits (|logit| ≤ 18): moving half the projection weights by ±1 ulp moves the
    /// logits by 1.1e-5 (measured on both models), so 1e-5 absolute cannot hold for anything that rounds merged weights.
    /// Merged rounds every W0 + s·B·A once (that floor) and the unmerged path sums x·W0ᵀ and s·(x·Aᵀ)·Bᵀ in another
    /// order on top: seen ≤ 3.4e-5 (LoRA) and ≤ 1.9e-5 (DoRA) with B ~ U(±0.2), ≤ 1.5e-5 with B ~ U(±0.02).
    static final double MERGE_ATOL = 5e-5;
    /// unmerge subtracts the same float s·B·A that merge added, so each weight comes back within an ulp: the floor
    /// above; seen ≤ 1.3e-5.
    static final double UNMERGE_ATOL = 3e-5;
    /// float32 forward vs weights merged in double: the merged weights agree to float rounding, the rest is the
    /// forward's own float32 error, which RealModelGoldenTest bounds by 1e-4 against a float64 reference.
    static final double DOUBLE_MERGE_ATOL = 1e-4;
    /// Prefill + decode vs one full pass do the same float operations but for attention sum lengths, GEMM blocking and
    /// the softmax exp (the prefill's scalar path uses Math.exp, the decode step the vectorized Exp, ≤ 2 ulp): with
    /// logits up to ~18 that is a few 1e-5.
    static final double CACHE_ATOL = 5e-5;
    /// An adapter must move the logits by at least this much, or the comparisons above prove nothing.
    static final double VISIBLE = 0.05;

    static final List<String> ALL = LoraConfig.ALL_LINEAR;

    @TempDir Path tmp;

    static LlamaModel model(String name) {
        return Models.load(Shared.require("models/" + name), ScalarGemm.INSTANCE);
    }

    static int[] tokens(LlamaConfig c, int T, long seed) {
        SplittableRandom rng = new SplittableRandom(seed);
        int[] ids = new int[T];
        for (int i = 0; i < T; i++) ids[i] = rng.nextInt(c.vocabSize());
        return ids;
    }

    /// The base weight a PEFT module name adapts, found by its HF tensor name (not through Projection).
    static float[] baseWeight(LlamaWeights w, int layer, String module) {
        for (LayerTensor t : LayerTensor.values())
            if (t.suffix.endsWith("." + module + ".weight")) return w.layers.get(layer).get(t);
        throw new AssertionError(module);
    }

    /// A random adapter with the shapes of `c` for `layers` layers: A ~ U(±1/√in), B ~ U(±bBound), and for DoRA a
    /// magnitude of ‖W0‖ per row times U(0.8, 1.2), so every DoRA factor differs from 1.
    static PeftAdapter randomAdapter(LlamaModel base, LlamaConfig c, int layers, List<String> targets, int r, double alpha,
                                     boolean dora, double bBound, long seed) {
        LoraConfig config = new LoraConfig(r, alpha, 0.0, targets, false, dora, LoraConfig.Init.NO_INIT, "none", false,
                null, Map.of(), Map.of(), null);
        SplittableRandom rng = new SplittableRandom(seed);
        Map<PeftAdapter.Target, LoraWeights> w = new TreeMap<>();
        for (int l = 0; l < layers; l++)
            for (String module : targets) {
                long[] shape = LayerTensor.valueOf(module.toUpperCase()).shape(c);   // (out, in)
                int out = (int) shape[0], in = (int) shape[1];
                float[] a = uniform(rng, r * in, 1 / Math.sqrt(in)), b = uniform(rng, out * r, bBound);
                float[] m = null;
                if (dora) {
                    float[] w0 = baseWeight(base.weights, l, module);
                    m = new float[out];
                    for (int i = 0; i < out; i++) {
                        double sq = 0;
                        for (int k = 0; k < in; k++) sq += (double) w0[i * in + k] * w0[i * in + k];
                        m[i] = (float) (Math.sqrt(sq) * rng.nextDouble(0.8, 1.2));
                    }
                }
                w.put(new PeftAdapter.Target(l, module), new LoraWeights(r, in, out, a, b, m));
            }
        return new PeftAdapter(config, "test/random", null, w);
    }

    static PeftAdapter randomAdapter(LlamaModel base, List<String> targets, int r, boolean dora, double bBound, long seed) {
        return randomAdapter(base, base.config, base.config.numHiddenLayers(), targets, r, 2.0 * r, dora, bBound, seed);
    }

    static float[] uniform(SplittableRandom rng, int n, double bound) {
        float[] x = new float[n];
        if (bound > 0) for (int i = 0; i < n; i++) x[i] = (float) rng.nextDouble(-bound, bound);
        return x;
    }

    Path write(String name, PeftAdapter a) {
        Path dir = tmp.resolve(name);
        a.write(dir, DType.F32);
        return dir;
    }

    /// Weights with `a` merged in double precision from its definition (specs §2.3, §2.4): V = W0 + s·B·A, and for
    /// DoRA W' = (m / ‖V‖_row)·V; rounded to float once. Independent of LoraLinear / DoraLinear / Gemm.
    static LlamaWeights mergedInDouble(LlamaWeights w, PeftAdapter a) {
        List<LlamaWeights.Layer> layers = new ArrayList<>();
        for (LlamaWeights.Layer layer : w.layers) layers.add(LlamaWeights.Layer.of(t -> layer.get(t) == null ? null : layer.get(t).clone()));
        LlamaWeights out = new LlamaWeights(w.config, w.embedTokens, w.norm, w.lmHead, layers);
        for (var e : a.weights().entrySet()) {
            PeftAdapter.Target t = e.getKey();
            LoraWeights lw = e.getValue();
            int M = lw.out(), K = lw.in(), r = lw.r();
            double s = a.config().loraAlpha() / a.config().r();
            float[] W = baseWeight(out, t.layer(), t.module());
            for (int i = 0; i < M; i++) {
                double[] v = new double[K];
                double sq = 0;
                for (int k = 0; k < K; k++) {
                    double ba = 0;
                    for (int j = 0; j < r; j++) ba += (double) lw.b()[i * r + j] * lw.a()[j * K + k];
                    v[k] = W[i * K + k] + s * ba;
                    sq += v[k] * v[k];
                }
                double g = lw.magnitude() == null ? 1 : lw.magnitude()[i] / Math.sqrt(sq);
                for (int k = 0; k < K; k++) W[i * K + k] = (float) (g * v[k]);
            }
        }
        return out;
    }

    // ---------------------------------------------------------------- invariants

    @ParameterizedTest
    @ValueSource(strings = {"stories260K-hf", "tinystories-656k"})
    void zeroBIsTheBase(String name) {
        LlamaModel model = model(name);
        int[] ids = tokens(model.config, 16, 1);
        float[] base = model.logits(ids);
        LoadedAdapter zero = model.loadAdapter("zero", write("zero", randomAdapter(model, ALL, 8, false, 0.0, 2)));
        assertArrayEquals(base, model.logits(ids, zero), name + ": adapter with B = 0 vs base logits");
    }

    @ParameterizedTest
    @ValueSource(strings = {"stories260K-hf", "tinystories-656k"})
    void adaptedForwardMatchesBaseOverWeightsMergedInDouble(String name) {
        LlamaModel model = model(name);
        int[] ids = tokens(model.config, 16, 3);
        float[] base = model.logits(ids);
        for (boolean dora : new boolean[]{false, true}) {
            PeftAdapter a = randomAdapter(model, ALL, 4, dora, 0.2, dora ? 5 : 4);
            String n = dora ? "dora" : "lora";
            LoadedAdapter la = model.loadAdapter(n, write(n, a));
            float[] adapted = model.logits(ids, la);
            float[] expected = new LlamaModel(mergedInDouble(model.weights, a), ScalarGemm.INSTANCE).logits(ids);
            System.out.printf("%s %s: max |adapted - base| %.3f, |adapted - merged in double| %.2e%n", name, n,
                    maxAbsDiff(adapted, base), maxAbsDiff(adapted, expected));
            assertTrue(maxAbsDiff(adapted, base) > VISIBLE, n + " adapter barely moves the logits: " + maxAbsDiff(adapted, base));
            assertClose(name + " " + n + " unmerged vs base over weights merged in double", expected, adapted, DOUBLE_MERGE_ATOL, 0);
        }
    }

    @ParameterizedTest
    @ValueSource(strings = {"stories260K-hf", "tinystories-656k"})
    void loraUnmergedEqualsMergedAndUnmergeRestores(String name) {
        unmergedEqualsMergedAndUnmergeRestores(name, false);
    }

    @ParameterizedTest
    @ValueSource(strings = {"stories260K-hf", "tinystories-656k"})
    void doraUnmergedEqualsMergedAndUnmergeRestores(String name) {
        unmergedEqualsMergedAndUnmergeRestores(name, true);
    }

    void unmergedEqualsMergedAndUnmergeRestores(String name, boolean dora) {
        LlamaModel model = model(name);
        int[] ids = tokens(model.config, 16, 6);
        Map<String, float[]> snapshot = new TreeMap<>();
        model.weights.tensors().forEach((k, v) -> snapshot.put(k, v.clone()));
        float[] base = model.logits(ids);
        LoadedAdapter a = model.loadAdapter("a", write("a", randomAdapter(model, List.of("q_proj", "v_proj", "o_proj", "up_proj", "down_proj"), 8, dora, 0.2, 7)));
        float[] unmerged = model.logits(ids, a);
        assertTrue(maxAbsDiff(unmerged, base) > VISIBLE, "adapter barely moves the logits: " + maxAbsDiff(unmerged, base));

        LlamaWeights copy = AdapterSet.mergedCopy(model.gemm(), model.weights, a);
        model.weights.tensors().forEach((k, v) -> assertArrayEquals(snapshot.get(k), v, "mergedCopy changed base tensor " + k));
        float[] fromCopy = new LlamaModel(copy, ScalarGemm.INSTANCE).logits(ids);

        model.merge("a");
        assertEquals("a", model.adapters().merged());
        float[] merged = model.logits(ids);
        System.out.printf("%s %s: max |unmerged - merged| %.2e%n", name, dora ? "DoRA" : "LoRA", maxAbsDiff(unmerged, merged));
        assertClose(name + " unmerged vs merged", unmerged, merged, MERGE_ATOL, 0);
        assertArrayEquals(merged, fromCopy, "mergedCopy computes the same weights as merge in place");
        assertThrows(ConfigException.class, () -> model.logits(ids, a), "an unmerged adapter over a merged base would count twice");

        model.unmerge();
        float[] restored = model.logits(ids);
        System.out.printf("%s %s: max |restored - base| %.2e%n", name, dora ? "DoRA" : "LoRA", maxAbsDiff(restored, base));
        assertClose(name + " logits after unmerge vs base", base, restored, UNMERGE_ATOL, 0);
    }

    @ParameterizedTest
    @ValueSource(strings = {"stories260K-hf", "tinystories-656k"})
    void switchingAdaptersReproducesEachExactly(String name) {
        LlamaModel model = model(name);
        int[] ids = tokens(model.config, 16, 8);
        LoadedAdapter A = model.loadAdapter("A", write("A", randomAdapter(model, List.of("q_proj", "v_proj"), 4, false, 0.3, 9)));
        LoadedAdapter B = model.loadAdapter("B", write("B", randomAdapter(model, ALL, 8, true, 0.2, 10)));
        float[] a1 = model.logits(ids, A);
        float[] b1 = model.logits(ids, B);
        float[] base = model.logits(ids);
        float[] a2 = model.logits(ids, A);
        float[] b2 = model.logits(ids, B);
        assertTrue(maxAbsDiff(a1, base) > VISIBLE && maxAbsDiff(b1, base) > VISIBLE && maxAbsDiff(a1, b1) > VISIBLE,
                "the adapters must differ from the base and each other");
        assertArrayEquals(a1, a2, name + ": A after B and base");
        assertArrayEquals(b1, b2, name + ": B after A, base and A");
        assertArrayEquals(base, new LlamaModel(model.weights, ScalarGemm.INSTANCE).logits(ids), name + ": base after A and B");
        assertEquals(List.of("A", "B"), model.adapters().names());
    }

    /// The generation path: one prefill, then T = 1 decode steps reusing the planned scratch, vs one full pass.
    @ParameterizedTest
    @ValueSource(strings = {"stories260K-hf", "tinystories-656k"})
    void prefillThenDecodeWithAdapterMatchesFullPass(String name) {
        LlamaModel model = model(name);
        int V = model.config.vocabSize(), T = 20, P = 7;
        int[] ids = tokens(model.config, T, 11);
        for (boolean dora : new boolean[]{false, true}) {
            String n = dora ? "dora" : "lora";
            LoadedAdapter la = model.loadAdapter(n, write(n, randomAdapter(model, ALL, 8, dora, 0.2, dora ? 13 : 12)));
            float[] full = model.logits(ids, la);
            KvCache cache = model.newCache(1, T);
            Activations acts = model.newActivations(1, P, cache);
            float[] incremental = new float[T * V], last = new float[V];
            model.forward(incremental, Arrays.copyOf(ids, P), 1, P, 0, la, cache, acts, true);
            for (int t = P; t < T; t++) {
                model.forward(last, new int[]{ids[t]}, 1, 1, t, la, cache, acts, false);
                System.arraycopy(last, 0, incremental, t * V, V);
            }
            assertClose(name + " " + n + " prefill+decode vs full pass", full, incremental, CACHE_ATOL, 0);
        }
    }

    // ---------------------------------------------------------------- errors

    @Test
    void adapterForAnotherHiddenSizeIsRejected() {
        LlamaModel small = model("stories260K-hf"), other = model("tinystories-656k");   // hidden 64 vs 128
        Path dir = write("wide", randomAdapter(other, ALL, 4, false, 0.1, 14));
        ConfigException e = assertThrows(ConfigException.class, () -> small.loadAdapter("wide", dir));
        System.out.println(e.getMessage());
        assertTrue(e.getMessage().contains(dir.toString()), e.getMessage());
        assertTrue(e.getMessage().contains("base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"), e.getMessage());
        assertTrue(e.getMessage().contains("[4, 128]"), e.getMessage());
        assertTrue(e.getMessage().contains("trained for hidden size 128, the model has 64"), e.getMessage());
        assertEquals(List.of(), small.adapters().names(), "a rejected adapter is not registered");

        LoadedAdapter checkedElsewhere = LoadedAdapter.read("x", dir, other.config);
        assertThrows(ConfigException.class, () -> small.adapters().register(checkedElsewhere));
    }

    @Test
    void adapterForAnotherLayerCountIsRejected() {
        LlamaModel model = model("stories260K-hf");   // 5 layers
        LlamaConfig c = model.config;
        Path deeper = write("deeper", randomAdapter(model, c, 7, List.of("q_proj"), 4, 8, false, 0.1, 15));
        ConfigException e = assertThrows(ConfigException.class, () -> model.loadAdapter("deeper", deeper));
        System.out.println(e.getMessage());
        assertTrue(e.getMessage().contains("layers.5.self_attn.q_proj") && e.getMessage().contains("at least 6 layers")
                && e.getMessage().contains("has 5"), e.getMessage());

        Path shallower = write("shallower", randomAdapter(model, c, 2, List.of("q_proj", "v_proj"), 4, 8, false, 0.1, 16));
        e = assertThrows(ConfigException.class, () -> model.loadAdapter("shallower", shallower));
        System.out.println(e.getMessage());
        assertTrue(e.getMessage().contains(shallower.toString()) && e.getMessage().contains("layers.2.self_attn.q_proj.lora_A.weight")
                && e.getMessage().contains("trained for a model with 2 layers") && e.getMessage().contains("has 5"), e.getMessage());
    }

    @Test
    void targetModuleOfAnotherArchitectureIsRejected() {
        LlamaModel model = model("stories260K-hf");
        PeftAdapter q = randomAdapter(model, List.of("q_proj"), 4, false, 0.1, 17);
        LoraConfig gpt2 = new LoraConfig(4, 8, 0.0, List.of("q_proj", "c_attn"), false, false, LoraConfig.Init.NO_INIT, "none",
                false, null, Map.of(), Map.of(), null);
        Path dir = write("gpt2", new PeftAdapter(gpt2, null, null, q.weights()));
        ConfigException e = assertThrows(ConfigException.class, () -> model.loadAdapter("gpt2", dir));
        System.out.println(e.getMessage());
        assertTrue(e.getMessage().contains("'c_attn'") && e.getMessage().contains(dir.toString()), e.getMessage());
    }

    /// A diverged run's adapter (NaN or infinite values) is refused on load, naming the tensor (issue 17, item 2),
    /// rather than served as empty answers.
    @Test
    void nonFiniteAdapterIsRejected() {
        LlamaModel model = model("stories260K-hf");
        for (float bad : new float[]{Float.NaN, Float.POSITIVE_INFINITY}) {
            PeftAdapter a = randomAdapter(model, List.of("v_proj"), 4, false, 0.1, 18);
            a.weights().values().iterator().next().b()[3] = bad;
            Path dir = write("broken" + bad, a);
            ConfigException e = assertThrows(ConfigException.class, () -> model.loadAdapter("broken", dir));
            assertTrue(e.getMessage().contains(dir.toString()) && e.getMessage().contains("lora_B.weight' holds " + bad + " at index 3"), e.getMessage());
            assertEquals(List.of(), model.adapters().names());
        }
    }
}
