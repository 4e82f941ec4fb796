package org.peft4j.train.data;

import java.util.Arrays;
import java.util.List;

import static org.peft4j.train.data.TokenizedExample.IGNORE_INDEX;

/// Preference pairs as training sequences: `<prompt> <chosen>` and `<prompt> <rejected>`, the prompt (every earlier
/// turn included) masked from the labels exactly as in SFT, both cut to `cutoff_len` by the same (source, target)
/// lengths so the two share the prompt. Reference: LLaMA-Factory `data/processor/pairwise.py`
/// (`PairwiseDatasetProcessor._encode_data_example`: `encode_oneturn`, efficient_eos appended to both answers,
/// `infer_seqlen(len(prompt), max(len(chosen), len(rejected)), cutoff_len)`).
public final class Pairwise {
    private Pairwise() {}

    /// One encoded pair.
    public record Pair(TokenizedExample chosen, TokenizedExample rejected) {}

    /// `chosenAndRejected`: {chosen, rejected} conversations that differ only in their last answer.
    public static Pair encode(Template template, TextEncoder encoder, Conversation[] chosenAndRejected, int cutoffLen) {
        int[][] prompt = new int[2][], answer = new int[2][];
        for (int i = 0; i < 2; i++) {
            int[][] pa = encodeOneturn(template, encoder, chosenAndRejected[i]);
            prompt[i] = pa[0];
            answer[i] = pa[1];
        }
        int[] lens = Supervised.inferSeqlen(prompt[0].length, Math.max(answer[0].length, answer[1].length), cutoffLen);
        int[] source = Arrays.copyOf(prompt[0], lens[0]);
        return new Pair(example(source, Arrays.copyOf(answer[0], Math.min(lens[1], answer[0].length))),
                example(source, Arrays.copyOf(answer[1], Math.min(lens[1], answer[1].length))));
    }

    /// LLaMA-Factory's `template.encode_oneturn`: {prompt, answer} ids of a conversation, every turn before the last
    /// answer (earlier answers included) in the prompt, efficient_eos appended to the answer.
    static int[][] encodeOneturn(Template template, TextEncoder encoder, Conversation c) {
        List<EncodedTurn> turns = template.encodeMultiturn(encoder, c);
        IntArray p = new IntArray();
        for (int t = 0; t < turns.size() - 1; t++) { p.addAll(turns.get(t).prompt()); p.addAll(turns.get(t).response()); }
        p.addAll(turns.getLast().prompt());
        int[] a = turns.getLast().response();
        if (template.efficientEos()) { a = Arrays.copyOf(a, a.length + 1); a[a.length - 1] = template.eosId(encoder); }
        return new int[][] {p.toArray(), a};
    }

    /// A prompt-masked example of the first `lens[0]` prompt ids and first `lens[1]` answer ids.
    static TokenizedExample example(int[] prompt, int[] answer, int[] lens) {
        return example(Arrays.copyOf(prompt, lens[0]), Arrays.copyOf(answer, Math.min(lens[1], answer.length)));
    }

    private static TokenizedExample example(int[] source, int[] target) {
        int[] ids = Arrays.copyOf(source, source.length + target.length), labels = new int[ids.length];
        System.arraycopy(target, 0, ids, source.length, target.length);
        Arrays.fill(labels, 0, source.length, IGNORE_INDEX);
        System.arraycopy(target, 0, labels, source.length, target.length);
        return new TokenizedExample(ids, labels);
    }

    /// Pairs flattened as [chosen₀, rejected₀, chosen₁, rejected₁, …]: how [org.peft4j.train.TrainData] carries them.
    public static List<TokenizedExample> interleave(List<Pair> pairs) {
        List<TokenizedExample> out = new java.util.ArrayList<>(2 * pairs.size());
        for (Pair p : pairs) { out.add(p.chosen()); out.add(p.rejected()); }
        return out;
    }

    /// The inverse of [#interleave].
    public static List<Pair> pairs(List<TokenizedExample> interleaved) {
        if (interleaved.size() % 2 != 0) throw new IllegalArgumentException("an odd number of sequences cannot be pairs: " + interleaved.size());
        List<Pair> out = new java.util.ArrayList<>(interleaved.size() / 2);
        for (int i = 0; i < interleaved.size(); i += 2) out.add(new Pair(interleaved.get(i), interleaved.get(i + 1)));
        return out;
    }
}
