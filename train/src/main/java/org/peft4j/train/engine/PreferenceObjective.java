package org.peft4j.train.engine;

import org.peft4j.model.layers.CrossEntropy;
import org.peft4j.model.layers.PreferenceLoss;
import org.peft4j.train.data.Batcher;

/// One step of preference tuning (stage dpo) on a [TrainModel], in the order it runs: a batch of P pairs becomes 2P
/// rows, the P chosen sequences then the P rejected ones (LLaMA-Factory's `PairwiseDataCollatorWithPadding`); the
/// reference pass (pref_loss sigmoid/hinge/ipo: the base with the adapter off, no kept activations) gives the
/// reference log-probabilities; the policy forward gives logits, [org.peft4j.model.layers.SequenceLogps] the per-row
/// log-probabilities of the answers (prompt tokens masked as in SFT), [PreferenceLoss] the per-pair losses; backward
/// runs the same chain reversed. TRL's metrics (rewards/chosen, rewards/rejected, rewards/accuracies, rewards/margins,
/// logps/chosen, logps/rejected) are summed over pairs in [Totals].
public final class PreferenceObjective implements SequenceObjective {
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
    private Batcher.Batch last;
    private long lastTokens;

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

    @Override public int maxUnits() { return maxPairs; }

    @Override public long lastTokens() { return lastTokens; }

    /// Forward of the pairs `ids` (2P rows: the chosen answers, then the rejected ones): returns the sum of the P pair
    /// losses and adds the metrics into `totals`.
    @Override
    public double forward(Units data, int[] ids, int padId, boolean training, long step, Totals totals, double[] refCache) {
        Batcher.Batch b = SequenceObjective.batch(data, ids, padId);
        last = b;
        lastTokens = 0;
        for (int len : b.lengths()) lastTokens += len;
        P = b.B() / 2;
        T = b.T();
        if (P < 1 || P > maxPairs) throw new IllegalArgumentException("a pair batch has P in [1, " + maxPairs + "] pairs; got " + P);
        CrossEntropy.shiftLabels(targets, b.labels(), 2 * P, T);
        if (cfg.kind().needsReference()) SequenceObjective.referenceLogps(model, b, targets, refCache, refLogps, refCounts);
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
            totals.units += P;
            totals.pairs += P;
            totals.chosen += P;
            totals.rejected += P;
            for (int p = 0; p < P; p++) {
                double c = out.rewardsChosen()[p], r = out.rewardsRejected()[p];
                totals.rewardsChosen += c;
                totals.rewardsRejected += r;
                totals.accuracies += c > r ? 1 : 0;
                totals.logpsChosen += out.logpsChosen()[p];
                totals.logpsRejected += out.logpsRejected()[p];
            }
        }
        return loss;
    }

    /// Backward of the last [#forward]: `scale` = dLoss/d(sum of its pair losses), 1/(pairs in the accumulated step).
    @Override
    public void backward(double scale, long step) {
        Batcher.Batch b = last;
        boolean ref = cfg.kind().needsReference();
        PreferenceLoss.backward(dpc, dpr, cfg, pc, pr, nc, nr, ref ? rc : null, ref ? rr : null, P, scale);
        for (int p = 0; p < P; p++) { dlogps[p] = dpc[p]; dlogps[P + p] = dpr[p]; }
        model.backwardSequenceLogps(b.inputIds(), targets, dlogps, T, step);
    }
}
