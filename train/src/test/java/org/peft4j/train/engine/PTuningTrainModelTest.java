package org.peft4j.train.engine;

import org.junit.jupiter.api.Test;
import org.peft4j.model.adapter.LoadedAdapter;
import org.peft4j.model.adapter.ptuning.PromptEncoderConfig;
import org.peft4j.model.llama.LlamaModel;
import org.peft4j.model.llama.LlamaWeights;
import org.peft4j.testkit.Assert;

import java.util.Arrays;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.peft4j.train.engine.TrainModelTest.B;
import static org.peft4j.train.engine.TrainModelTest.GEMM;
import static org.peft4j.train.engine.TrainModelTest.T;
import static org.peft4j.train.engine.TrainModelTest.assertRejected;
import static org.peft4j.train.engine.TrainModelTest.batch;
import static org.peft4j.train.engine.TrainModelTest.checkGradients;
import static org.peft4j.train.engine.TrainModelTest.concat;
import static org.peft4j.train.engine.TrainModelTest.scaled;
import static org.peft4j.train.engine.TrainModelTest.stories;

/// P-tuning through the whole training forward/backward on stories260K: the trained tensors are the prompt
/// encoder's (PEFT's names under prompt_encoder.); the training forward's logits equal the inference engine's with
/// the encoder's output as a prompt-tuning adapter; the encoder's gradients through the model against finite
/// differences (TrainModelTest's sampler and tolerance; MLP and LSTM) and a 10% error rejected; checkpointing and
/// gradient accumulation over two backwards change nothing.
class PTuningTrainModelTest {
    static final int N_VIRTUAL = 3;

    static TrainModel model(LlamaWeights w, String type, boolean ckpt) {
        return new TrainModel(w, new Method.PTuning(new PromptEncoderConfig(N_VIRTUAL, type, 8, type.equals("LSTM") ? 1 : 2, 0)), GEMM, B, T, ckpt, 3);
    }

    @Test
    void paramsAreTheEncodersAndTheForwardEqualsInferenceWithItsOutput() {
        LlamaWeights w = stories();
        TrainModel tm = model(w, "MLP", false);
        assertEquals(List.of("prompt_encoder.embedding.weight", "prompt_encoder.mlp_head.0.weight", "prompt_encoder.mlp_head.0.bias",
                "prompt_encoder.mlp_head.2.weight", "prompt_encoder.mlp_head.2.bias", "prompt_encoder.mlp_head.4.weight", "prompt_encoder.mlp_head.4.bias"),
                tm.params().stream().map(Param::name).toList());
        assertEquals(N_VIRTUAL, tm.virtualTokens());
        int[][] bt = batch(w.config.vocabSize(), 1);
        tm.params().get(1).data()[0] += 0.5f;   // the output follows the weights at the next forward
        tm.forward(bt[0], bt[1], T, false, 0);
        int V = w.config.vocabSize(), Te = N_VIRTUAL + T;
        float[] e = tm.ptuningEmbeddings();
        assertArrayEquals(e, tm.trainedAdapter().prompt.embeddings());
        LoadedAdapter a = LoadedAdapter.of("p", "test", new org.peft4j.model.adapter.prompt.PromptAdapter(N_VIRTUAL, w.config.hiddenSize(), "RANDOM", null, null, null, e), w.config);
        int[] row = new int[Te];
        System.arraycopy(bt[0], T, row, N_VIRTUAL, T);   // row 1, after its placeholders
        float[] ref = new LlamaModel(w, GEMM).logits(row, a);
        Assert.assertClose("training forward vs inference, P-tuning", ref, Arrays.copyOfRange(tm.logits(), Te * V, 2 * Te * V), 1e-5, 1e-5);
    }

    /// Differences across a ReLU's kink are wrong by O(1): the linears feeding the head's ReLUs get biases ±`margin`
    /// on alternating units (as PTuningTest), so no ReLU input comes near 0 under the check's steps.
    static TrainModel offTheKinks(TrainModel tm, float margin, String... linears) {
        for (String l : linears)
            for (Param p : tm.params())
                if (p.name().equals("prompt_encoder." + l + ".bias")) for (int i = 0; i < p.data().length; i++) p.data()[i] = i % 2 == 0 ? margin : -margin;
        return tm;
    }

    @Test
    void mlpEncoderGradientsThroughTheModelMatchFiniteDifferences() {
        TrainModel tm = offTheKinks(model(stories(), "MLP", false), 3f, "mlp_head.0", "mlp_head.2");
        List<String> which = List.of("embedding.weight", "mlp_head.0.weight", "mlp_head.2.bias", "mlp_head.4.weight");
        checkGradients(tm, tm.config, which);
        assertRejected("mlp_head.0.weight", () -> checkGradients(tm, tm.config, which, scaled("mlp_head.0.weight", 1.1f)));
    }

    @Test
    void lstmEncoderGradientsThroughTheModelMatchFiniteDifferences() {
        TrainModel tm = offTheKinks(model(stories(), "LSTM", false), 1f, "mlp_head.0");
        // the embedding's gradient runs back through both LSTM directions; the LSTM's own weights have gradients near
        // the float forward's noise here (measured 3.2% on bias_hh_l0), PTuningTest checks them in float64
        List<String> which = List.of("embedding.weight", "mlp_head.0.weight", "mlp_head.2.weight");
        checkGradients(tm, tm.config, which);
        assertRejected("embedding.weight", () -> checkGradients(tm, tm.config, which, scaled("embedding.weight", 1.1f)));
    }

    @Test
    void checkpointingAndAccumulationChangeNothing() {
        LlamaWeights w = stories();
        int[][] bt = batch(w.config.vocabSize(), 9);
        float[][] grads = new float[3][];
        for (int k = 0; k < 3; k++) {
            TrainModel tm = model(w, "LSTM", k == 1);
            tm.forward(bt[0], bt[1], T, true, 0);
            tm.backward(bt[0], bt[1], T, k == 2 ? 0.05f : 0.1f, 0);
            if (k == 2) {   // two backwards of half the scale add up to one (the encoder's gradient is folded each time)
                tm.forward(bt[0], bt[1], T, true, 0);
                tm.backward(bt[0], bt[1], T, 0.05f, 0);
            }
            grads[k] = concat(tm.params());
        }
        assertArrayEquals(grads[0], grads[1]);
        Assert.assertClose("accumulated over two backwards", grads[0], grads[2], 1e-7, 1e-5);
        assertFalse(Arrays.stream(new float[][]{grads[0]}).allMatch(g -> { for (float x : g) if (x != 0) return false; return true; }));
    }
}
