package org.peft4j.train.engine;

import org.junit.jupiter.api.Test;
import org.peft4j.model.adapter.LoadedAdapter;
import org.peft4j.model.llama.LlamaModel;
import org.peft4j.model.llama.LlamaWeights;
import org.peft4j.testkit.Assert;

import java.util.Arrays;
import java.util.List;
import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.peft4j.train.engine.TrainModelTest.B;
import static org.peft4j.train.engine.TrainModelTest.GEMM;
import static org.peft4j.train.engine.TrainModelTest.T;
import static org.peft4j.train.engine.TrainModelTest.assertRejected;
import static org.peft4j.train.engine.TrainModelTest.batch;
import static org.peft4j.train.engine.TrainModelTest.checkGradients;
import static org.peft4j.train.engine.TrainModelTest.concat;
import static org.peft4j.train.engine.TrainModelTest.scaled;
import static org.peft4j.train.engine.TrainModelTest.stories;

/// Prefix tuning through the whole training forward/backward on stories260K: the training forward's logits (the
/// prefix's placeholders first) equal the inference engine's with the same adapter; the gradients of the prefix, and
/// with prefix_projection of the MLP's embedding, weights and biases, against finite differences of the loss
/// (TrainModelTest's sampler and tolerance), with the check rejecting a 10% error; checkpointing changes nothing.
class PrefixTrainModelTest {
    static final int N_VIRTUAL = 3;

    static TrainModel model(LlamaWeights w, boolean projection, boolean ckpt) {
        return new TrainModel(w, new Method.Prefix(N_VIRTUAL, projection, projection ? 12 : null), GEMM, B, T, ckpt, 3);
    }

    @Test
    void trainingForwardEqualsInferenceWithTheAdapter() {
        LlamaWeights w = stories();
        for (boolean projection : new boolean[]{false, true}) {
            TrainModel tm = model(w, projection, false);
            int[][] bt = batch(w.config.vocabSize(), 1);
            tm.forward(bt[0], bt[1], T, false, 0);
            int V = w.config.vocabSize(), Te = N_VIRTUAL + T;
            LoadedAdapter a = tm.trainedAdapter();   // with the projection: the MLP's output of that forward
            LlamaModel inf = new LlamaModel(w, GEMM);
            int[] row = new int[Te];
            System.arraycopy(bt[0], T, row, N_VIRTUAL, T);   // row 1, after its placeholders
            float[] ref = inf.logits(row, a);
            Assert.assertClose("training forward vs inference, prefix tuning (projection " + projection + ")", ref,
                    Arrays.copyOfRange(tm.logits(), Te * V, 2 * Te * V), 1e-5, 1e-5);
        }
    }

    @Test
    void prefixGradientMatchesFiniteDifferencesAndAWrongOneIsRejected() {
        LlamaWeights w = stories();
        TrainModel tm = model(w, false, false);
        assertEquals(List.of("prompt_embeddings"), tm.params().stream().map(Param::name).toList());
        assertEquals(N_VIRTUAL * 2 * w.config.numHiddenLayers() * w.config.kvDim(), tm.params().getFirst().data().length);
        checkGradients(tm, w.config, List.of("prompt_embeddings"));
        assertRejected("prompt_embeddings", () -> checkGradients(tm, w.config, List.of("prompt_embeddings"), scaled("prompt_embeddings", 1.1f)));
    }

    @Test
    void mlpGradientsMatchFiniteDifferencesAndAWrongOneIsRejected() {
        LlamaWeights w = stories();
        TrainModel tm = model(w, true, false);
        List<String> names = tm.params().stream().map(Param::name).toList();
        assertEquals(List.of("prompt_encoder.embedding.weight", "prompt_encoder.transform.0.weight", "prompt_encoder.transform.0.bias",
                "prompt_encoder.transform.2.weight", "prompt_encoder.transform.2.bias"), names);
        checkGradients(tm, w.config, names);
        assertRejected("transform.0.weight", () -> checkGradients(tm, w.config, names, scaled("transform.0.weight", 1.1f)));
    }

    @Test
    void checkpointingGivesIdenticalGradients() {
        LlamaWeights w = stories();
        int[][] bt = batch(w.config.vocabSize(), 9);
        float[][] grads = new float[2][];
        for (int ck = 0; ck < 2; ck++) {
            TrainModel tm = model(w, true, ck == 1);
            tm.forward(bt[0], bt[1], T, true, 0);
            tm.backward(bt[0], bt[1], T, 0.1f, 0);
            grads[ck] = concat(tm.params());
        }
        assertArrayEquals(grads[0], grads[1]);
    }
}
