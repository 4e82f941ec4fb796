package org.peft4j.train.engine;

import org.junit.jupiter.api.Test;
import org.peft4j.core.Peft4jException.ConfigException;
import org.peft4j.model.layers.CrossEntropy;
import org.peft4j.model.llama.LlamaWeights;

import java.util.List;
import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;
import static org.peft4j.train.engine.TrainModelTest.FD_STEP;
import static org.peft4j.train.engine.TrainModelTest.FD_TOLERANCE;
import static org.peft4j.train.engine.TrainModelTest.GEMM;
import static org.peft4j.train.engine.TrainModelTest.concat;
import static org.peft4j.train.engine.TrainModelTest.stories;

/// LongLoRA's S²-Attn through the whole training forward/backward on stories260K (8 query / 4 key-value heads, 5
/// layers, B 2, T 16: four groups of 4): training forwards use it and evaluation forwards do not; the gradients of
/// the attention projections through it against finite differences of the training loss (TrainModelTest's step and
/// tolerance); checkpointing (blocks recomputed with S²) changing nothing; a length it cannot split refused.
/// The layer itself is checked against LongLoRA's semantics in numpy by ShiftedAttentionTest.
class ShiftAttnTrainTest {
    static final int B = 2, T = 16;

    static int[][] batch(int V) {
        SplittableRandom r = new SplittableRandom(21);
        int[] tokens = new int[B * T], labels = new int[B * T], targets = new int[B * T];
        for (int i = 0; i < tokens.length; i++) { tokens[i] = 3 + r.nextInt(V - 3); labels[i] = tokens[i]; }
        for (int t = 0; t < 3; t++) labels[t] = CrossEntropy.IGNORE;
        CrossEntropy.shiftLabels(targets, labels, B, T);
        return new int[][] {tokens, targets};
    }

    static TrainModel model(LlamaWeights w, boolean shift, boolean ckpt) {
        TrainModel tm = new TrainModel(w, new Method.Full(), GEMM, B, T, ckpt, 3);
        tm.setShiftAttn(shift);
        return tm;
    }

    @Test
    void trainingForwardsShiftEvaluationForwardsDoNot() {
        LlamaWeights w = stories();
        int[][] bt = batch(w.config.vocabSize());
        TrainModel s2 = model(w, true, false), full = model(w, false, false);
        double s2Train = s2.forward(bt[0], bt[1], T, true, 0), fullTrain = full.forward(bt[0], bt[1], T, true, 0);
        assertNotEquals(fullTrain, s2Train, 1e-3, "S²-Attn in a training forward");
        assertEquals(full.forward(bt[0], bt[1], T, false, 0), s2.forward(bt[0], bt[1], T, false, 0), 0, "evaluation keeps full attention");
        System.out.printf("stories260K random batch, summed token loss: full %.5f, S² %.5f%n", fullTrain, s2Train);
    }

    @Test
    void gradientsMatchFiniteDifferencesAndCheckpointingChangesNothing() {
        LlamaWeights w = stories();
        int[][] bt = batch(w.config.vocabSize());
        float[][] grads = new float[2][];
        for (int ck = 0; ck < 2; ck++) {
            TrainModel tm = model(w, true, ck == 1);
            tm.zeroGrad();
            tm.forward(bt[0], bt[1], T, true, 0);
            tm.backward(bt[0], bt[1], T, 1f, 0);
            grads[ck] = concat(tm.params());
            if (ck == 1) break;
            String worst = "-";
            double worstErr = 0;
            for (String key : List.of("layers.0.self_attn.q_proj", "layers.2.self_attn.k_proj", "layers.4.self_attn.v_proj")) {
                Param p = tm.params().stream().filter(x -> x.name().contains(key)).findFirst().orElseThrow();
                float[] g = p.grad().clone();
                int i = TrainModelTest.argmaxAbs(g);
                SplittableRandom r = new SplittableRandom(key.hashCode());
                for (int s = 0; s < 4; s++, i = r.nextInt(g.length)) {
                    double h = FD_STEP * Math.max(1, Math.abs(p.data()[i]));
                    double num = (4 * slope(tm, bt, p.data(), i, h) - slope(tm, bt, p.data(), i, 2 * h)) / 3;
                    double err = Math.abs(num - g[i]) / Math.max(Math.max(Math.abs(num), Math.abs(g[i])), 1e-2 * Math.abs(g[TrainModelTest.argmaxAbs(g)]));
                    if (!(err <= worstErr)) { worstErr = err; worst = p.name() + "[" + i + "]: analytic " + g[i] + " numeric " + num; }
                }
            }
            if (!(worstErr <= FD_TOLERANCE)) fail("S²-Attn gradients disagree with finite differences: " + worst + " (relative " + worstErr + ")");
            System.out.println("S²-Attn finite differences, worst: " + worst + " (relative " + worstErr + ")");
        }
        assertTrue(Math.abs(grads[0][0]) + Math.abs(grads[0][grads[0].length - 1]) > 0);
        assertArrayEquals(grads[0], grads[1], "checkpointing recomputes the blocks with S²-Attn");
    }

    static double slope(TrainModel tm, int[][] bt, float[] x, int i, double h) {
        float x0 = x[i], xp = (float) (x0 + h), xm = (float) (x0 - h);
        x[i] = xp;
        double lp = tm.forward(bt[0], bt[1], T, true, 0);
        x[i] = xm;
        double lm = tm.forward(bt[0], bt[1], T, true, 0);
        x[i] = x0;
        return (lp - lm) / ((double) xp - xm);
    }

    @Test
    void lengthItCannotSplitIsRefused() {
        LlamaWeights w = stories();
        int[][] bt = batch(w.config.vocabSize());
        TrainModel tm = model(w, true, false);
        var e = assertThrows(ConfigException.class, () -> tm.forward(bt[0], bt[1], 12, true, 0));
        assertTrue(e.getMessage().contains("multiple of 8"), e.getMessage());
        assertEquals(16, TrainModel.shiftAttnLength(12, true));
        assertEquals(12, TrainModel.shiftAttnLength(12, false));
    }
}
