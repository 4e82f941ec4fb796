package org.peft4j.model.llama;

import org.peft4j.model.adapter.LoadedAdapter;

/// The rows of a batch grouped into runs of consecutive rows that use the same adapter (or none): the base products
/// run once over all rows, the low-rank products once per run. Filled per forward without allocating.
final class AdapterRuns {
    final int[] start;                // (count + 1) first row of each run, then B
    final LoadedAdapter[] adapter;    // (count) the run's adapter, null for the base
    int count;

    AdapterRuns(int B) { start = new int[B + 1]; adapter = new LoadedAdapter[B]; }

    /// Runs of `rows` (null: all base).
    void fill(LoadedAdapter[] rows, int B) {
        count = 0;
        for (int b = 0; b < B; b++) {
            LoadedAdapter a = rows == null ? null : rows[b];
            if (count == 0 || adapter[count - 1] != a) { start[count] = b; adapter[count++] = a; }
        }
        start[count] = B;
    }

    /// The adapter of row b (null: the base).
    LoadedAdapter adapterOf(int b) {
        for (int i = 0; i < count; i++) if (b < start[i + 1]) return adapter[i];
        throw new IllegalArgumentException("row " + b + " outside the " + start[count] + " rows of these runs");
    }

    /// Whether any row uses an adapter.
    boolean any() {
        for (int i = 0; i < count; i++) if (adapter[i] != null) return true;
        return false;
    }
}
