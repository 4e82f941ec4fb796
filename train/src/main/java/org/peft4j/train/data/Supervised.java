package org.peft4j.train.data;

import org.peft4j.core.Peft4jException.ConfigException;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

import static org.peft4j.train.data.TokenizedExample.IGNORE_INDEX;

/// Supervised fine-tuning examples: `<prompt> <response>` per turn, labels IGNORE_INDEX on prompts, cut to
/// `cutoff_len` turn by turn, and optional packing. Reference: LLaMA-Factory `data/processor/supervised.py`
/// (`SupervisedDatasetProcessor._encode_data_example`, `PackedSupervisedDatasetProcessor`) and
/// `processor_utils.py` (`infer_seqlen`, `greedy_knapsack`).
public final class Supervised {
    private Supervised() {}

    /// `cutoff_len`, `train_on_prompt`, `mask_history` of LLaMA-Factory's YAML.
    public record Options(int cutoffLen, boolean trainOnPrompt, boolean maskHistory) {
        public Options {
            if (cutoffLen <= 0) throw new ConfigException("cutoff_len must be positive, got " + cutoffLen);
        }
    }

    /// Source and target lengths after truncating to `cutoff`: a short target (2·target < cutoff) is kept whole,
    /// else a short source is kept whole, else both shrink in proportion, target getting ⌊cutoff·t/(s+t)⌋.
    public static int[] inferSeqlen(int sourceLen, int targetLen, int cutoff) {
        int maxTarget;
        if (targetLen * 2 < cutoff) maxTarget = cutoff;
        else if (sourceLen * 2 < cutoff) maxTarget = cutoff - sourceLen;
        else maxTarget = (int) (cutoff * ((double) targetLen / (sourceLen + targetLen)));
        int newTarget = Math.min(maxTarget, targetLen);
        int newSource = Math.min(Math.max(cutoff - newTarget, 0), sourceLen);
        return new int[] {newSource, newTarget};
    }

    /// One conversation as a training sequence. Turns are cut in order (with `maskHistory`, from the last turn
    /// backwards, so the trained turn survives) until `cutoffLen` is used up; later turns are dropped.
    public static TokenizedExample encode(Template template, TextEncoder encoder, Conversation c, Options o) {
        if (o.trainOnPrompt() && template.efficientEos())
            throw new ConfigException("template '" + template.name() + "' uses efficient_eos, which does not support train_on_prompt");
        List<EncodedTurn> turns = new ArrayList<>(template.encodeMultiturn(encoder, c));
        int eos = template.efficientEos() ? template.eosId(encoder) : -1;
        int total = template.efficientEos() ? 1 : 0;
        if (o.maskHistory()) java.util.Collections.reverse(turns);
        List<int[]> pieces = new ArrayList<>(), labelPieces = new ArrayList<>();
        for (int t = 0; t < turns.size(); t++) {
            if (total >= o.cutoffLen()) break;
            int[] lens = inferSeqlen(turns.get(t).prompt().length, turns.get(t).response().length, o.cutoffLen() - total);
            int[] source = Arrays.copyOf(turns.get(t).prompt(), lens[0]);
            int[] target = Arrays.copyOf(turns.get(t).response(), lens[1]);
            total += lens[0] + lens[1];

            int[] sourceLabel;
            if (o.trainOnPrompt()) sourceLabel = source;
            else {
                sourceLabel = new int[lens[0]];
                Arrays.fill(sourceLabel, IGNORE_INDEX);
                // efficient_eos: the previous response's EOS sits at the start of this prompt, and is trained
                if (template.efficientEos() && t != 0 && lens[0] > 0) sourceLabel[0] = eos;
            }
            int[] targetLabel = target;
            if (o.maskHistory() && t != 0) {
                targetLabel = new int[lens[1]];
                Arrays.fill(targetLabel, IGNORE_INDEX);
            }
            pieces.add(source); pieces.add(target);
            labelPieces.add(sourceLabel); labelPieces.add(targetLabel);
        }
        IntArray ids = new IntArray(), labels = new IntArray();
        int n = pieces.size();
        for (int k = 0; k < n; k += 2) {
            int i = o.maskHistory() ? n - 2 - k : k; // reversed turns go back to reading order
            ids.addAll(pieces.get(i)); ids.addAll(pieces.get(i + 1));
            labels.addAll(labelPieces.get(i)); labels.addAll(labelPieces.get(i + 1));
        }
        if (template.efficientEos()) { ids.add(eos); labels.add(eos); }
        return new TokenizedExample(ids.toArray(), labels.toArray());
    }

    public static List<TokenizedExample> encodeAll(Template template, TextEncoder encoder, List<Conversation> cs, Options o) {
        List<TokenizedExample> out = new ArrayList<>(cs.size());
        for (Conversation c : cs) out.add(encode(template, encoder, c, o));
        return out;
    }

    /// LLaMA-Factory `packing: true` for sft: whole examples grouped into sequences of at most `cutoffLen` tokens by
    /// greedy knapsack (largest that fits first), examples longer than `cutoffLen` dropped. As in LLaMA-Factory without
    /// `neat_packing`, attention crosses example boundaries inside a pack (one causal mask over the whole sequence) and
    /// positions run 0..T-1 over the pack; labels of each example are unchanged, so no loss crosses examples except
    /// through attention. Packs are not padded here ([Batcher] pads); LLaMA-Factory pads each to cutoff_len + 1.
    public static List<TokenizedExample> pack(List<TokenizedExample> examples, int cutoffLen, boolean neatPacking) {
        if (neatPacking)
            throw new ConfigException("neat_packing (packing without cross-attention between examples) is not supported yet; "
                    + "use packing: true (attention crosses packed examples) or packing: false");
        List<TokenizedExample> fitting = new ArrayList<>();
        for (TokenizedExample e : examples) if (e.length() <= cutoffLen) fitting.add(e);
        // greedy_knapsack on lengths sorted ascending; among equal lengths LLaMA-Factory pops the last-added example
        List<Integer> order = new ArrayList<>();
        for (int i = 0; i < fitting.size(); i++) order.add(i);
        order.sort(java.util.Comparator.<Integer>comparingInt(i -> fitting.get(i).length()).thenComparingInt(i -> i));
        List<TokenizedExample> packs = new ArrayList<>();
        while (!order.isEmpty()) {
            IntArray ids = new IntArray(), labels = new IntArray();
            int remaining = cutoffLen;
            while (true) {
                int k = largestFitting(order, fitting, remaining);
                if (k < 0) break;
                TokenizedExample e = fitting.get(order.remove(k));
                remaining -= e.length();
                ids.addAll(e.inputIds()); labels.addAll(e.labels());
            }
            packs.add(new TokenizedExample(ids.toArray(), labels.toArray()));
        }
        return packs;
    }

    /// `search_for_fit`: index of the last (largest) length ≤ capacity in the ascending order, or -1.
    private static int largestFitting(List<Integer> order, List<TokenizedExample> ex, int capacity) {
        int lo = 0, hi = order.size();
        while (lo < hi) {
            int mid = (lo + hi) >>> 1;
            if (ex.get(order.get(mid)).length() <= capacity) lo = mid + 1; else hi = mid;
        }
        return lo - 1;
    }
}
