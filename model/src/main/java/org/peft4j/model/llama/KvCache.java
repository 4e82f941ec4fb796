package org.peft4j.model.llama;

import org.peft4j.core.Peft4jException.ConfigException;
import org.peft4j.model.LlamaConfig;

/// Keys (after RoPE) and values of every layer for `slots` independent sequences of up to `capacity` positions each.
/// A row of a [Decoder#forward] batch continues one slot; the caller tracks how many positions each slot holds and
/// passes it as that row's `pos0`. Allocated once (per server, per generation); slots are reused by new sequences.
public final class KvCache {
    /// Number of sequences it holds, and positions per sequence.
    public final int slots, capacity;
    /// Same as [#slots]; the batch size of the single-position API.
    public final int B;
    final float[][][] k, v;         // (L)(slots)(capacity, KVH·HS), the layout Attention.forward reads for one row

    public KvCache(LlamaConfig c, int slots, int capacity) {
        if (slots <= 0 || capacity <= 0) throw new ConfigException("KV cache needs slots > 0 and capacity > 0, got " + slots + " slots, capacity " + capacity);
        if (capacity > c.maxPositionEmbeddings())
            throw new ConfigException("KV cache capacity " + capacity + " exceeds max_position_embeddings " + c.maxPositionEmbeddings()
                    + "; ask for at most " + c.maxPositionEmbeddings() + " positions");
        if ((long) capacity * c.kvDim() > Integer.MAX_VALUE)
            throw new ConfigException("KV cache of " + capacity + " positions x " + c.kvDim() + " is too large for one array per layer and slot; lower the context");
        this.slots = slots; this.B = slots; this.capacity = capacity;
        k = new float[c.numHiddenLayers()][slots][capacity * c.kvDim()];
        v = new float[c.numHiddenLayers()][slots][capacity * c.kvDim()];
    }

    /// Copies the first `positions` positions of slot `from` into slot `to` in every layer: a sequence that forks
    /// (two answers to one prompt) continues from a copy of the shared prefix's keys and values.
    public void copyPrefix(int from, int to, int positions) {
        if (from < 0 || from >= slots || to < 0 || to >= slots || positions < 0 || positions > capacity)
            throw new ConfigException("cannot copy " + positions + " positions from slot " + from + " to slot " + to
                    + " of a KV cache of " + slots + " slots x " + capacity + " positions");
        if (from == to || positions == 0) return;
        int n = positions * (k.length == 0 ? 0 : k[0][0].length / capacity);
        for (int l = 0; l < k.length; l++) {
            System.arraycopy(k[l][from], 0, k[l][to], 0, n);
            System.arraycopy(v[l][from], 0, v[l][to], 0, n);
        }
    }

    /// Bytes held by keys and values.
    public long bytes() { return bytes(k.length, slots, capacity, k.length == 0 ? 0 : k[0][0].length / capacity); }

    /// Bytes a cache of this shape holds, without allocating it (memory planning).
    public static long bytes(LlamaConfig c, int slots, int capacity) { return bytes(c.numHiddenLayers(), slots, capacity, c.kvDim()); }

    private static long bytes(int layers, int slots, int capacity, int kvDim) { return 8L * layers * slots * capacity * kvDim; }
}
