package org.peft4j.train.data;

import java.util.Arrays;
import java.util.List;

import static org.peft4j.train.data.TokenizedExample.IGNORE_INDEX;

/// Forms (B, T) batches: each epoch visits every example once in an order that depends only on (seed, epoch),
/// rows are right-padded with `padId` (labels IGNORE_INDEX) to the longest row of the batch, and the last batch of an
/// epoch may be smaller (HF DataLoader `drop_last=False`). The [Position] (epoch, index of the next example in that
/// epoch's order) is all the state there is, so saving it and calling [#seek] resumes exactly.
public final class Batcher {

    /// The next example to read: `index` into epoch `epoch`'s order.
    public record Position(int epoch, int index) {
        public Position {
            if (epoch < 0 || index < 0) throw new IllegalArgumentException("negative position " + epoch + "/" + index);
        }
    }

    /// inputIds, labels: (B, T) row-major; lengths: (B) unpadded lengths; exampleIds: (B) indices into the example list.
    public record Batch(int B, int T, int[] inputIds, int[] labels, int[] lengths, int[] exampleIds) {}

    private final List<TokenizedExample> examples;
    private final int batchSize;
    private final int padId;
    private final long seed;
    private final boolean shuffle;
    private int epoch, index;
    private int[] order; // (N) the current epoch's order

    public Batcher(List<TokenizedExample> examples, int batchSize, int padId, long seed, boolean shuffle) {
        if (examples.isEmpty()) throw new IllegalArgumentException("no examples to batch");
        if (batchSize <= 0) throw new IllegalArgumentException("batch size must be positive, got " + batchSize);
        this.examples = List.copyOf(examples);
        this.batchSize = batchSize;
        this.padId = padId;
        this.seed = seed;
        this.shuffle = shuffle;
        seek(new Position(0, 0));
    }

    public Position position() { return new Position(epoch, index); }

    public void seek(Position p) {
        if (p.index() > examples.size()) throw new IllegalArgumentException("index " + p.index() + " > " + examples.size() + " examples");
        epoch = p.epoch();
        index = p.index();
        order = orderOf(epoch);
    }

    /// Batches per epoch: ceil(N / B).
    public int batchesPerEpoch() { return (examples.size() + batchSize - 1) / batchSize; }

    /// The example order of `epoch`: a Fisher–Yates permutation seeded by (seed, epoch), or 0..N-1 without shuffle.
    public int[] orderOf(int epoch) {
        if (!shuffle) {
            int[] o = new int[examples.size()];
            for (int i = 0; i < o.length; i++) o[i] = i;
            return o;
        }
        return DatasetLoader.permutation(examples.size(), seed * 0x9E3779B97F4A7C15L + epoch);
    }

    /// The next batch; moves to the next epoch after its last batch.
    public Batch next() {
        if (index >= examples.size()) { epoch++; index = 0; order = orderOf(epoch); }
        int b = Math.min(batchSize, examples.size() - index);
        int[] ids = new int[b];
        for (int r = 0; r < b; r++) ids[r] = order[index + r];
        index += b;
        return of(ids, padId, examples);
    }

    /// The batch of the examples `ids` of each list in turn (rows: `lists[0]` at every id, then `lists[1]`, …),
    /// right-padded with `padId` (labels IGNORE) to the longest row; `exampleIds` keeps `ids`.
    @SafeVarargs
    public static Batch of(int[] ids, int padId, List<TokenizedExample>... lists) {
        int n = ids.length, B = n * lists.length, T = 0;
        int[] lengths = new int[B];
        for (int r = 0; r < B; r++) {
            lengths[r] = lists[r / n].get(ids[r % n]).length();
            T = Math.max(T, lengths[r]);
        }
        int[] input = new int[B * T], labels = new int[B * T];
        Arrays.fill(input, padId);
        Arrays.fill(labels, IGNORE_INDEX);
        for (int r = 0; r < B; r++) {
            TokenizedExample e = lists[r / n].get(ids[r % n]);
            System.arraycopy(e.inputIds(), 0, input, r * T, e.length());
            System.arraycopy(e.labels(), 0, labels, r * T, e.length());
        }
        return new Batch(B, T, input, labels, lengths, ids.clone());
    }

    /// `b` right-padded with `padId` (labels IGNORE) to T2 ≥ b.T() positions per row (S²-Attn's multiple of 8); `b`
    /// itself when T2 = b.T().
    public static Batch padTo(Batch b, int T2, int padId) {
        if (T2 < b.T()) throw new IllegalArgumentException("cannot pad a batch of " + b.T() + " positions to " + T2);
        if (T2 == b.T()) return b;
        int[] input = new int[b.B() * T2], labels = new int[b.B() * T2];
        Arrays.fill(input, padId);
        Arrays.fill(labels, IGNORE_INDEX);
        for (int r = 0; r < b.B(); r++) {
            System.arraycopy(b.inputIds(), r * b.T(), input, r * T2, b.T());
            System.arraycopy(b.labels(), r * b.T(), labels, r * T2, b.T());
        }
        return new Batch(b.B(), T2, input, labels, b.lengths(), b.exampleIds());
    }
}
