package org.peft4j.train.engine;

import org.junit.jupiter.api.Test;
import org.peft4j.core.Gemm;
import org.peft4j.core.kernels.ScalarGemm;
import org.peft4j.model.LlamaConfig;
import org.peft4j.model.Models;
import org.peft4j.model.layers.CrossEntropy;
import org.peft4j.model.llama.LlamaModel;
import org.peft4j.model.llama.LlamaWeights;
import org.peft4j.model.adapter.lora.LoraConfig;
import org.peft4j.model.adapter.lora.LoraWeights;
import org.peft4j.testkit.Assert;
import org.peft4j.testkit.Shared;

import java.nio.file.Path;
import java.util.List;
import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/// The whole-model training forward/backward on the real stories260K: LoRA invariants, finite differences of the
/// loss against the analytic gradients (LoRA and full fine-tuning), and checkpointing changing nothing.
class TrainModelTest {
    static final Gemm GEMM = ScalarGemm.INSTANCE;
    static final int B = 2, T = 12;

    static LlamaWeights stories() {
        Path dir = Shared.require("models/stories260K-hf");
        return Models.loadWeights(dir);
    }

    static int[][] batch(int V, long seed) {
        SplittableRandom r = new SplittableRandom(seed);
        int[] tokens = new int[B * T], labels = new int[B * T], targets = new int[B * T];
        for (int i = 0; i < tokens.length; i++) { tokens[i] = 3 + r.nextInt(V - 3); labels[i] = tokens[i]; }
        for (int t = 0; t < 4; t++) labels[t] = CrossEntropy.IGNORE;      // a masked prompt in row 0
        labels[B * T - 1] = CrossEntropy.IGNORE;                           // and a padded tail in row 1
        CrossEntropy.shiftLabels(targets, labels, B, T);
        return new int[][]{tokens, targets};
    }

    /// B = 0 at initialisation: the adapted model computes exactly the base model's logits (PEFT invariant), here
    /// against the independent inference engine (`LlamaModel`, KV-cache path).
    @Test
    void loraAtInitEqualsBase() {
        LlamaWeights w = stories();
        LlamaConfig c = w.config;
        var lc = LoraConfig.of(4, LoraConfig.ALL_LINEAR);
        TrainModel tm = new TrainModel(w, new Method.Lora(lc), GEMM, B, T, false, 7);
        int[][] bt = batch(c.vocabSize(), 1);
        tm.forward(bt[0], bt[1], T, false, 0);
        LlamaModel base = new LlamaModel(w, GEMM);
        var cache = base.newCache(1, T);
        var acts = base.newActivations(1, T, cache);
        float[] ref = new float[T * c.vocabSize()];
        int[] row = java.util.Arrays.copyOfRange(bt[0], T, 2 * T);
        base.forward(ref, row, 1, T, 0, cache, acts, true);
        float[] mine = java.util.Arrays.copyOfRange(tm.logits(), T * c.vocabSize(), 2 * T * c.vocabSize());
        Assert.assertClose("logits, LoRA(B=0) vs base", ref, mine, 1e-5, 1e-5);
    }

    /// Central differences of the summed loss for sampled elements of every LoRA tensor kind (B made non-zero so that
    /// dA is non-trivial). Loss sums over ~20 tokens in float; with eps 1e-2 the truncation error is O(eps²) and the
    /// float rounding of the loss (~1e-6 relative of ~60) divided by 2·eps is ~3e-3 absolute: the tolerance below.
    @Test
    void loraGradientsMatchFiniteDifferences() {
        LlamaWeights w = stories();
        var lc = LoraConfig.of(4, LoraConfig.ALL_LINEAR);
        TrainModel tm = new TrainModel(w, new Method.Lora(lc), GEMM, B, T, false, 3);
        SplittableRandom r = new SplittableRandom(5);
        for (Param p : tm.params()) if (p.name().endsWith("lora_B.weight")) for (int i = 0; i < p.data().length; i++) p.data()[i] = (float) (r.nextGaussian() * 0.05);
        checkGradients(tm, w.config, List.of("layers.0.self_attn.q_proj.lora_A", "layers.4.mlp.down_proj.lora_B",
                "layers.2.self_attn.v_proj.lora_A", "layers.1.mlp.gate_proj.lora_B", "layers.3.self_attn.o_proj.lora_A"));
    }

    /// DoRA (magnitude vector, detached norm): at initialisation the base logits; gradients of A, B and the magnitude
    /// against finite differences taken with the norms held at the values of the analytic pass — PEFT detaches the
    /// norm, so its gradient is that of the loss with the norm as a constant.
    @Test
    void doraMatchesBaseAtInitAndFiniteDifferences() {
        LlamaWeights w = stories();
        var base = LoraConfig.of(4, LoraConfig.ALL_LINEAR);
        var dc = new LoraConfig(4, 8, 0, base.targetModules(), false, true, base.initLoraWeights(), "none", false, null, null, null, null);
        TrainModel tm = new TrainModel(w, new Method.Lora(dc), GEMM, B, T, false, 3);
        assertTrue(tm.params().stream().anyMatch(p -> p.name().endsWith("lora_magnitude_vector")));
        int[][] bt = batch(w.config.vocabSize(), 1);
        tm.forward(bt[0], bt[1], T, false, 0);
        float[] dora = tm.logits().clone();
        TrainModel plain = new TrainModel(w, new Method.Lora(base), GEMM, B, T, false, 3);
        plain.forward(bt[0], bt[1], T, false, 0);
        Assert.assertClose("DoRA at init vs base", plain.logits(), dora, 2e-5, 1e-5);
        SplittableRandom r = new SplittableRandom(5);
        for (Param p : tm.params()) if (p.name().endsWith("lora_B.weight")) for (int i = 0; i < p.data().length; i++) p.data()[i] = (float) (r.nextGaussian() * 0.05);
        tm.forward(bt[0], bt[1], T, false, 0);   // norms of the perturbed-B adapter
        tm.doraNormsHeld = true;
        checkGradients(tm, w.config, List.of("layers.1.self_attn.q_proj.lora_A", "layers.3.mlp.up_proj.lora_B",
                "layers.2.mlp.down_proj.lora_magnitude_vector", "layers.0.self_attn.v_proj.lora_magnitude_vector"));
    }

    @Test
    void fullGradientsMatchFiniteDifferences() {
        LlamaWeights w = stories();
        TrainModel tm = new TrainModel(w, new Method.Full(), GEMM, B, T, false, 3);
        checkGradients(tm, w.config, List.of("model.embed_tokens", "layers.0.input_layernorm", "layers.4.self_attn.k_proj",
                "layers.2.mlp.up_proj", "model.norm", "layers.1.post_attention_layernorm"));
    }

    /// Checkpointing recomputes each block in backward: gradients must be bit-identical to keeping activations.
    @Test
    void checkpointingGivesIdenticalGradients() {
        LlamaWeights w = stories();
        var lc = LoraConfig.of(4, LoraConfig.ALL_LINEAR);
        int[][] bt = batch(w.config.vocabSize(), 9);
        float[][] grads = new float[2][];
        for (int ck = 0; ck < 2; ck++) {
            TrainModel tm = new TrainModel(w, new Method.Lora(lc), GEMM, B, T, ck == 1, 3);
            for (Param p : tm.params()) if (p.name().endsWith("lora_B.weight")) java.util.Arrays.fill(p.data(), 0.01f);
            tm.forward(bt[0], bt[1], T, true, 0);
            tm.backward(bt[0], bt[1], T, 0.1f, 0);
            grads[ck] = concat(tm.params());
        }
        assertArrayEquals(grads[0], grads[1]);
    }

    /// A frozen base gets no gradient array at all under LoRA.
    @Test
    void loraTrainsOnlyAdapters() {
        LlamaWeights w = stories();
        TrainModel tm = new TrainModel(w, new Method.Lora(LoraConfig.of(2, List.of("q_proj", "v_proj"))), GEMM, 1, 4, false, 1);
        assertEquals(2 * 2 * w.config.numHiddenLayers(), tm.params().size());
        for (Param p : tm.params()) assertTrue(p.name().contains("lora_"), p.name());
    }

    static void checkGradients(TrainModel tm, LlamaConfig c, List<String> which) {
        int[][] bt = batch(c.vocabSize(), 11);
        tm.zeroGrad();
        tm.forward(bt[0], bt[1], T, false, 0);
        tm.backward(bt[0], bt[1], T, 1f, 0);
        SplittableRandom r = new SplittableRandom(2);
        final double eps = 1e-2, atol = 3e-3, rtol = 2e-2;
        int checked = 0;
        for (String key : which) {
            Param p = tm.params().stream().filter(x -> x.name().contains(key)).findFirst().orElseThrow(() -> new AssertionError("no param " + key));
            float[] g = p.grad().clone();
            double gmax = 0;
            for (float x : g) gmax = Math.max(gmax, Math.abs(x));
            assertTrue(gmax > 0, p.name() + " has an all-zero gradient");
            for (int s = 0; s < 6; s++) {
                int i = r.nextInt(p.data().length);
                // bias the sample toward elements that matter: take the larger of two draws
                int j = r.nextInt(p.data().length);
                if (Math.abs(g[j]) > Math.abs(g[i])) i = j;
                float orig = p.data()[i];
                p.data()[i] = (float) (orig + eps);
                double lp = tm.forward(bt[0], bt[1], T, false, 0);
                p.data()[i] = (float) (orig - eps);
                double lm = tm.forward(bt[0], bt[1], T, false, 0);
                p.data()[i] = orig;
                double num = (lp - lm) / (2 * eps);
                double diff = Math.abs(num - g[i]);
                assertTrue(diff <= atol + rtol * Math.abs(num),
                        String.format("%s[%d]: analytic %.6g numeric %.6g (diff %.3g)", p.name(), i, g[i], num, diff));
                checked++;
            }
        }
        assertEquals(6 * which.size(), checked);
    }

    static float[] concat(List<Param> ps) {
        int n = 0;
        for (Param p : ps) n += p.grad().length;
        float[] out = new float[n];
        int o = 0;
        for (Param p : ps) { System.arraycopy(p.grad(), 0, out, o, p.grad().length); o += p.grad().length; }
        return out;
    }
}
