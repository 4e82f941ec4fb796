package org.peft4j.train.engine;

import org.peft4j.core.Peft4jException.ConfigException;
import org.peft4j.model.layers.CrossEntropy;
import org.peft4j.model.layers.KtoLoss;
import org.peft4j.train.data.Batcher;

/// One step of stage kto on a [TrainModel], in the order it runs (LLaMA-Factory's `CustomKTOTrainer`): for a
/// micro-batch of U labelled examples, the reference pass scores the U examples and their U KL sequences (the base with
/// the adapter off, or the reference given to [TrainModel#useReference]; cached per example after the first epoch);
/// the policy scores the KL sequences without a backward (TRL: under `torch.no_grad()`), which gives the detached KL
/// estimate; the policy forward over the examples gives their log-probabilities, [KtoLoss] the losses, and backward
/// runs that chain reversed. Both passes over U rows: the model is planned for per_device_train_batch_size rows.
/// TRL's metrics (rewards/chosen and logps/chosen over the desirable examples, rewards/rejected and logps/rejected over
/// the undesirable ones, rewards/margins, kl) are summed in [Totals].
public final class KtoObjective implements SequenceObjective {
    private final TrainModel model;
    private final KtoLoss.Config cfg;
    private final int maxUnits;
    private final int[] targets, klTargets;           // (U, T) shifted labels
    private final double[] logps, dlogps, klLogps;     // (U)
    private final double[] ref, refKl;                 // (U) the reference's values of the examples and KL sequences
    private final int[] counts, klCounts, refCounts;   // (U)
    private final double[] losses, rewards;            // (U)
    private final boolean[] desirable;                 // (U)
    private Batcher.Batch last;
    private double kl;
    private int U;
    private long lastTokens;

    public KtoObjective(TrainModel model, KtoLoss.Config cfg) {
        if (!model.hasReference())
            throw new ConfigException("stage kto compares against a reference model; with finetuning_type "
                    + (model.method instanceof Method.Full ? "full" : "freeze") + " give one with ref_model, or use finetuning_type lora");
        this.model = model;
        this.cfg = cfg;
        maxUnits = model.B;
        targets = new int[model.B * model.Tmax];
        klTargets = new int[model.B * model.Tmax];
        logps = new double[model.B]; dlogps = new double[model.B]; klLogps = new double[model.B];
        ref = new double[model.B]; refKl = new double[model.B];
        counts = new int[model.B]; klCounts = new int[model.B]; refCounts = new int[model.B];
        losses = new double[model.B]; rewards = new double[model.B];
        desirable = new boolean[model.B];
    }

    @Override public int maxUnits() { return maxUnits; }

    @Override public long lastTokens() { return lastTokens; }

    /// The KL estimate of the last forward (0 when the policy is closer to the reference than the estimate's noise).
    public double lastKl() { return kl; }

    @Override
    public double forward(Units data, int[] ids, int padId, boolean training, long step, Totals totals, double[] refCache) {
        if (data.desirable() == null) throw new IllegalArgumentException("KTO units need their labels");
        U = ids.length;
        if (U < 1 || U > maxUnits) throw new IllegalArgumentException("a KTO batch has U in [1, " + maxUnits + "] examples; got " + U);
        Batcher.Batch b = Batcher.of(ids, padId, data.first()), k = Batcher.of(ids, padId, data.second());
        last = b;
        lastTokens = 0;
        for (int len : b.lengths()) lastTokens += len;
        for (int len : k.lengths()) lastTokens += len;
        for (int u = 0; u < U; u++) desirable[u] = data.desirable()[ids[u]];
        CrossEntropy.shiftLabels(targets, b.labels(), U, b.T());
        CrossEntropy.shiftLabels(klTargets, k.labels(), U, k.T());
        reference(b, k, ids, refCache);
        model.policyLogps(klLogps, klCounts, k.inputIds(), klTargets, U, k.T());
        kl = KtoLoss.kl(klLogps, refKl, U);
        model.forwardLogits(b.inputIds(), U, b.T(), training, step);
        model.sequenceLogps(logps, counts, targets, b.T());
        for (int u = 0; u < U; u++)
            if (counts[u] == 0)
                throw new ConfigException("example " + ids[u] + " has an answer with no labelled token left after cutoff_len; raise cutoff_len");
        double loss = KtoLoss.forward(losses, rewards, cfg, logps, ref, counts, desirable, kl, U);
        if (totals != null) {
            totals.loss += loss;
            totals.units += U;
            totals.kl += kl;
            totals.klBatches++;
            for (int u = 0; u < U; u++) {
                if (desirable[u]) { totals.chosen++; totals.rewardsChosen += rewards[u]; totals.logpsChosen += logps[u]; }
                else { totals.rejected++; totals.rewardsRejected += rewards[u]; totals.logpsRejected += logps[u]; }
            }
        }
        return loss;
    }

    /// The reference values of the U examples and their KL sequences: from the cache (slots 2·id and 2·id + 1) when
    /// it holds them all, else two reference passes of U rows each.
    private void reference(Batcher.Batch b, Batcher.Batch k, int[] ids, double[] refCache) {
        boolean cached = refCache != null;
        for (int u = 0; cached && u < U; u++) cached = !Double.isNaN(refCache[2 * ids[u]]);
        if (cached) {
            for (int u = 0; u < U; u++) { ref[u] = refCache[2 * ids[u]]; refKl[u] = refCache[2 * ids[u] + 1]; }
            return;
        }
        model.referenceLogps(ref, refCounts, b.inputIds(), targets, U, b.T());
        model.referenceLogps(refKl, refCounts, k.inputIds(), klTargets, U, k.T());
        if (refCache != null)
            for (int u = 0; u < U; u++) { refCache[2 * ids[u]] = ref[u]; refCache[2 * ids[u] + 1] = refKl[u]; }
    }

    @Override
    public void backward(double scale, long step) {
        KtoLoss.backward(dlogps, cfg, logps, ref, counts, desirable, kl, U, scale);
        model.backwardSequenceLogps(last.inputIds(), targets, dlogps, last.T(), step);
    }
}
