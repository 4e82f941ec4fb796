package org.peft4j.bench;

import org.peft4j.core.Gemms;
import org.peft4j.core.Parallel;
import org.peft4j.model.LlamaConfig;
import org.peft4j.model.ModelPresets;
import org.peft4j.model.RandomModels;
import org.peft4j.model.adapter.lora.LoraConfig;
import org.peft4j.model.layers.CrossEntropy;
import org.peft4j.model.layers.PreferenceLoss;
import org.peft4j.model.llama.LlamaWeights;
import org.peft4j.train.data.TokenizedExample;
import org.peft4j.train.engine.Method;
import org.peft4j.train.engine.Param;
import org.peft4j.train.engine.PreferenceObjective;
import org.peft4j.train.engine.SequenceObjective;
import org.peft4j.train.engine.TrainModel;
import org.peft4j.train.optim.AdamW;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.SplittableRandom;

/// A DPO step against an SFT step on the same tokens: `pairs` pairs are 2·pairs rows of `seq` random tokens (the first
/// half of each row a masked prompt, the same in both rows of a pair as in a preference dataset), trained with LoRA r16 on all linear layers of a random-weight preset. The SFT step
/// is forward + cross-entropy + backward + AdamW over those 2·pairs rows; the DPO step (pref_loss sigmoid) adds the
/// reference pass (the base with the adapter off, no kept activations, no backward, each pair's prompt run once) and replaces cross-entropy by
/// sequence log-probabilities and the pair loss. Steps alternate SFT, DPO so that drift on a shared VM hits both;
/// the medians are compared. Goal: DPO ≤ 1.4 × SFT (issue 14).
public final class DpoBench {
    private DpoBench() {}

    public record Result(String model, int seq, int pairs, int threads, String gemm, int steps, double sftMs, double dpoMs,
                         double referenceMs, double cachedMs, double forwardMs, long peakRssBytes) {
        public String line() {
            return String.format("%-13s lora  seq %d pairs %d (%d rows) threads %d gemm %s | median SFT step %6.0f ms (its forward %5.0f ms)"
                            + " | median DPO step %6.0f ms (reference pass %5.0f ms) | DPO/SFT %.2fx | later epochs (reference cached) %6.0f ms = %.2fx | %,.0f tok/s DPO | peak RSS %5.2f GB",
                    model, seq, pairs, 2 * pairs, threads, gemm, sftMs, forwardMs, dpoMs, referenceMs, dpoMs / sftMs, cachedMs, cachedMs / sftMs,
                    2.0 * pairs * seq / (dpoMs * 1e-3), peakRssBytes / 1e9);
        }
    }

    public static Result run(String model, int seq, int pairs, int threads, int warmup, int steps, String gemmMode) {
        if (steps < 1 || warmup < 0 || pairs < 1) throw new org.peft4j.core.Peft4jException.ConfigException("bench train --stage dpo needs steps >= 1, warmup >= 0 and batch >= 1");
        Parallel.setThreads(threads);
        LlamaConfig c = ModelPresets.byName(model);
        LlamaWeights w = RandomModels.create(c, 1234);
        int R = 2 * pairs, N = R * seq;
        TrainModel tm = new TrainModel(w, new Method.Lora(LoraConfig.of(16, LoraConfig.ALL_LINEAR)), Gemms.get(gemmMode), R, seq, false, 42);
        List<float[]> ps = new ArrayList<>(), gs = new ArrayList<>();
        for (Param p : tm.params()) { ps.add(p.data()); gs.add(p.grad()); }
        AdamW opt = new AdamW(ps, gs, AdamW.Config.hfDefaults());
        var pref = new PreferenceObjective(tm, new PreferenceLoss.Config(PreferenceLoss.Kind.SIGMOID, 0.1, 0, 0, 0.5));

        int[] tokens = new int[N], labels = new int[N], targets = new int[N], ids = new int[pairs];
        SplittableRandom r = new SplittableRandom(7);
        long[] sft = new long[steps], dpo = new long[steps], ref = new long[steps], cached = new long[steps], fwd = new long[steps];
        for (int i = 0; i < pairs; i++) ids[i] = i;
        double[] cache = SequenceObjective.newReferenceCache(pairs);
        Arrays.fill(cache, -1.0);   // timing only: a filled cache skips the reference pass, as from the second epoch on
        double[] refLogps = new double[R];
        int[] refCounts = new int[R];
        for (int step = 0; step < warmup + steps; step++) {
            for (int i = 0; i < N; i++) {
                // a pair's rejected answer follows the same prompt as its chosen one (rows p and pairs + p)
                tokens[i] = i >= pairs * seq && i % seq < seq / 2 ? tokens[i - pairs * seq] : r.nextInt(c.vocabSize());
                labels[i] = i % seq < seq / 2 ? CrossEntropy.IGNORE : tokens[i];
            }
            // SFT on the 2·pairs rows
            long t0 = System.nanoTime();
            int count = CrossEntropy.shiftLabels(targets, labels, R, seq);
            tm.zeroGrad();
            tm.forward(tokens, targets, R, seq, true, step);
            long tf = System.nanoTime();
            tm.backward(tokens, targets, seq, 1f / count, step);
            opt.step(1e-4);
            long t1 = System.nanoTime();
            // DPO on the same rows as pairs: rows 0..pairs-1 chosen, the others rejected
            List<TokenizedExample> rows = new ArrayList<>(R);
            for (int i = 0; i < R; i++)
                rows.add(new TokenizedExample(Arrays.copyOfRange(tokens, i * seq, (i + 1) * seq), Arrays.copyOfRange(labels, i * seq, (i + 1) * seq)));
            var units = new SequenceObjective.Units(rows.subList(0, pairs), rows.subList(pairs, R), null);
            tm.zeroGrad();
            pref.forward(units, ids, 0, true, step, null, null);
            pref.backward(1.0 / pairs, step);
            opt.step(1e-4);
            long t2 = System.nanoTime();
            // the reference pass alone, for the split
            tm.referencePairLogps(refLogps, refCounts, tokens, targets, R, seq);
            long t3 = System.nanoTime();
            tm.zeroGrad();
            pref.forward(units, ids, 0, true, step, null, cache);
            pref.backward(1.0 / pairs, step);
            opt.step(1e-4);
            long t4 = System.nanoTime();
            if (step >= warmup) { sft[step - warmup] = t1 - t0; dpo[step - warmup] = t2 - t1; ref[step - warmup] = t3 - t2; cached[step - warmup] = t4 - t3; fwd[step - warmup] = tf - t0; }
        }
        return new Result(model, seq, pairs, threads, Gemms.get(gemmMode).name(), steps, median(sft), median(dpo), median(ref), median(cached), median(fwd), TrainBench.peakRss());
    }

    private static double median(long[] ns) {
        long[] s = ns.clone();
        Arrays.sort(s);
        int n = s.length;
        return (n % 2 == 1 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2.0) * 1e-6;
    }
}
