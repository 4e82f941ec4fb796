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
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

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
    /// dA is non-trivial); how sharp the comparison is: see [#FD_TOLERANCE].
    @Test
    void loraGradientsMatchFiniteDifferences() {
        LlamaWeights w = stories();
        checkGradients(loraWithNonZeroB(w), w.config, LORA_CHECKED);
    }

    static final List<String> LORA_CHECKED = List.of("layers.0.self_attn.q_proj.lora_A", "layers.4.mlp.down_proj.lora_B",
            "layers.2.self_attn.v_proj.lora_A", "layers.1.mlp.gate_proj.lora_B", "layers.3.self_attn.o_proj.lora_A");

    static TrainModel loraWithNonZeroB(LlamaWeights w) {
        TrainModel tm = new TrainModel(w, new Method.Lora(LoraConfig.of(4, LoraConfig.ALL_LINEAR)), GEMM, B, T, false, 3);
        SplittableRandom r = new SplittableRandom(5);
        for (Param p : tm.params()) if (p.name().endsWith("lora_B.weight")) for (int i = 0; i < p.data().length; i++) p.data()[i] = (float) (r.nextGaussian() * 0.05);
        return tm;
    }

    /// The check can fail (as GradCheckTest.wrongBackwardIsCaught shows for the per-op check): the same comparison,
    /// same samples and tolerance, rejects analytic gradients that are wrong in one tensor among the five — scaled by
    /// 1.1 (a wrong factor such as alpha/r against alpha/√r is larger still), or with the sign of its largest entry
    /// flipped (one wrong term). A 10% error measures ≈ 0.091 against [#FD_TOLERANCE] = 0.03.
    @Test
    void loraCheckRejectsAWrongGradient() {
        LlamaWeights w = stories();
        TrainModel tm = loraWithNonZeroB(w);
        String tooLarge = "layers.1.mlp.gate_proj.lora_B", signFlipped = "layers.0.self_attn.q_proj.lora_A";
        assertRejected(tooLarge, () -> checkGradients(tm, w.config, LORA_CHECKED, scaled(tooLarge, 1.1f)));
        assertRejected(signFlipped, () -> checkGradients(tm, w.config, LORA_CHECKED, largestFlipped(signFlipped)));
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

    static final List<String> FULL_CHECKED = List.of("model.embed_tokens", "layers.0.input_layernorm", "layers.4.self_attn.k_proj",
            "layers.2.mlp.up_proj", "model.norm", "layers.1.post_attention_layernorm");

    @Test
    void fullGradientsMatchFiniteDifferences() {
        LlamaWeights w = stories();
        TrainModel tm = new TrainModel(w, new Method.Full(), GEMM, B, T, false, 3);
        checkGradients(tm, w.config, FULL_CHECKED);
    }

    /// As [#loraCheckRejectsAWrongGradient], for full fine-tuning: a base projection and a norm weight 10% off.
    @Test
    void fullCheckRejectsAWrongGradient() {
        LlamaWeights w = stories();
        TrainModel tm = new TrainModel(w, new Method.Full(), GEMM, B, T, false, 3);
        for (String wrong : List.of("layers.4.self_attn.k_proj", "layers.1.post_attention_layernorm"))
            assertRejected(wrong, () -> checkGradients(tm, w.config, FULL_CHECKED, scaled(wrong, 1.1f)));
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

    /// Step of the central differences, relative to max(1, |x|). The loss is a float forward of the whole model summed
    /// over ~20 tokens, so each evaluation carries rounding noise of ~1e-5 that dividing by 2h magnifies: plain
    /// central differences measured relative errors up to 1.1e-2 at h = 1e-2 and 4e-3 at h = 4e-2, where the h²
    /// truncation term starts to show (5e-2 at h = 1.6e-1). Richardson extrapolation, (4·D(h) − D(2h)) / 3, cancels
    /// that term, so the step can be large enough for the noise to shrink (h = 8e-2 left h⁴ errors of 1.5e-2).
    static final double FD_STEP = 4e-2;
    /// Largest accepted relative error |a − n| / max(|a|, |n|, floor), as in testkit's GradCheck. Correct gradients
    /// measure at most 2.5e-3 with these seeds and 1.4e-2 over ten other batch/sample seeds (a gradient of 0.024 off
    /// by 3.4e-4 of noise); a gradient 10% off measures 0.091 and a flipped sign about 1, so 3e-2 keeps a factor of 2
    /// over the noise and of 3 under a 10% error. (The check this replaces accepted |a − n| ≤ 3e-3 + 2e-2·|n|: 7% off
    /// at a gradient of 0.06, and anything below 3e-3, which half of its embedding samples were.)
    static final double FD_TOLERANCE = 3e-2;
    /// Elements whose gradient is below 1% of the tensor's largest are judged on that scale, where their own relative
    /// error is rounding noise (embedding rows of tokens absent from the batch have gradients of ~1e-9).
    static final double FD_FLOOR = 1e-2;
    /// Elements per tensor: its largest-gradient element, then the larger of two random draws, each time.
    static final int FD_SAMPLES = 6;

    /// Edits a copy of one tensor's analytic gradient before the comparison: to prove that the check can fail.
    @FunctionalInterface interface WrongGradient { void apply(String name, float[] grad); }

    static void checkGradients(TrainModel tm, LlamaConfig c, List<String> which) {
        checkGradients(tm, c, which, (name, grad) -> {});
    }

    static WrongGradient scaled(String key, float factor) {
        return (name, grad) -> { if (name.contains(key)) for (int i = 0; i < grad.length; i++) grad[i] *= factor; };
    }

    static WrongGradient largestFlipped(String key) {
        return (name, grad) -> { if (name.contains(key)) grad[argmaxAbs(grad)] *= -1; };
    }

    static void assertRejected(String key, org.junit.jupiter.api.function.Executable check) {
        AssertionError e = assertThrows(AssertionError.class, check, "a wrong gradient of " + key + " passed the check");
        assertTrue(e.getMessage().contains(key), "rejected for another tensor than " + key + ": " + e.getMessage());
    }

    /// Compares the analytic gradients of the given tensors (after `wrong`) with Richardson-extrapolated central
    /// differences at [#FD_SAMPLES] elements each; fails naming the worst element above [#FD_TOLERANCE].
    static void checkGradients(TrainModel tm, LlamaConfig c, List<String> which, WrongGradient wrong) {
        int[][] bt = batch(c.vocabSize(), 11);
        tm.zeroGrad();
        tm.forward(bt[0], bt[1], T, false, 0);
        tm.backward(bt[0], bt[1], T, 1f, 0);
        SplittableRandom r = new SplittableRandom(2);
        String worst = "-";
        double worstError = -1;
        int checked = 0;
        for (String key : which) {
            Param p = tm.params().stream().filter(x -> x.name().contains(key)).findFirst().orElseThrow(() -> new AssertionError("no param " + key));
            float[] g = p.grad().clone();
            double gmax = Math.abs(g[argmaxAbs(g)]);
            assertTrue(gmax > 0, p.name() + " has an all-zero gradient");
            wrong.apply(p.name(), g);
            double floor = FD_FLOOR * gmax;
            for (int s = 0; s < FD_SAMPLES; s++) {
                int i = argmaxAbs(p.grad());
                if (s > 0) {   // bias the sample toward elements that matter: take the larger of two draws
                    i = r.nextInt(p.data().length);
                    int j = r.nextInt(p.data().length);
                    if (Math.abs(p.grad()[j]) > Math.abs(p.grad()[i])) i = j;
                }
                double h = FD_STEP * Math.max(1, Math.abs(p.data()[i]));
                double num = (4 * slope(tm, bt, p.data(), i, h) - slope(tm, bt, p.data(), i, 2 * h)) / 3;
                double err = Math.abs(num - g[i]) / Math.max(Math.max(Math.abs(num), Math.abs(g[i])), floor);
                if (Double.isNaN(err)) err = Double.POSITIVE_INFINITY;
                if (!(err <= worstError)) {
                    worstError = err;
                    worst = String.format("%s[%d]: analytic %.6g numeric %.6g (relative error %.3g, floor %.3g)", p.name(), i, g[i], num, err, floor);
                }
                checked++;
            }
        }
        tm.forward(bt[0], bt[1], T, false, 0);   // leave the model's saved state as for the unperturbed weights
        assertEquals(FD_SAMPLES * which.size(), checked);
        if (!(worstError <= FD_TOLERANCE))
            fail("analytic gradients disagree with finite differences (tolerance " + FD_TOLERANCE + "); worst " + worst);
        System.out.println("finite differences, worst of " + checked + ": " + worst);
    }

    /// Central difference (L(x+h) − L(x−h)) / (x₊ − x₋) at element i, dividing by the float points actually used.
    static double slope(TrainModel tm, int[][] bt, float[] x, int i, double h) {
        float x0 = x[i], xp = (float) (x0 + h), xm = (float) (x0 - h);
        x[i] = xp;
        double lp = tm.forward(bt[0], bt[1], T, false, 0);
        x[i] = xm;
        double lm = tm.forward(bt[0], bt[1], T, false, 0);
        x[i] = x0;
        return (lp - lm) / ((double) xp - xm);
    }

    static int argmaxAbs(float[] a) {
        int m = 0;
        for (int i = 1; i < a.length; i++) if (Math.abs(a[i]) > Math.abs(a[m])) m = i;
        return m;
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
