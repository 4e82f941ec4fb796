package org.peft4j.train.engine;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import org.junit.jupiter.api.Test;
import org.peft4j.core.Peft4jException.ConfigException;
import org.peft4j.model.layers.CrossEntropy;
import org.peft4j.model.layers.KtoLoss;
import org.peft4j.model.layers.PreferenceLoss;
import org.peft4j.model.layers.SequenceLogps;
import org.peft4j.testkit.GradCheck;
import org.peft4j.testkit.GradCheck.Param;

import java.io.IOException;
import java.io.InputStream;
import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.*;
import static org.peft4j.testkit.Assert.assertClose;

/// The preference losses of stage dpo ([PreferenceLoss]) and their sequence-level input ([SequenceLogps]):
/// values and gradients against an independent numpy implementation (reference/preference_losses.py, its output
/// committed as pref/preference_losses.json), finite differences through the whole chain logits → log-probabilities
/// → loss for every pref_loss, the vector/scalar twins, and DPO's value at the policy = reference point.
/// It lives in train's test JVM, not model's: its extra lambdas through Parallel.range change the JIT's profile there
/// enough for GeneratorTest's zero-allocation check to fail when both run in one fork.
class PreferenceLossTest {
    /// Both sides evaluate the same double formulas (different libm, log1p/expm1 vs numpy's): ~1e-15 relative;
    /// 1e-12 absolute on O(1..100) values leaves room for the sums' different orders.
    static final double VALUE_ATOL = 1e-12;
    /// numpy's gradients are central differences with h = 1e-6 in double: truncation ~h²·f''' ≈ 1e-12 and rounding
    /// ~1e-16/1e-6 = 1e-10 relative to the loss; 1e-7 is far above both and far below any wrong term (≥ 1e-3).
    static final double GRAD_ATOL = 1e-7;
    /// Vector exp (about 1 ulp in float) against double exp: per-token log-probabilities differ by ~1e-7 relative,
    /// summed over ≤ 30 tokens.
    static final double TWIN_ATOL = 2e-5;

    static JsonNode fixture() throws IOException {
        try (InputStream in = PreferenceLossTest.class.getResourceAsStream("/pref/preference_losses.json")) {
            assertNotNull(in, "pref/preference_losses.json missing: run python3 reference/preference_losses.py");
            return new ObjectMapper().readTree(in);
        }
    }

    static double[] doubles(JsonNode n) {
        double[] a = new double[n.size()];
        for (int i = 0; i < a.length; i++) a[i] = n.get(i).asDouble();
        return a;
    }

    static int[] ints(JsonNode n) {
        int[] a = new int[n.size()];
        for (int i = 0; i < a.length; i++) a[i] = n.get(i).asInt();
        return a;
    }

    @Test
    void valuesAndGradientsEqualTheNumpyReference() throws IOException {
        JsonNode f = fixture();
        double[] pc = doubles(f.get("pc")), pr = doubles(f.get("pr")), rc = doubles(f.get("rc")), rr = doubles(f.get("rr"));
        int[] nc = ints(f.get("nc")), nr = ints(f.get("nr"));
        int P = pc.length;
        assertEquals(11, f.get("cases").size());
        for (JsonNode c : f.get("cases")) {
            var cfg = new PreferenceLoss.Config(PreferenceLoss.Kind.of(c.get("kind").asText()), c.get("beta").asDouble(),
                    c.get("ftx").asDouble(), c.get("label_smoothing").asDouble(), c.get("simpo_gamma").asDouble());
            String what = cfg.toString();
            var out = PreferenceLoss.Out.allocate(P);
            boolean ref = cfg.kind().needsReference();
            PreferenceLoss.forward(out, cfg, pc, pr, nc, nr, ref ? rc : null, ref ? rr : null, P);
            assertClose(what + " losses", doubles(c.get("losses")), out.losses(), VALUE_ATOL, 0);
            assertClose(what + " rewards/chosen", doubles(c.get("rewards_chosen")), out.rewardsChosen(), VALUE_ATOL, 0);
            assertClose(what + " rewards/rejected", doubles(c.get("rewards_rejected")), out.rewardsRejected(), VALUE_ATOL, 0);
            assertClose(what + " logps/chosen", doubles(c.get("logps_chosen")), out.logpsChosen(), VALUE_ATOL, 0);
            assertClose(what + " logps/rejected", doubles(c.get("logps_rejected")), out.logpsRejected(), VALUE_ATOL, 0);
            double[] dpc = new double[P], dpr = new double[P];
            PreferenceLoss.backward(dpc, dpr, cfg, pc, pr, nc, nr, rc, rr, P, 1.0 / P);   // d(mean loss)
            assertClose(what + " d/dpc", doubles(c.get("dpc")), dpc, GRAD_ATOL, 0);
            assertClose(what + " d/dpr", doubles(c.get("dpr")), dpr, GRAD_ATOL, 0);
        }
    }

    /// At the first step of LoRA DPO the policy is the reference: z = 0, so the sigmoid loss is ln 2 and both rewards 0;
    /// with label smoothing it stays ln 2 (both terms are −log σ(0)); IPO's is 1/(4β²).
    @Test
    void policyEqualToReferenceGivesLn2AndZeroRewards() {
        double[] c = {-12.5, -3.25}, r = {-20, -1.5};
        int[] n = {5, 3};
        for (double eps : new double[] {0, 0.1}) {
            var out = PreferenceLoss.Out.allocate(2);
            var cfg = new PreferenceLoss.Config(PreferenceLoss.Kind.SIGMOID, 0.1, 0, eps, 0.5);
            double sum = PreferenceLoss.forward(out, cfg, c, r, n, n, c, r, 2);
            assertEquals(2 * Math.log(2), sum, 1e-15);
            assertArrayEquals(new double[] {0, 0}, out.rewardsChosen(), 0);
            assertArrayEquals(new double[] {0, 0}, out.rewardsRejected(), 0);
        }
        var out = PreferenceLoss.Out.allocate(2);
        PreferenceLoss.forward(out, new PreferenceLoss.Config(PreferenceLoss.Kind.IPO, 0.5, 0, 0, 0.5), c, r, n, n, c, r, 2);
        assertEquals(1.0, out.losses()[0], 1e-15);
    }

    /// logits (2P rows × T × V) → SequenceLogps → PreferenceLoss (mean over pairs): the hand-written chain backward
    /// against central differences, for every pref_loss, with ignored (prompt, padding) positions in each row.
    @Test
    void chainFromLogitsPassesFiniteDifferences() {
        int P = 2, T = 4, V = 5, R = 2 * P, N = R * T;
        int I = CrossEntropy.IGNORE;
        int[] targets = {I, 1, 3, I,   I, I, 0, 4,   I, 2, 2, 1,   I, 4, I, I};   // chosen0, chosen1, rejected0, rejected1
        double[] ref = {-4.1, -3.0, -6.2, -1.9};                                 // reference sums per row
        var rng = new SplittableRandom(11);
        for (var kind : PreferenceLoss.Kind.values()) {
            for (double ftx : new double[] {0, 0.7}) {
                var cfg = new PreferenceLoss.Config(kind, kind == PreferenceLoss.Kind.SIMPO ? 1.5 : 0.4, ftx,
                        kind == PreferenceLoss.Kind.SIGMOID ? 0.1 : 0, 0.3);
                float[] logits = new float[N * V], dlogits = new float[N * V], scratch = new float[N];
                for (int i = 0; i < logits.length; i++) logits[i] = (float) rng.nextDouble(-2, 2);
                double[] logps = new double[R], dlogps = new double[R], lse = new double[N];
                int[] counts = new int[R];
                double[] pc = new double[P], pr = new double[P], dpc = new double[P], dpr = new double[P];
                int[] nc = new int[P], nr = new int[P];
                double[] rc = {ref[0], ref[1]}, rr = {ref[2], ref[3]};
                var out = PreferenceLoss.Out.allocate(P);
                Runnable split = () -> {
                    for (int p = 0; p < P; p++) { pc[p] = logps[p]; pr[p] = logps[P + p]; nc[p] = counts[p]; nr[p] = counts[P + p]; }
                };
                System.out.println("gradcheck worst " + GradCheck.checkScalar("SequenceLogps→PreferenceLoss " + cfg,
                        () -> {
                            SequenceLogps.forwardScalar(logps, counts, lse, logits, targets, R, T, V);
                            split.run();
                            return PreferenceLoss.forward(out, cfg, pc, pr, nc, nr, rc, rr, P) / P;
                        },
                        () -> {
                            PreferenceLoss.backward(dpc, dpr, cfg, pc, pr, nc, nr, rc, rr, P, 1.0 / P);
                            for (int p = 0; p < P; p++) { dlogps[p] = dpc[p]; dlogps[P + p] = dpr[p]; }
                            SequenceLogps.backwardScalar(dlogits, logits, lse, targets, dlogps, scratch, R, T, V);
                        },
                        new Param("logits", logits, dlogits)));
            }
        }
    }

    /// The Vector API path of SequenceLogps (and of CrossEntropy's per-row-scaled backward) against its scalar twin,
    /// at vocabulary sizes that exercise vector tails.
    @Test
    void vectorPathEqualsScalarTwin() {
        var rng = new SplittableRandom(5);
        for (int V : new int[] {1, 7, 31, 33, 4097}) {
            int B = 3, T = 5, N = B * T;
            float[] logits = new float[N * V];
            for (int i = 0; i < logits.length; i++) logits[i] = (float) rng.nextDouble(-4, 4);
            int[] targets = new int[N];
            for (int i = 0; i < N; i++) targets[i] = i % 4 == 0 ? CrossEntropy.IGNORE : rng.nextInt(V);
            double[] a = new double[B], b = new double[B], lseA = new double[N], lseB = new double[N], d = {0.5, -1.25, 2};
            int[] ca = new int[B], cb = new int[B];
            SequenceLogps.forward(a, ca, lseA, logits, targets, B, T, V);
            SequenceLogps.forwardScalar(b, cb, lseB, logits, targets, B, T, V);
            assertArrayEquals(cb, ca);
            assertClose("logps V=" + V, b, a, TWIN_ATOL, 0);
            float[] ga = new float[N * V], gb = new float[N * V], s = new float[N];
            SequenceLogps.backward(ga, logits, lseA, targets, d, s, B, T, V);
            SequenceLogps.backwardScalar(gb, logits, lseB, targets, d, s, B, T, V);
            assertClose("dlogits V=" + V, gb, ga, 1e-6, 1e-5);
        }
    }

    /// KTO ([KtoLoss]): the micro-batch loss, per-example losses, rewards and d(loss)/dp against the numpy reference,
    /// with a positive KL estimate and with one that clamps to 0, with weights and pref_ftx.
    @Test
    void ktoEqualsTheNumpyReference() throws IOException {
        JsonNode f;
        try (InputStream in = PreferenceLossTest.class.getResourceAsStream("/pref/kto_losses.json")) {
            assertNotNull(in, "pref/kto_losses.json missing: run python3 reference/preference_losses.py");
            f = new ObjectMapper().readTree(in);
        }
        double[] p = doubles(f.get("p")), p0 = doubles(f.get("p0")), pkl = doubles(f.get("pkl"));
        int[] len = ints(f.get("lengths"));
        int N = p.length;
        boolean[] desirable = new boolean[N];
        for (int i = 0; i < N; i++) desirable[i] = f.get("desirable").get(i).asBoolean();
        assertEquals(6, f.get("cases").size());
        boolean sawClamp = false;
        for (JsonNode c : f.get("cases")) {
            var cfg = new KtoLoss.Config(c.get("beta").asDouble(), c.get("desirable_weight").asDouble(),
                    c.get("undesirable_weight").asDouble(), c.get("ftx").asDouble());
            double kl = KtoLoss.kl(pkl, doubles(c.get("p0kl")), N);
            assertEquals(c.get("kl").asDouble(), kl, VALUE_ATOL, cfg + " kl");
            sawClamp |= kl == 0;
            double[] losses = new double[N], rewards = new double[N], dp = new double[N];
            double sum = KtoLoss.forward(losses, rewards, cfg, p, p0, len, desirable, kl, N);
            assertEquals(c.get("loss").asDouble(), sum / N, VALUE_ATOL, cfg + " micro-batch loss");
            assertClose(cfg + " losses", doubles(c.get("losses")), losses, VALUE_ATOL, 0);
            assertClose(cfg + " rewards", doubles(c.get("rewards")), rewards, VALUE_ATOL, 0);
            KtoLoss.backward(dp, cfg, p, p0, len, desirable, kl, N, 1.0 / N);
            assertClose(cfg + " d/dp", doubles(c.get("dp")), dp, GRAD_ATOL, 0);
        }
        assertTrue(sawClamp, "a case whose KL estimate clamps to 0");
    }

    /// logits → SequenceLogps → KtoLoss: the chain backward against central differences (the KL sequences' values are
    /// fixed inputs: TRL detaches the KL estimate).
    @Test
    void ktoChainFromLogitsPassesFiniteDifferences() {
        int N = 3, T = 4, V = 5, M = N * T;
        int I = CrossEntropy.IGNORE;
        int[] targets = {I, 1, 3, I,   I, I, 0, 4,   I, 2, 2, 1};
        double[] ref = {-4.1, -3.0, -6.2};
        boolean[] desirable = {true, false, true};
        var rng = new SplittableRandom(12);
        for (double ftx : new double[] {0, 0.6}) {
            var cfg = new KtoLoss.Config(0.7, 1.2, 0.8, ftx);
            double kl = 0.35;
            float[] logits = new float[M * V], dlogits = new float[M * V], scratch = new float[M];
            for (int i = 0; i < logits.length; i++) logits[i] = (float) rng.nextDouble(-2, 2);
            double[] logps = new double[N], dlogps = new double[N], lse = new double[M], losses = new double[N], rewards = new double[N];
            int[] counts = new int[N];
            System.out.println("gradcheck worst " + GradCheck.checkScalar("SequenceLogps→KtoLoss " + cfg,
                    () -> {
                        SequenceLogps.forwardScalar(logps, counts, lse, logits, targets, N, T, V);
                        return KtoLoss.forward(losses, rewards, cfg, logps, ref, counts, desirable, kl, N) / N;
                    },
                    () -> {
                        KtoLoss.backward(dlogps, cfg, logps, ref, counts, desirable, kl, N, 1.0 / N);
                        SequenceLogps.backwardScalar(dlogits, logits, lse, targets, dlogps, scratch, N, T, V);
                    },
                    new Param("logits", logits, dlogits)));
        }
    }

    /// At the first step of LoRA KTO the policy is the reference: KL = 0 and every example's loss is w·(1 − σ(0)) = w/2.
    @Test
    void ktoAtThePolicyEqualsReferencePointIsHalfTheWeight() {
        double[] p = {-7.5, -2.0, -11.0};
        boolean[] desirable = {true, false, false};
        double kl = KtoLoss.kl(p, p, 3);
        assertEquals(0, kl);
        double[] losses = new double[3], rewards = new double[3];
        double sum = KtoLoss.forward(losses, rewards, new KtoLoss.Config(0.1, 1.0, 1.5, 0), p, p, new int[] {3, 1, 4}, desirable, kl, 3);
        assertArrayEquals(new double[] {0.5, 0.75, 0.75}, losses, 1e-15);
        assertArrayEquals(new double[] {0, 0, 0}, rewards, 0);
        assertEquals(2.0, sum, 1e-15);
    }

    @Test
    void rejectsBadSettings() {
        assertThrows(ConfigException.class, () -> PreferenceLoss.Kind.of("kto_pair"));
        assertThrows(ConfigException.class, () -> new PreferenceLoss.Config(PreferenceLoss.Kind.SIGMOID, 0, 0, 0, 0.5));
        assertThrows(ConfigException.class, () -> new PreferenceLoss.Config(PreferenceLoss.Kind.SIGMOID, 0.1, 0, 0.6, 0.5));
        assertThrows(ConfigException.class, () -> new KtoLoss.Config(0.1, -1, 1, 0));
        assertThrows(ConfigException.class, () -> new KtoLoss.Config(0.1, 1, Double.NaN, 0));
    }
}
