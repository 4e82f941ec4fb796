package org.peft4j.train.data;

import java.util.Arrays;

/// An example to generate for (do_predict): the prompt ids (every turn before the last answer, the template's
/// generation prompt included) and the label ids (the last answer, efficient_eos appended), both cut to `cutoff_len`
/// by LLaMA-Factory's `infer_seqlen`. Reference: LLaMA-Factory `data/processor/unsupervised.py`
/// (`UnsupervisedDatasetProcessor._encode_data_example`: `encode_oneturn`, eos appended to the labels with
/// efficient_eos, `infer_seqlen(len(input_ids), len(labels), cutoff_len)`).
public final class Unsupervised {
    private Unsupervised() {}

    public record Example(int[] prompt, int[] label) {}

    public static Example encode(Template template, TextEncoder encoder, Conversation c, int cutoffLen) {
        int[][] pa = Pairwise.encodeOneturn(template, encoder, c);
        int[] lens = Supervised.inferSeqlen(pa[0].length, pa[1].length, cutoffLen);
        return new Example(Arrays.copyOf(pa[0], lens[0]), Arrays.copyOf(pa[1], Math.min(lens[1], pa[1].length)));
    }
}
