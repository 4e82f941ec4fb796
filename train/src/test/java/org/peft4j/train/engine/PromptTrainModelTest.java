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

/// Prompt tuning through the whole training forward/backward on stories260K: the training forward's logits (virtual
/// tokens first) equal the inference engine's with the same adapter; the prompt embeddings' gradient against finite
/// differences (TrainModelTest's sampler and tolerance) and the check rejecting a 10% error; TEXT init copies the
/// text's word embeddings; checkpointing changes nothing.
class PromptTrainModelTest {
    static final int N_VIRTUAL = 3;

    static TrainModel model(LlamaWeights w, boolean ckpt) {
        return new TrainModel(w, new Method.Prompt(N_VIRTUAL, "RANDOM", null, null), GEMM, B, T, ckpt, 3);
    }

    @Test
    void trainingForwardEqualsInferenceWithTheAdapter() {
        LlamaWeights w = stories();
        TrainModel tm = model(w, false);
        int[][] bt = batch(w.config.vocabSize(), 1);
        tm.forward(bt[0], bt[1], T, false, 0);
        int V = w.config.vocabSize(), Te = N_VIRTUAL + T;
        LoadedAdapter a = tm.trainedAdapter();
        LlamaModel inf = new LlamaModel(w, GEMM);
        int[] row = new int[Te];
        System.arraycopy(bt[0], T, row, N_VIRTUAL, T);   // row 1, after its placeholders
        float[] ref = inf.logits(row, a);
        Assert.assertClose("training forward vs inference, prompt tuning", ref, Arrays.copyOfRange(tm.logits(), Te * V, 2 * Te * V), 1e-5, 1e-5);
    }

    @Test
    void textInitCopiesTheTextsWordEmbeddings() {
        LlamaWeights w = stories();
        TrainModel tm = new TrainModel(w, new Method.Prompt(5, "TEXT", "hi", new int[]{1, 300}), GEMM, B, T, false, 3);
        int C = w.config.hiddenSize();
        float[] e = tm.params().getFirst().data();
        assertEquals("prompt_embeddings", tm.params().getFirst().name());
        int[] expected = {1, 300, 1, 300, 1};   // PEFT: repeated to num_virtual_tokens
        for (int i = 0; i < 5; i++)
            assertArrayEquals(Arrays.copyOfRange(w.embedTokens, expected[i] * C, expected[i] * C + C), Arrays.copyOfRange(e, i * C, i * C + C));
    }

    @Test
    void gradientsMatchFiniteDifferencesAndAWrongOneIsRejected() {
        LlamaWeights w = stories();
        TrainModel tm = model(w, false);
        SplittableRandom r = new SplittableRandom(2);   // embeddings on the scale of the vocabulary's
        float[] e = tm.params().getFirst().data();
        for (int i = 0; i < e.length; i++) e[i] = (float) (0.1 * r.nextGaussian());
        checkGradients(tm, w.config, List.of("prompt_embeddings"));
        assertRejected("prompt_embeddings", () -> checkGradients(tm, w.config, List.of("prompt_embeddings"), scaled("prompt_embeddings", 1.1f)));
    }

    @Test
    void checkpointingGivesIdenticalGradients() {
        LlamaWeights w = stories();
        int[][] bt = batch(w.config.vocabSize(), 9);
        float[][] grads = new float[2][];
        for (int ck = 0; ck < 2; ck++) {
            TrainModel tm = model(w, ck == 1);
            tm.forward(bt[0], bt[1], T, true, 0);
            tm.backward(bt[0], bt[1], T, 0.1f, 0);
            grads[ck] = concat(tm.params());
        }
        assertArrayEquals(grads[0], grads[1]);
    }
}
