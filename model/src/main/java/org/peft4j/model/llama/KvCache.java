package org.peft4j.model.llama;

import org.peft4j.core.Peft4jException.ConfigException;
import org.peft4j.model.LlamaConfig;
import org.peft4j.model.layers.Rope;

/// Keys (after RoPE) and values of every layer for `B` rows of up to `capacity` positions, plus the RoPE cos/sin
/// tables for those positions (with the config's rope scaling). Allocated once per generation; the caller tracks
/// how many positions are filled and passes it as `pos0`.
public final class KvCache {
    public final int B, capacity;
    final float[][] k, v;           // (L)(B, capacity, KVH·HS), the layout Attention.forward reads
    final float[] cos, sin;         // (capacity, HS/2)

    public KvCache(LlamaConfig c, int B, int capacity) {
        if (B <= 0 || capacity <= 0) throw new ConfigException("KV cache needs B > 0 and capacity > 0, got B " + B + ", capacity " + capacity);
        if (capacity > c.maxPositionEmbeddings())
            throw new ConfigException("KV cache capacity " + capacity + " exceeds max_position_embeddings " + c.maxPositionEmbeddings()
                    + "; ask for at most " + c.maxPositionEmbeddings() + " positions");
        long floats = 2L * c.numHiddenLayers() * B * capacity * c.kvDim();
        if ((long) B * capacity * c.kvDim() > Integer.MAX_VALUE)
            throw new ConfigException("KV cache of B " + B + " x " + capacity + " positions x " + c.kvDim() + " is too large for one array per layer; lower the batch or context");
        this.B = B; this.capacity = capacity;
        k = new float[c.numHiddenLayers()][B * capacity * c.kvDim()];
        v = new float[c.numHiddenLayers()][B * capacity * c.kvDim()];
        double[] invFreq = c.ropeScaling().apply(Rope.invFreq(c.headDim(), c.ropeTheta()));
        cos = new float[capacity * c.headDim() / 2];
        sin = new float[capacity * c.headDim() / 2];
        Rope.tables(cos, sin, invFreq, capacity);
        assert floats == 2L * k.length * k[0].length;
    }

    /// Bytes held by keys and values.
    public long bytes() { return 8L * k.length * k[0].length; }
}
