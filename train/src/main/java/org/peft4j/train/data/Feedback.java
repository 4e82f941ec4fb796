package org.peft4j.train.data;

import java.util.ArrayList;
import java.util.List;

/// Unpaired feedback (stage kto) as training sequences: each example is its conversation (the answer labelled
/// desirable or undesirable by `kto_tag`) and a "KL" sequence, the same prompt with an unrelated answer, from which KTO
/// estimates the policy's KL divergence from the reference. Reference: LLaMA-Factory `data/processor/feedback.py`
/// (`FeedbackDatasetProcessor`): the KL answers are the batch's answers in reverse order (`kl_response =
/// examples["_response"][::-1]`, over `dataset.map` batches of `preprocessing_batch_size` = 1000 rows), each sequence
/// encoded with `encode_oneturn`, efficient_eos appended, and cut by its own `infer_seqlen`; the prompt is masked from
/// the labels as in SFT.
public final class Feedback {
    private Feedback() {}

    /// LLaMA-Factory's default `preprocessing_batch_size`: the KL answers are reversed within blocks of this many rows.
    public static final int PREPROCESSING_BATCH = 1000;

    /// A labelled conversation as loaded (`kto_tag` true = desirable).
    public record Labelled(Conversation conversation, boolean desirable) {}

    /// One encoded example: the target sequence, the KL sequence and the label.
    public record Example(TokenizedExample target, TokenizedExample kl, boolean desirable) {}

    /// Every labelled conversation encoded with its KL sequence, in order.
    public static List<Example> encodeAll(Template template, TextEncoder encoder, List<Labelled> rows, int cutoffLen) {
        List<Example> out = new ArrayList<>(rows.size());
        for (int b0 = 0; b0 < rows.size(); b0 += PREPROCESSING_BATCH) {
            int b1 = Math.min(rows.size(), b0 + PREPROCESSING_BATCH);
            for (int i = b0; i < b1; i++) {
                Conversation c = rows.get(i).conversation(), other = rows.get(b1 - 1 - (i - b0)).conversation();
                out.add(new Example(encode(template, encoder, c, cutoffLen),
                        encode(template, encoder, withLastAnswerOf(c, other), cutoffLen), rows.get(i).desirable()));
            }
        }
        return out;
    }

    private static TokenizedExample encode(Template template, TextEncoder encoder, Conversation c, int cutoffLen) {
        int[][] pa = Pairwise.encodeOneturn(template, encoder, c);
        return Pairwise.example(pa[0], pa[1], Supervised.inferSeqlen(pa[0].length, pa[1].length, cutoffLen));
    }

    /// `c` with its last answer replaced by the last answer of `other`.
    static Conversation withLastAnswerOf(Conversation c, Conversation other) {
        List<Message> m = new ArrayList<>(c.messages());
        m.set(m.size() - 1, other.messages().getLast());
        return new Conversation(c.system(), c.tools(), m);
    }

    /// Examples flattened as [target₀, kl₀, target₁, kl₁, …], as [Pairwise#interleave] carries pairs.
    public static List<TokenizedExample> interleave(List<Example> examples) {
        List<TokenizedExample> out = new ArrayList<>(2 * examples.size());
        for (Example e : examples) { out.add(e.target()); out.add(e.kl()); }
        return out;
    }

    /// The labels of `examples`, in order.
    public static boolean[] tags(List<Example> examples) {
        boolean[] t = new boolean[examples.size()];
        for (int i = 0; i < t.length; i++) t[i] = examples.get(i).desirable();
        return t;
    }
}
