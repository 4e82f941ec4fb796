package org.peft4j.train.engine;

import org.peft4j.train.data.Batcher;
import org.peft4j.train.data.TokenizedExample;

import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/// A training objective over whole sequences, the preference stages: each unit the trainer visits is two sequences
/// (DPO: chosen and rejected; KTO: the example and its KL sequence), scored by log-probability sums rather than
/// per-token cross-entropy. The trainer drives both alike: [#forward] over a micro-batch of units returns the sum of
/// their losses (N × the micro-batch mean where the loss is a mean), [#backward] adds its gradient.
public sealed interface SequenceObjective permits PreferenceObjective, KtoObjective, RewardObjective {

    /// The two sequences of every unit, `first.get(i)` and `second.get(i)`, and KTO's labels (null for DPO).
    record Units(List<TokenizedExample> first, List<TokenizedExample> second, boolean[] desirable) {
        public Units {
            if (first.size() != second.size()) throw new IllegalArgumentException(first.size() + " first but " + second.size() + " second sequences");
            if (desirable != null && desirable.length != first.size()) throw new IllegalArgumentException(desirable.length + " labels for " + first.size() + " units");
        }

        /// Units from a list interleaved as [first₀, second₀, first₁, …] ([org.peft4j.train.data.Pairwise#interleave],
        /// [org.peft4j.train.data.Feedback#interleave]).
        public static Units interleaved(List<TokenizedExample> interleaved, boolean[] desirable) {
            if (interleaved.size() % 2 != 0) throw new IllegalArgumentException("an odd number of sequences cannot be units of two: " + interleaved.size());
            List<TokenizedExample> a = new java.util.ArrayList<>(interleaved.size() / 2), b = new java.util.ArrayList<>(interleaved.size() / 2);
            for (int i = 0; i < interleaved.size(); i += 2) { a.add(interleaved.get(i)); b.add(interleaved.get(i + 1)); }
            return new Units(a, b, desirable);
        }

        public int size() { return first.size(); }
    }

    /// Units per forward.
    int maxUnits();

    /// Forward of the units `ids` of `data`: returns the sum of their losses and adds the metrics into `totals`.
    /// `refCache` (from [#newReferenceCache], indexed by unit; null for none) keeps the reference model's values of
    /// units already seen. `training` enables dropout in the policy pass (the trainer passes false, as LLaMA-Factory
    /// disables dropout for preference tuning).
    double forward(Units data, int[] ids, int padId, boolean training, long step, Totals totals, double[] refCache);

    /// Backward of the last [#forward]: `scale` = dLoss/d(its returned sum).
    void backward(double scale, long step);

    /// Tokens (both sequences of every unit, padding excluded) of the last [#forward].
    long lastTokens();

    /// Whether training forwards run with dropout: false for dpo and kto (LLaMA-Factory's `disable_dropout=True`),
    /// true for rm (its PairwiseTrainer trains in plain training mode).
    default boolean dropoutInTraining() { return false; }

    /// A cache of reference log-probabilities by unit (TRL's `precompute_ref_log_probs`, filled as units are first
    /// seen): the reference pass has no dropout and a frozen model, so a unit's two values never change.
    static double[] newReferenceCache(int units) {
        double[] c = new double[2 * units];
        Arrays.fill(c, Double.NaN);
        return c;
    }

    /// The (2U, T) batch of the units `ids`: their first sequences, then their second ones, right-padded with `padId`
    /// (labels IGNORE) to the longest of all 2U rows; `exampleIds` keeps the unit indices (LLaMA-Factory's
    /// `PairwiseDataCollatorWithPadding` layout).
    static Batcher.Batch batch(Units data, int[] ids, int padId) {
        return Batcher.of(ids, padId, data.first(), data.second());
    }

    /// The reference log-probability sums of the 2U rows of `b` (first sequences, then second) into `ref`, from
    /// `refCache` when it holds every unit of the batch, else from the model's reference pass (then cached).
    static void referenceLogps(TrainModel model, Batcher.Batch b, int[] targets, double[] refCache, double[] ref, int[] counts) {
        int U = b.B() / 2;
        int[] ids = b.exampleIds();
        boolean cached = refCache != null;
        for (int u = 0; cached && u < U; u++) cached = !Double.isNaN(refCache[2 * ids[u]]);
        if (cached) {
            for (int u = 0; u < U; u++) { ref[u] = refCache[2 * ids[u]]; ref[U + u] = refCache[2 * ids[u] + 1]; }
            return;
        }
        model.referencePairLogps(ref, counts, b.inputIds(), targets, 2 * U, b.T());
        if (refCache != null)
            for (int u = 0; u < U; u++) { refCache[2 * ids[u]] = ref[u]; refCache[2 * ids[u] + 1] = ref[U + u]; }
    }

    /// Sums of the loss and of the metrics TRL's `DPOTrainer` / `KTOTrainer` log, for means over a logging window.
    /// DPO counts every pair as one chosen and one rejected answer and logs reward accuracy; KTO counts desirable and
    /// undesirable examples apart and logs the KL estimate (mean over micro-batches).
    final class Totals {
        double loss, rewardsChosen, rewardsRejected, accuracies, logpsChosen, logpsRejected, kl;
        int units, chosen, rejected, pairs, klBatches;
        int rankedPairs, correct;   // stage rm: pairs scored by the value head, and those with chosen > rejected

        /// Units (pairs or examples) summed.
        public int units() { return units; }

        public double meanLoss() { return loss / units; }

        /// The values [#pack] writes.
        public static final int PACKED = 14;

        /// Writes the sums into `w[off .. off + PACKED)`, for summing over data-parallel ranks.
        public void pack(double[] w, int off) {
            w[off] = loss; w[off + 1] = rewardsChosen; w[off + 2] = rewardsRejected; w[off + 3] = accuracies;
            w[off + 4] = logpsChosen; w[off + 5] = logpsRejected; w[off + 6] = kl;
            w[off + 7] = units; w[off + 8] = chosen; w[off + 9] = rejected; w[off + 10] = pairs;
            w[off + 11] = klBatches; w[off + 12] = rankedPairs; w[off + 13] = correct;
        }

        /// Adds sums written by [#pack] (the counts are integers below 2^53, exact in a double).
        public void addPacked(double[] w, int off) {
            loss += w[off]; rewardsChosen += w[off + 1]; rewardsRejected += w[off + 2]; accuracies += w[off + 3];
            logpsChosen += w[off + 4]; logpsRejected += w[off + 5]; kl += w[off + 6];
            units += (int) w[off + 7]; chosen += (int) w[off + 8]; rejected += (int) w[off + 9]; pairs += (int) w[off + 10];
            klBatches += (int) w[off + 11]; rankedPairs += (int) w[off + 12]; correct += (int) w[off + 13];
        }

        public void reset() {
            loss = rewardsChosen = rewardsRejected = accuracies = logpsChosen = logpsRejected = kl = 0;
            units = chosen = rejected = pairs = klBatches = rankedPairs = correct = 0;
        }

        /// The means under TRL's names, each key prefixed (`eval_` for evaluation, as transformers does):
        /// rewards/chosen, rewards/rejected, rewards/accuracies (pairs only), rewards/margins (mean chosen reward −
        /// mean rejected reward, as TRL's KTOTrainer; the mean per-pair margin for DPO, the same number), logps/chosen,
        /// logps/rejected, kl (KTO only); for rm `accuracy` (LLaMA-Factory's name). A side without examples in the
        /// window is left out.
        public Map<String, Double> means(String prefix) {
            Map<String, Double> m = new LinkedHashMap<>();
            if (chosen > 0) m.put(prefix + "rewards/chosen", rewardsChosen / chosen);
            if (rejected > 0) m.put(prefix + "rewards/rejected", rewardsRejected / rejected);
            if (pairs > 0) m.put(prefix + "rewards/accuracies", accuracies / pairs);
            if (chosen > 0 && rejected > 0) m.put(prefix + "rewards/margins", rewardsChosen / chosen - rewardsRejected / rejected);
            if (chosen > 0) m.put(prefix + "logps/chosen", logpsChosen / chosen);
            if (rejected > 0) m.put(prefix + "logps/rejected", logpsRejected / rejected);
            if (klBatches > 0) m.put(prefix + "kl", kl / klBatches);
            // stage rm: LLaMA-Factory's ComputeAccuracy (eval_accuracy), also logged for training windows
            if (rankedPairs > 0) m.put(prefix + "accuracy", (double) correct / rankedPairs);
            return m;
        }
    }
}
