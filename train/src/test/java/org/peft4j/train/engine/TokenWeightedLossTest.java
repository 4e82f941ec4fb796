package org.peft4j.train.engine;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import org.junit.jupiter.api.Test;
import org.peft4j.model.layers.CrossEntropy;
import org.peft4j.model.layers.TokenWeightedLoss;
import org.peft4j.testkit.GradCheck;

import java.io.InputStream;
import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.*;
import static org.peft4j.testkit.Assert.assertClose;

/// LLaMA-Factory's DFT and EAFT losses ([TokenWeightedLoss]): weights, loss and d(loss)/d(logits) against an
/// independent numpy implementation (reference/token_weighted_losses.py → loss/token_weighted.json, gradients by
/// central differences with the weights held, as torch.no_grad() detaches them), the vector path against its scalar
/// twin, and finite differences of the op with testkit's GradCheck (weights held).
class TokenWeightedLossTest {
    static float[] floats(JsonNode n) {
        float[] a = new float[n.size()];
        for (int i = 0; i < a.length; i++) a[i] = (float) n.get(i).asDouble();
        return a;
    }

    @Test
    void equalsTheNumpyReference() throws Exception {
        JsonNode f;
        try (InputStream in = TokenWeightedLossTest.class.getResourceAsStream("/loss/token_weighted.json")) {
            assertNotNull(in, "loss/token_weighted.json missing: run python3 reference/token_weighted_losses.py");
            f = new ObjectMapper().readTree(in);
        }
        int N = f.get("N").asInt(), V = f.get("V").asInt(), count = f.get("count").asInt();
        float[] logits = floats(f.get("logits"));
        int[] targets = new int[N];
        for (int i = 0; i < N; i++) targets[i] = f.get("targets").get(i).asInt();
        for (JsonNode c : f.get("cases")) {
            var cfg = new TokenWeightedLoss.Config(TokenWeightedLoss.Kind.valueOf(c.get("kind").asText().toUpperCase()), c.get("alpha").asDouble());
            for (boolean scalar : new boolean[] {false, true}) {
                float[] w = new float[N], losses = new float[N], scales = new float[N], dl = new float[N * V];
                double[] lse = new double[N];
                double sum = TokenWeightedLoss.forward(cfg, w, losses, lse, logits, targets, N, V, TokenWeightedLoss.scratch(V), scalar);
                String what = cfg + (scalar ? " scalar" : " vector");
                assertClose(what + " weights", floats(c.get("weights")), w, 1e-6, 1e-5);
                assertEquals(c.get("loss").asDouble(), sum / count, 1e-5, what + " loss");
                TokenWeightedLoss.backward(dl, logits, lse, targets, w, scales, N, V, 1f / count, scalar);
                assertClose(what + " dlogits", floats(c.get("dlogits")), dl, 1e-6, 1e-4);
            }
        }
    }

    /// GradCheck over random logits (weights computed once and held, the detach) for both kinds.
    @Test
    void passesFiniteDifferencesWithWeightsHeld() {
        int N = 5, V = 33;
        var rng = new SplittableRandom(4);
        float[] logits = new float[N * V];
        for (int i = 0; i < logits.length; i++) logits[i] = (float) rng.nextDouble(-2, 2);
        int[] targets = {1, CrossEntropy.IGNORE, 32, 7, 0};
        for (var kind : TokenWeightedLoss.Kind.values()) {
            var cfg = new TokenWeightedLoss.Config(kind, 0.7);
            float[] w = new float[N], losses = new float[N], scales = new float[N], dl = new float[N * V];
            double[] lse = new double[N];
            TokenWeightedLoss.forward(cfg, w, losses, lse, logits, targets, N, V, TokenWeightedLoss.scratch(V), true);
            float[] held = w.clone();
            System.out.println("gradcheck worst " + GradCheck.checkScalar(kind + " weighted CE",
                    () -> {
                        CrossEntropy.forwardScalar(losses, lse, logits, targets, N, V);
                        double s = 0;
                        for (int n = 0; n < N; n++) s += held[n] * losses[n];
                        return s;
                    },
                    () -> TokenWeightedLoss.backward(dl, logits, lse, targets, held, scales, N, V, 1f, true),
                    new GradCheck.Param("logits", logits, dl)));
        }
    }

    /// DFT's weight is the label's probability; EAFT's is larger for a flat row than for a peaked one.
    @Test
    void weightsMeanWhatTheyShould() {
        int V = 40;
        float[] flat = new float[2 * V];
        for (int v = 0; v < V; v++) flat[V + v] = v == 3 ? 12f : 0f;   // row 0 flat, row 1 peaked at 3
        int[] t = {3, 3};
        float[] w = new float[2], l = new float[2];
        double[] lse = new double[2];
        TokenWeightedLoss.forward(new TokenWeightedLoss.Config(TokenWeightedLoss.Kind.DFT, 1), w, l, lse, flat, t, 2, V, TokenWeightedLoss.scratch(V), false);
        assertEquals(1.0 / V, w[0], 1e-6);
        TokenWeightedLoss.forward(new TokenWeightedLoss.Config(TokenWeightedLoss.Kind.EAFT, 1), w, l, lse, flat, t, 2, V, TokenWeightedLoss.scratch(V), false);
        assertEquals(Math.log(20) / 3, w[0], 1e-6, "a flat row: the entropy of 20 equal top logits is ln 20");
        assertTrue(w[1] < 0.01 * w[0], "a peaked row weighs little: " + w[1]);
    }
}
