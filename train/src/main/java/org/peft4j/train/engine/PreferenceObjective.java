package org.peft4j.train.engine;

import org.peft4j.model.layers.CrossEntropy;
import org.peft4j.model.layers.PreferenceLoss;
import org.peft4j.train.data.Batcher;
import org.peft4j.train.data.TokenizedExample;

import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

import static org.peft4j.train.data.TokenizedExample.IGNORE_INDEX;

/// One step of preference tuning (stage dpo) on a [TrainModel], in the order it runs: a batch of P pairs becomes 2P
/// rows, the P chosen sequences then the P rejected ones (LLaMA-Factory's `PairwiseDataCollatorWithPadding`); the
/// reference pass (pref_loss sigmoid/hinge/ipo: the base with the adapter off, no kept activations) gives the
/// reference log-probabilities; the policy forward gives logits, [org.peft4j.model.layers.SequenceLogps] the per-row
/// log-probabilities of the answers (prompt tokens masked as in SFT), [PreferenceLoss] the per-pair losses; backward
/// runs the same chain reversed. TRL's metrics (rewards/chosen, rewards/rejected, rewards/accuracies, rewards/margins,
/// logps/chosen, logps/rejected) are summed over pairs in [Totals].
public final class PreferenceObjective {
    /// Sums over pairs of the loss and the metrics TRL's `DPOTrainer` logs, for means over a logging window.
    public static final class Totals {
        double loss, rewardsChosen, rewardsRejected, accuracies, margins, logpsChosen, logpsRejected;
        int pairs;

        public int pairs() { return pairs; }

        public double meanLoss() { return loss / pairs; }

        public void reset() { loss = rewardsChosen = rewardsRejected = accuracies = margins = logpsChosen = logpsRejected = 0; pairs = 0; }

        /// The means under TRL's names, each key prefixed (`eval_` for evaluation, as transformers does).
        public Map<String, Double> means(String prefix) {
            Map<String, Double> m = new LinkedHashMap<>();
            if (pairs == 0) return m;
            m.put(prefix + "rewards/chosen", rewardsChosen / pairs);
            m.put(prefix + "rewards/rejected", rewardsRejected / pairs);
            m.put(prefix + "rewards/accuracies", accuracies / pairs);
            m.put(prefix + "rewards/margins", margins / pairs);
            m.put(prefix + "logps/chosen", logpsChosen / pairs);
            m.put(prefix + "logps/rejected", logpsRejected / pairs);
            return m;
        }
    }

    private final TrainModel model;
    private final PreferenceLoss.Config cfg;
    private final int maxPairs;
    private final int[] targets;                     // (2P, T) shifted labels
    private final double[] logps, refLogps, dlogps;  // (2P)
    private final int[] counts, refCounts;           // (2P)
    private final double[] pc, pr, rc, rr, dpc, dpr; // (P)
    private final int[] nc, nr;                      // (P)
    private final PreferenceLoss.Out out;
    private int P, T;

    public PreferenceObjective(TrainModel model, PreferenceLoss.Config cfg) {
        if (model.B % 2 != 0) throw new IllegalArgumentException("preference rows come in pairs; the model's batch " + model.B + " is odd");
        this.model = model;
        this.cfg = cfg;
        maxPairs = model.B / 2;
        targets = new int[model.B * model.Tmax];
        logps = new double[model.B]; refLogps = new double[model.B]; dlogps = new double[model.B];
        counts = new int[model.B]; refCounts = new int[model.B];
        pc = new double[maxPairs]; pr = new double[maxPairs]; rc = new double[maxPairs]; rr = new double[maxPairs];
        dpc = new double[maxPairs]; dpr = new double[maxPairs];
        nc = new int[maxPairs]; nr = new int[maxPairs];
        out = PreferenceLoss.Out.allocate(maxPairs);
    }

    public PreferenceLoss.Config config() { return cfg; }

    /// Pairs per forward: half the model's rows.
    public int maxPairs() { return maxPairs; }

    /// The (2P, T) batch of the pairs `chosen.get(ids[i])`, `rejected.get(ids[i])`: chosen rows first, right-padded
    /// with `padId` (labels IGNORE) to the longest of all 2P rows. `exampleIds` keeps the pair indices.
    public static Batcher.Batch batch(List<TokenizedExample> chosen, List<TokenizedExample> rejected, int[] ids, int padId) {
        int P = ids.length, T = 0;
        int[] lengths = new int[2 * P];
        for (int i = 0; i < P; i++) {
            lengths[i] = chosen.get(ids[i]).length();
            lengths[P + i] = rejected.get(ids[i]).length();
            T = Math.max(T, Math.max(lengths[i], lengths[P + i]));
        }
        int[] input = new int[2 * P * T], labels = new int[2 * P * T];
        Arrays.fill(input, padId);
        Arrays.fill(labels, IGNORE_INDEX);
        for (int r = 0; r < 2 * P; r++) {
            TokenizedExample e = r < P ? chosen.get(ids[r]) : rejected.get(ids[r - P]);
            System.arraycopy(e.inputIds(), 0, input, r * T, e.length());
            System.arraycopy(e.labels(), 0, labels, r * T, e.length());
        }
        return new Batcher.Batch(2 * P, T, input, labels, lengths, ids.clone());
    }

    /// Forward of a pair batch from [#batch] (2P rows of T): returns the sum of the P pair losses and adds the metrics
    /// into `totals`. `training` enables dropout and NEFTune in the policy pass (never in the reference pass); the
    /// Trainer passes false, as LLaMA-Factory disables dropout for DPO.
    public double forward(Batcher.Batch b, boolean training, long step, Totals totals) { return forward(b, training, step, totals, null); }

    /// A cache of reference log-probabilities by pair index (TRL's `precompute_ref_log_probs`, filled as pairs are
    /// first seen): the reference pass has no dropout and a frozen model, so a pair's values never change.
    public static double[] newReferenceCache(int pairs) {
        double[] c = new double[2 * pairs];
        Arrays.fill(c, Double.NaN);
        return c;
    }

    /// As [#forward(Batcher.Batch, boolean, long, Totals)], skipping the reference pass when `refCache` (from
    /// [#newReferenceCache], indexed by the batch's pair ids; null for none) holds every pair of the batch.
    public double forward(Batcher.Batch b, boolean training, long step, Totals totals, double[] refCache) {
        P = b.B() / 2;
        T = b.T();
        if (P < 1 || 2 * P != b.B() || P > maxPairs) throw new IllegalArgumentException("a pair batch has 2P rows, P in [1, " + maxPairs + "]; got " + b.B());
        CrossEntropy.shiftLabels(targets, b.labels(), 2 * P, T);
        if (cfg.kind().needsReference()) {
            boolean cached = refCache != null;
            for (int p = 0; cached && p < P; p++) cached = !Double.isNaN(refCache[2 * b.exampleIds()[p]]);
            if (cached) {
                for (int p = 0; p < P; p++) { refLogps[p] = refCache[2 * b.exampleIds()[p]]; refLogps[P + p] = refCache[2 * b.exampleIds()[p] + 1]; }
            } else {
                model.referenceLogps(refLogps, refCounts, b.inputIds(), targets, 2 * P, T);
                if (refCache != null)
                    for (int p = 0; p < P; p++) { refCache[2 * b.exampleIds()[p]] = refLogps[p]; refCache[2 * b.exampleIds()[p] + 1] = refLogps[P + p]; }
            }
        }
        model.forwardLogits(b.inputIds(), 2 * P, T, training, step);
        model.sequenceLogps(logps, counts, targets, T);
        for (int p = 0; p < P; p++) {
            pc[p] = logps[p]; pr[p] = logps[P + p];
            nc[p] = counts[p]; nr[p] = counts[P + p];
            rc[p] = refLogps[p]; rr[p] = refLogps[P + p];
            if (nc[p] == 0 || nr[p] == 0)
                throw new org.peft4j.core.Peft4jException.ConfigException("pair " + b.exampleIds()[p] + " has an answer with no labelled token left after cutoff_len; raise cutoff_len");
        }
        boolean ref = cfg.kind().needsReference();
        double loss = PreferenceLoss.forward(out, cfg, pc, pr, nc, nr, ref ? rc : null, ref ? rr : null, P);
        if (totals != null) {
            totals.loss += loss;
            totals.pairs += P;
            for (int p = 0; p < P; p++) {
                double c = out.rewardsChosen()[p], r = out.rewardsRejected()[p];
                totals.rewardsChosen += c;
                totals.rewardsRejected += r;
                totals.accuracies += c > r ? 1 : 0;
                totals.margins += c - r;
                totals.logpsChosen += out.logpsChosen()[p];
                totals.logpsRejected += out.logpsRejected()[p];
            }
        }
        return loss;
    }

    /// Backward of the last [#forward]: `scale` = dLoss/d(sum of its pair losses), 1/(pairs in the accumulated step).
    public void backward(Batcher.Batch b, double scale, long step) {
        boolean ref = cfg.kind().needsReference();
        PreferenceLoss.backward(dpc, dpr, cfg, pc, pr, nc, nr, ref ? rc : null, ref ? rr : null, P, scale);
        for (int p = 0; p < P; p++) { dlogps[p] = dpc[p]; dlogps[P + p] = dpr[p]; }
        model.backwardSequenceLogps(b.inputIds(), targets, dlogps, T, step);
    }
}
