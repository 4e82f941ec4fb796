package org.peft4j.train.engine;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import org.junit.jupiter.api.Test;
import org.peft4j.model.layers.AsftLoss;
import org.peft4j.model.layers.CrossEntropy;
import org.peft4j.testkit.GradCheck;

import java.io.InputStream;
import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.*;
import static org.peft4j.testkit.Assert.assertClose;
import static org.peft4j.train.engine.TokenWeightedLossTest.floats;

/// LLaMA-Factory's ASFT loss ([AsftLoss]): DFT weights, per-row KL, loss and d(loss)/d(logits) against an independent
/// numpy implementation (reference/token_weighted_losses.py → loss/token_weighted.json "asft", gradients by central
/// differences with the DFT weights held and the reference constant), the vector path against its scalar twin, and
/// finite differences of the op with testkit's GradCheck.
class AsftLossTest {
    @Test
    void equalsTheNumpyReference() throws Exception {
        JsonNode f;
        try (InputStream in = AsftLossTest.class.getResourceAsStream("/loss/token_weighted.json")) {
            assertNotNull(in, "loss/token_weighted.json missing: run python3 reference/token_weighted_losses.py");
            f = new ObjectMapper().readTree(in);
        }
        int N = f.get("N").asInt(), V = f.get("V").asInt(), count = f.get("count").asInt();
        float[] logits = floats(f.get("logits")), refAll = floats(f.get("asft").get("ref_logits"));
        int[] targets = new int[N];
        for (int i = 0; i < N; i++) targets[i] = f.get("targets").get(i).asInt();
        int M = AsftLoss.labelled(targets, N);
        assertEquals(count, M);
        for (JsonNode c : f.get("asft").get("cases")) {
            double alpha = c.get("alpha").asDouble();
            for (boolean scalar : new boolean[] {false, true}) {
                float[] ref = compact(refAll, targets, N, V, M);
                float[] w = new float[N], losses = new float[N], kl = new float[N], scales = new float[N], dl = new float[N * V];
                double[] lse = new double[N];
                double[] sums = AsftLoss.forward(w, losses, lse, kl, logits, targets, ref, N, V, scalar);
                String what = "asft alpha " + alpha + (scalar ? " scalar" : " vector");
                assertClose(what + " weights", floats(c.get("weights")), w, 1e-6, 1e-5);
                assertClose(what + " kl", floats(c.get("kl")), kl, 1e-6, 1e-5);
                assertEquals(c.get("loss").asDouble(), (sums[0] + alpha * sums[1]) / M, 1e-5, what + " loss");
                AsftLoss.backward(dl, logits, lse, targets, w, ref, scales, N, V, alpha, 1f / M, scalar);
                assertClose(what + " dlogits", floats(c.get("dlogits")), dl, 1e-6, 1e-4);
            }
        }
    }

    /// The labelled rows of `all` (N, V), in order: what the trainer's reference pass produces.
    static float[] compact(float[] all, int[] targets, int N, int V, int M) {
        float[] out = new float[M * V];
        for (int n = 0, m = 0; n < N; n++) if (targets[n] != CrossEntropy.IGNORE) System.arraycopy(all, n * V, out, m++ * V, V);
        return out;
    }

    /// GradCheck over random logits (DFT weights computed once and held, the detach; the reference constant).
    @Test
    void passesFiniteDifferencesWithWeightsHeld() {
        int N = 5, V = 33;
        var rng = new SplittableRandom(5);
        float[] logits = new float[N * V], refAll = new float[N * V];
        for (int i = 0; i < logits.length; i++) { logits[i] = (float) rng.nextDouble(-2, 2); refAll[i] = (float) rng.nextDouble(-2, 2); }
        int[] targets = {1, CrossEntropy.IGNORE, 32, 7, 0};
        int M = AsftLoss.labelled(targets, N);
        double alpha = 0.3;
        float[] ref = compact(refAll, targets, N, V, M);
        float[] w = new float[N], losses = new float[N], kl = new float[N], scales = new float[N], dl = new float[N * V];
        double[] lse = new double[N];
        AsftLoss.forward(w, losses, lse, kl, logits, targets, ref, N, V, true);
        float[] held = w.clone(), logq = ref.clone();
        System.out.println("gradcheck worst " + GradCheck.checkScalar("asft",
                () -> {
                    CrossEntropy.forwardScalar(losses, lse, logits, targets, N, V);
                    double s = 0;
                    for (int n = 0, m = 0; n < N; n++) {
                        if (targets[n] == CrossEntropy.IGNORE) continue;
                        s += held[n] * losses[n];
                        for (int v = 0, r = m++ * V; v < V; v++)
                            s += alpha * Math.exp(logq[r + v]) * (logq[r + v] - (logits[n * V + v] - lse[n]));
                    }
                    return s;
                },
                () -> AsftLoss.backward(dl, logits, lse, targets, held, logq, scales, N, V, alpha, 1f, true),
                new GradCheck.Param("logits", logits, dl)));
    }

    /// The KL term is 0 when policy and reference agree, positive otherwise; alpha 0 leaves DFT's gradient.
    @Test
    void klIsZeroAtTheReference() {
        int N = 3, V = 17;
        var rng = new SplittableRandom(9);
        float[] logits = new float[N * V];
        for (int i = 0; i < logits.length; i++) logits[i] = (float) rng.nextDouble(-3, 3);
        int[] targets = {4, 2, CrossEntropy.IGNORE};
        float[] w = new float[N], l = new float[N], kl = new float[N];
        double[] lse = new double[N];
        float[] same = compact(logits, targets, N, V, 2);
        double[] s = AsftLoss.forward(w, l, lse, kl, logits, targets, same, N, V, false);
        assertEquals(0, s[1], 1e-6, "KL of a distribution to itself");
        float[] shifted = compact(logits, targets, N, V, 2);
        shifted[3] += 2;
        assertTrue(AsftLoss.forward(w, l, lse, kl, logits, targets, shifted, N, V, false)[1] > 1e-3);
        float[] a = new float[N * V], b = new float[N * V], scales = new float[N];
        AsftLoss.backward(a, logits, lse, targets, w, shifted, scales, N, V, 0, 0.5f, false);
        org.peft4j.model.layers.TokenWeightedLoss.backward(b, logits, lse, targets, w, scales, N, V, 0.5f, false);
        assertArrayEquals(b, a, "alpha 0 is DFT");
    }
}
