package org.peft4j.train.engine;

import org.junit.jupiter.api.Test;
import org.peft4j.model.adapter.ia3.Ia3Config;
import org.peft4j.model.llama.LlamaWeights;
import org.peft4j.testkit.Assert;

import java.util.List;
import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.peft4j.train.engine.TrainModelTest.B;
import static org.peft4j.train.engine.TrainModelTest.GEMM;
import static org.peft4j.train.engine.TrainModelTest.T;
import static org.peft4j.train.engine.TrainModelTest.batch;
import static org.peft4j.train.engine.TrainModelTest.checkGradients;
import static org.peft4j.train.engine.TrainModelTest.concat;
import static org.peft4j.train.engine.TrainModelTest.assertRejected;
import static org.peft4j.train.engine.TrainModelTest.scaled;
import static org.peft4j.train.engine.TrainModelTest.stories;

/// (IA)³ through the whole training forward/backward on stories260K: at initialisation (vectors of ones) the base's
/// logits; the loss's gradients of every kind of vector (output scaling before RoPE on k, on v under GQA, on q, o,
/// gate; input scaling on up and down) against finite differences, with TrainModelTest's sampler and tolerance; the
/// check rejecting a 10% error; checkpointing changing nothing.
class Ia3TrainModelTest {
    static final Ia3Config ALL = new Ia3Config(List.of("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"),
            List.of("up_proj", "down_proj"), true);

    /// Vectors moved away from 1, so that every gradient path (including x ⊙ l and dy ⊙ l) is exercised.
    static TrainModel perturbed(LlamaWeights w, Ia3Config c, boolean ckpt) {
        TrainModel tm = new TrainModel(w, new Method.Ia3(c), GEMM, B, T, ckpt, 3);
        SplittableRandom r = new SplittableRandom(5);
        for (Param p : tm.params()) for (int i = 0; i < p.data().length; i++) p.data()[i] = (float) (1 + 0.2 * r.nextGaussian());
        return tm;
    }

    @Test
    void onesAtInitEqualBaseAndParamsArePeftNamed() {
        LlamaWeights w = stories();
        TrainModel tm = new TrainModel(w, new Method.Ia3(Ia3Config.defaults()), GEMM, B, T, false, 3);
        assertEquals(3 * w.config.numHiddenLayers(), tm.params().size());
        Param k = tm.params().getFirst();
        assertEquals("base_model.model.model.layers.0.self_attn.k_proj.ia3_l", k.name());
        assertArrayEquals(new long[]{w.config.kvDim(), 1}, k.shape());
        Param down = tm.params().stream().filter(p -> p.name().contains("down_proj")).findFirst().orElseThrow();
        assertArrayEquals(new long[]{1, w.config.intermediateSize()}, down.shape());
        int[][] bt = batch(w.config.vocabSize(), 1);
        tm.forward(bt[0], bt[1], T, false, 0);
        float[] ia3 = tm.logits().clone();
        TrainModel full = new TrainModel(w, new Method.Full(), GEMM, B, T, false, 3);
        full.forward(bt[0], bt[1], T, false, 0);
        Assert.assertClose("IA3 (ones) vs base", full.logits(), ia3, 0, 0);
    }

    static final List<String> CHECKED = List.of("layers.0.self_attn.k_proj.ia3_l", "layers.3.self_attn.v_proj.ia3_l",
            "layers.1.self_attn.q_proj.ia3_l", "layers.2.self_attn.o_proj.ia3_l", "layers.4.mlp.gate_proj.ia3_l",
            "layers.1.mlp.up_proj.ia3_l", "layers.2.mlp.down_proj.ia3_l");

    @Test
    void gradientsMatchFiniteDifferences() {
        LlamaWeights w = stories();
        checkGradients(perturbed(w, ALL, false), w.config, CHECKED);
    }

    /// The same comparison rejects an analytic gradient 10% off, in an output-scaled and an input-scaled vector.
    @Test
    void checkRejectsAWrongGradient() {
        LlamaWeights w = stories();
        TrainModel tm = perturbed(w, ALL, false);
        List<String> two = List.of("layers.3.self_attn.v_proj.ia3_l", "layers.2.mlp.down_proj.ia3_l");
        assertRejected(two.get(0), () -> checkGradients(tm, w.config, two, scaled(two.get(0), 1.1f)));
        assertRejected(two.get(1), () -> checkGradients(tm, w.config, two, scaled(two.get(1), 1.1f)));
    }

    @Test
    void checkpointingGivesIdenticalGradients() {
        LlamaWeights w = stories();
        int[][] bt = batch(w.config.vocabSize(), 9);
        float[][] grads = new float[2][];
        for (int ck = 0; ck < 2; ck++) {
            TrainModel tm = perturbed(w, ALL, ck == 1);
            tm.forward(bt[0], bt[1], T, true, 0);
            tm.backward(bt[0], bt[1], T, 0.1f, 0);
            grads[ck] = concat(tm.params());
        }
        assertTrue(Math.abs(grads[0][0]) + Math.abs(grads[0][grads[0].length - 1]) > 0);
        assertArrayEquals(grads[0], grads[1]);
    }

    /// The IA3 keys are refused where they would be ignored, and PEFT's subset rule is checked when the config loads.
    @Test
    void keysAreCheckedUpFront() {
        List<String> req = List.of("--model_name_or_path", "m", "--dataset", "identity_en", "--output_dir", "o");
        var e = org.junit.jupiter.api.Assertions.assertThrows(org.peft4j.core.Peft4jException.ConfigException.class,
                () -> org.peft4j.train.TrainConfig.load(null, concatFlags(req, "--target_modules", "k_proj")));
        assertTrue(e.getMessage().contains("finetuning_type ia3"), e.getMessage());
        var e2 = org.junit.jupiter.api.Assertions.assertThrows(org.peft4j.core.Peft4jException.ConfigException.class,
                () -> org.peft4j.train.TrainConfig.load(null, concatFlags(req, "--finetuning_type", "ia3", "--target_modules", "k_proj,v_proj", "--feedforward_modules", "down_proj")));
        assertTrue(e2.getMessage().contains("subset"), e2.getMessage());
        var ok = org.peft4j.train.TrainConfig.load(null, concatFlags(req, "--finetuning_type", "ia3", "--target_modules", "q_proj,v_proj"));
        assertEquals(new Method.Ia3(new Ia3Config(List.of("q_proj", "v_proj"), List.of(), true)), ok.args().finetuning().method());
    }

    static List<String> concatFlags(List<String> a, String... b) {
        List<String> out = new java.util.ArrayList<>(a);
        out.addAll(List.of(b));
        return out;
    }
}
