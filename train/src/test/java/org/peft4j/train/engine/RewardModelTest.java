package org.peft4j.train.engine;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.peft4j.model.adapter.lora.LoraConfig;
import org.peft4j.model.layers.ValueHead;
import org.peft4j.model.llama.LlamaWeights;
import org.peft4j.testkit.GradCheck;
import org.peft4j.train.data.TokenizedExample;

import java.io.IOException;
import java.io.InputStream;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.*;
import static org.peft4j.testkit.Assert.assertClose;

/// Stage rm's value head and pairwise loss ([ValueHead], [RewardObjective]): values, losses, accuracy and gradients
/// against an independent numpy implementation (reference/reward_loss.py → pref/reward_loss.json), the op's backward
/// against finite differences, and the whole chain decoder → final norm → last-token gather → value head → loss
/// against finite differences on the real stories260K (LoRA and full tuning), plus the saved head's names.
class RewardModelTest {
    static JsonNode fixture() throws IOException {
        try (InputStream in = RewardModelTest.class.getResourceAsStream("/pref/reward_loss.json")) {
            assertNotNull(in, "pref/reward_loss.json missing: run python3 reference/reward_loss.py");
            return new ObjectMapper().readTree(in);
        }
    }

    static float[] floats(JsonNode n) {
        float[] a = new float[n.size()];
        for (int i = 0; i < a.length; i++) a[i] = (float) n.get(i).asDouble();
        return a;
    }

    static double[] doubles(JsonNode n) {
        double[] a = new double[n.size()];
        for (int i = 0; i < a.length; i++) a[i] = n.get(i).asDouble();
        return a;
    }

    /// The value head and the loss on fixed inputs (a tied pair, a saturated pair) equal numpy's; so do the gradients
    /// of the mean loss w.r.t. the gathered states, the weight and the bias (numpy: central differences in double).
    @Test
    void valuesLossAndGradientsEqualTheNumpyReference() throws IOException {
        JsonNode f = fixture();
        int P = f.get("P").asInt(), C = f.get("C").asInt(), R = 2 * P;
        float[] x = floats(f.get("x")), w = floats(f.get("w")), b = floats(f.get("b"));
        double[] v = new double[R], losses = new double[P], dv = new double[R];
        ValueHead.forward(v, x, w, b, R, C);
        // numpy computed in double from double inputs, rounded to float here: values agree to that rounding (~1e-7)
        assertClose("values", doubles(f.get("values")), v, 1e-6, 1e-6);
        double sum = ValueHead.pairwiseForward(losses, v, P);
        assertClose("pair losses", doubles(f.get("losses")), losses, 1e-6, 1e-6);
        assertEquals(f.get("mean_loss").asDouble(), sum / P, 1e-6);
        int correct = 0;
        for (int p = 0; p < P; p++) correct += v[p] > v[P + p] ? 1 : 0;
        assertEquals(f.get("accuracy").asDouble(), (double) correct / P, 1e-12, "a tie is not a correct ranking (chosen > rejected)");
        ValueHead.pairwiseBackward(dv, v, P, 1.0 / P);
        float[] dx = new float[R * C], dw = new float[C], db = new float[1];
        ValueHead.backward(dx, dw, db, dv, x, w, R, C);
        assertClose("dx", floats(f.get("dx")), dx, 1e-6, 1e-5);
        assertClose("dw", floats(f.get("dw")), dw, 1e-6, 1e-5);
        assertClose("db", floats(f.get("db")), db, 1e-6, 1e-5);
        // the bias cancels in a pair: its gradient is zero; the tie's loss is ln 2
        assertEquals(0, db[0], 1e-7);
        assertEquals(Math.log(2), losses[1], 1e-12);
    }

    /// The op's hand-written backward against testkit's finite differences (float steps), with random inputs.
    @Test
    void valueHeadAndLossPassFiniteDifferences() {
        int P = 3, C = 7, R = 2 * P;
        var rng = new SplittableRandom(3);
        float[] x = new float[R * C], w = new float[C], b = {0.2f}, dx = new float[R * C], dw = new float[C], db = new float[1];
        for (int i = 0; i < x.length; i++) x[i] = (float) rng.nextDouble(-1, 1);
        for (int i = 0; i < C; i++) w[i] = (float) rng.nextDouble(-1, 1);
        double[] v = new double[R], losses = new double[P], dv = new double[R];
        System.out.println("gradcheck worst " + GradCheck.checkScalar("ValueHead→pairwise loss",
                () -> {
                    ValueHead.forward(v, x, w, b, R, C);
                    return ValueHead.pairwiseForward(losses, v, P) / P;
                },
                () -> {
                    ValueHead.pairwiseBackward(dv, v, P, 1.0 / P);
                    ValueHead.backward(dx, dw, db, dv, x, w, R, C);
                },
                // the bias cancels in every pair (its gradient is exactly 0, checked against numpy above)
                new GradCheck.Param("x", x, dx), new GradCheck.Param("w", w, dw)));
    }

    static final int T = 10;

    /// Two pairs of different lengths (so the gather reads different positions and rows carry padding).
    static SequenceObjective.Units units(int V) {
        var r = new SplittableRandom(9);
        int[] lens = {T, 6, 8, T - 1};   // chosen0, chosen1, rejected0, rejected1
        List<TokenizedExample> ex = new ArrayList<>();
        for (int len : lens) {
            int[] ids = new int[len];
            for (int i = 0; i < len; i++) ids[i] = 3 + r.nextInt(V - 3);
            ex.add(new TokenizedExample(ids, ids.clone()));
        }
        return new SequenceObjective.Units(List.of(ex.get(0), ex.get(1)), List.of(ex.get(2), ex.get(3)), null);
    }

    /// The chain from the weights to the loss: the analytic gradients of LoRA A/B (the adapter of a layer), of the value
    /// head, and (full tuning) of the final norm and a layer weight, against Richardson central differences at the
    /// tolerance of TrainModelTest's whole-model check.
    @Test
    void wholeChainPassesFiniteDifferences() {
        LlamaWeights w = TrainModelTest.stories();
        TrainModel lora = new TrainModel(w, new Method.Lora(LoraConfig.of(4, LoraConfig.ALL_LINEAR)), TrainModelTest.GEMM, 4, T, false, 3);
        var rng = new SplittableRandom(5);
        for (Param p : lora.params()) if (p.name().endsWith("lora_B.weight")) for (int i = 0; i < p.data().length; i++) p.data()[i] = (float) (rng.nextGaussian() * 0.05);
        checkChain(lora, List.of("layers.1.self_attn.q_proj.lora_A", "layers.3.mlp.down_proj.lora_B", RewardObjective.WEIGHT));
        TrainModel full = new TrainModel(TrainModelTest.stories(), new Method.Full(), TrainModelTest.GEMM, 4, T, false, 3);
        checkChain(full, List.of(LlamaWeights.NORM, "model.layers.4.mlp.up_proj.weight", RewardObjective.WEIGHT));
        // an untied lm_head gets no gradient through the value head: it is not trained (nor decayed)
        assertFalse(full.params().stream().anyMatch(p -> p.name().equals(LlamaWeights.LM_HEAD)), "no lm_head parameter");
    }

    static void checkChain(TrainModel tm, List<String> which) {
        var obj = new RewardObjective(tm, 5, null);
        var u = units(tm.config.vocabSize());
        int[] ids = {0, 1};
        tm.zeroGrad();
        double loss0 = obj.forward(u, ids, 0, false, 0, null, null);
        obj.backward(0.5, 0);
        assertTrue(Double.isFinite(loss0) && loss0 > 0);
        SplittableRandom r = new SplittableRandom(2);
        String worst = "-";
        double worstError = -1;
        for (String key : which) {
            Param p = tm.params().stream().filter(x -> x.name().contains(key)).findFirst().orElseThrow(() -> new AssertionError("no param " + key));
            float[] g = p.grad().clone();
            double gmax = Math.abs(g[TrainModelTest.argmaxAbs(g)]);
            assertTrue(gmax > 0, p.name() + " has an all-zero gradient");
            double floor = TrainModelTest.FD_FLOOR * gmax;
            for (int s = 0; s < 4; s++) {
                int i = s == 0 ? TrainModelTest.argmaxAbs(g) : r.nextInt(p.data().length);
                double h = TrainModelTest.FD_STEP * Math.max(1, Math.abs(p.data()[i]));
                double num = (4 * slope(obj, u, ids, p.data(), i, h) - slope(obj, u, ids, p.data(), i, 2 * h)) / 3;
                double err = Math.abs(num - g[i]) / Math.max(Math.max(Math.abs(num), Math.abs(g[i])), floor);
                if (Double.isNaN(err)) err = Double.POSITIVE_INFINITY;
                if (!(err <= worstError)) {
                    worstError = err;
                    worst = String.format("%s[%d]: analytic %.6g numeric %.6g (relative error %.3g)", p.name(), i, g[i], num, err);
                }
            }
        }
        if (!(worstError <= TrainModelTest.FD_TOLERANCE)) fail("reward chain gradients disagree with finite differences; worst " + worst);
        System.out.println("reward chain finite differences, worst: " + worst);
    }

    /// d(mean pair loss)/dx[i]: forward returns the sum over the 2 pairs, backward ran with scale 1/2.
    static double slope(RewardObjective obj, SequenceObjective.Units u, int[] ids, float[] x, int i, double h) {
        float x0 = x[i], xp = (float) (x0 + h), xm = (float) (x0 - h);
        x[i] = xp;
        double lp = obj.forward(u, ids, 0, false, 0, null, null) / 2;
        x[i] = xm;
        double lm = obj.forward(u, ids, 0, false, 0, null, null) / 2;
        x[i] = x0;
        return (lp - lm) / ((double) xp - xm);
    }

    /// The head is saved under LLaMA-Factory's file and tensor names and shapes, and reads back bit for bit.
    @Test
    void valueHeadSavesAsLlamaFactoryDoes(@TempDir Path dir) {
        LlamaWeights w = TrainModelTest.stories();
        TrainModel tm = new TrainModel(w, new Method.Lora(LoraConfig.of(2, LoraConfig.ALL_LINEAR)), TrainModelTest.GEMM, 2, T, false, 1);
        var obj = new RewardObjective(tm, 11, null);
        int C = w.config.hiddenSize();
        double bound = 1 / Math.sqrt(C);
        for (float v : obj.weight()) assertTrue(Math.abs(v) <= bound, "nn.Linear's init bound 1/sqrt(hidden)");
        obj.save(dir);
        var st = org.peft4j.formats.safetensors.SafeTensors.open(dir.resolve(RewardObjective.FILE));
        try {
            assertArrayEquals(new long[] {1, C}, st.info(RewardObjective.WEIGHT).shape());
            assertArrayEquals(new long[] {1}, st.info(RewardObjective.BIAS).shape());
        } finally {
            st.close();
        }
        float[] w2 = new float[C], b2 = new float[1];
        RewardObjective.read(dir.resolve(RewardObjective.FILE), w2, b2);
        assertArrayEquals(obj.weight(), w2);
        assertArrayEquals(obj.bias(), b2);
        assertThrows(org.peft4j.core.Peft4jException.ConfigException.class, () -> RewardObjective.read(dir.resolve("missing.safetensors"), w2, b2));
    }
}
