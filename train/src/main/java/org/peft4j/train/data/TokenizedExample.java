package org.peft4j.train.data;

import java.util.Arrays;

/// One training sequence: input ids and labels of the same length; a label of [#IGNORE_INDEX] is not trained.
/// Labels are *not* shifted: the loss at position t predicts `labels[t]` from `inputIds[..t-1]` (HF convention).
public record TokenizedExample(int[] inputIds, int[] labels) {
    /// PyTorch's `CrossEntropyLoss(ignore_index=-100)`, LLaMA-Factory's `IGNORE_INDEX`.
    public static final int IGNORE_INDEX = -100;

    public TokenizedExample {
        if (inputIds.length != labels.length)
            throw new IllegalArgumentException("inputIds has " + inputIds.length + " ids but labels has " + labels.length);
    }

    public int length() { return inputIds.length; }

    /// The number of positions that are trained (label != IGNORE_INDEX).
    public int trainedCount() {
        int n = 0;
        for (int l : labels) if (l != IGNORE_INDEX) n++;
        return n;
    }

    @Override public boolean equals(Object o) {
        return o instanceof TokenizedExample e && Arrays.equals(inputIds, e.inputIds) && Arrays.equals(labels, e.labels);
    }

    @Override public int hashCode() { return 31 * Arrays.hashCode(inputIds) + Arrays.hashCode(labels); }

    @Override public String toString() {
        return "TokenizedExample[inputIds=" + Arrays.toString(inputIds) + ", labels=" + Arrays.toString(labels) + "]";
    }
}
