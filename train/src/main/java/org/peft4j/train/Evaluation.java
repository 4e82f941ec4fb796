package org.peft4j.train;

import org.peft4j.model.adapter.LoadedAdapter;
import org.peft4j.model.layers.CrossEntropy;
import org.peft4j.model.llama.Activations;
import org.peft4j.model.llama.KvCache;
import org.peft4j.model.llama.LlamaModel;
import org.peft4j.train.data.TokenizedExample;

import java.util.ArrayList;
import java.util.List;

/// Held-out loss and perplexity with the inference engine (one sequence at a time, all positions): the mean token
/// loss over the labelled targets of every example, as HF's eval loop reports it, and exp of it.
public final class Evaluation {
    public record Result(double loss, double perplexity, long tokens) {}

    private Evaluation() {}

    public static Result evaluate(LlamaModel model, List<TokenizedExample> examples) {
        return evaluate(model, null, examples);
    }

    /// As [#evaluate(LlamaModel, List)] with `adapter` applied to every sequence (null: the base).
    public static Result evaluate(LlamaModel model, LoadedAdapter adapter, List<TokenizedExample> examples) {
        long[] counts = new long[examples.size()];
        double[] losses = summedLosses(model, adapter, examples, counts);
        double sum = 0;
        long n = 0;
        for (int i = 0; i < losses.length; i++) { sum += losses[i]; n += counts[i]; }
        double loss = n == 0 ? Double.NaN : sum / n;
        return new Result(loss, Math.exp(loss), n);
    }

    /// Stage dpo's held-out check of an adapter against its base: rewards β·(log p_adapter − log p_base) of the
    /// chosen and the rejected answer of each pair, as TRL's DPOTrainer logs them. `accuracy`: the fraction of pairs
    /// whose chosen reward is larger; `margin`: the mean of chosen − rejected.
    public record Preference(double accuracy, double margin, double rewardsChosen, double rewardsRejected, int pairs) {}

    /// [Preference] over `interleaved` pairs ([org.peft4j.train.data.Pairwise#interleave]): summed log-probabilities
    /// of each answer (prompt masked) under the base and under `adapter`.
    public static Preference preference(LlamaModel model, LoadedAdapter adapter, List<TokenizedExample> interleaved, double beta) {
        double[] base = sequenceLogps(model, null, interleaved), tuned = sequenceLogps(model, adapter, interleaved);
        int P = interleaved.size() / 2, wins = 0;
        double margin = 0, rc = 0, rr = 0;
        for (int p = 0; p < P; p++) {
            double c = beta * (tuned[2 * p] - base[2 * p]), r = beta * (tuned[2 * p + 1] - base[2 * p + 1]);
            if (c > r) wins++;
            margin += c - r; rc += c; rr += r;
        }
        return new Preference((double) wins / P, margin / P, rc / P, rr / P, P);
    }

    /// Stage kto's held-out check of an adapter against its base: rewards β·(log p_adapter − log p_base) of each
    /// answer, averaged over the desirable (`rewardsChosen`) and the undesirable ones (`rewardsRejected`), and their
    /// difference (`margin`), as TRL's KTOTrainer logs them.
    public record Feedback(double rewardsChosen, double rewardsRejected, double margin, int desirable, int undesirable) {}

    /// [Feedback] over `interleaved` examples with their KL sequences ([org.peft4j.train.data.Feedback#interleave])
    /// labelled by `desirable`; only the examples are scored.
    public static Feedback feedback(LlamaModel model, LoadedAdapter adapter, List<TokenizedExample> interleaved, boolean[] desirable, double beta) {
        List<TokenizedExample> targets = new java.util.ArrayList<>(interleaved.size() / 2);
        for (int i = 0; i < interleaved.size(); i += 2) targets.add(interleaved.get(i));
        double[] base = sequenceLogps(model, null, targets), tuned = sequenceLogps(model, adapter, targets);
        double rc = 0, rr = 0;
        int nc = 0, nr = 0;
        for (int i = 0; i < targets.size(); i++) {
            double r = beta * (tuned[i] - base[i]);
            if (desirable[i]) { rc += r; nc++; } else { rr += r; nr++; }
        }
        rc = nc == 0 ? Double.NaN : rc / nc;
        rr = nr == 0 ? Double.NaN : rr / nr;
        return new Feedback(rc, rr, rc - rr, nc, nr);
    }

    /// Per example, the sum of log p(label) over its labelled targets (the negated summed token loss).
    public static double[] sequenceLogps(LlamaModel model, LoadedAdapter adapter, List<TokenizedExample> examples) {
        double[] out = summedLosses(model, adapter, examples, new long[examples.size()]);
        for (int i = 0; i < out.length; i++) out[i] = -out[i];
        return out;
    }

    /// Per example (one sequence at a time, all positions), the summed token loss over its labelled targets; their
    /// number into `counts`.
    private static double[] summedLosses(LlamaModel model, LoadedAdapter adapter, List<TokenizedExample> examples, long[] counts) {
        int V = model.config.vocabSize();
        int n = adapter == null ? 0 : adapter.virtualTokens();   // prompt tuning: n placeholders first, their labels ignored
        int maxLen = 2;
        for (TokenizedExample e : examples) maxLen = Math.max(maxLen, n + e.length());
        maxLen = Math.min(maxLen, model.config.maxPositionEmbeddings());
        KvCache cache = model.newCache(1, maxLen);
        Activations acts = model.newActivations(1, maxLen, cache);
        float[] logits = new float[maxLen * V];
        double[] lse = new double[maxLen], out = new double[examples.size()];
        int[] targets = new int[maxLen], ids = new int[maxLen], labels = new int[maxLen];
        for (int i = 0; i < examples.size(); i++) {
            TokenizedExample e = examples.get(i);
            int T = Math.min(n + e.length(), maxLen);
            java.util.Arrays.fill(labels, 0, n, CrossEntropy.IGNORE);
            System.arraycopy(e.labels(), 0, labels, n, T - n);
            System.arraycopy(e.inputIds(), 0, ids, n, T - n);
            counts[i] = CrossEntropy.shiftLabels(targets, java.util.Arrays.copyOf(labels, T), 1, T);
            model.forward(logits, java.util.Arrays.copyOf(ids, T), 1, T, 0, adapter, cache, acts, true);
            out[i] = CrossEntropy.forward(null, lse, logits, targets, T, V);
        }
        return out;
    }

    /// Plain text lines as language-modelling examples (BOS + text, every token a target).
    public static List<TokenizedExample> texts(List<String> lines, java.util.function.Function<String, int[]> encodeWithBos) {
        List<TokenizedExample> out = new ArrayList<>();
        for (String s : lines) {
            if (s.isBlank()) continue;
            int[] ids = encodeWithBos.apply(s);
            if (ids.length >= 2) out.add(new TokenizedExample(ids, ids.clone()));
        }
        return out;
    }
}
