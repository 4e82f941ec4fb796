package org.peft4j.model.llama;

import org.peft4j.core.DType;
import org.peft4j.core.Peft4jException.ConfigException;
import org.peft4j.model.LlamaConfig;
import org.peft4j.model.layers.Attention;

/// Keys (after RoPE) and values of every layer for `slots` independent sequences of up to `capacity` positions each.
/// A row of a [Decoder#forward] batch continues one slot; the caller tracks how many positions each slot holds and
/// passes it as that row's `pos0`. Allocated once (per server, per generation); slots are reused by new sequences.
///
/// Stored as float32 (the default: attention sees the values the projections computed), or as float16 (IEEE half,
/// round to nearest even, as llama.cpp's default cache): half the memory, and half the bytes a decode step reads from
/// it. A float16 cache gives attention the values rounded to float16, the new rows included: decode reads the halves
/// in place ([Attention#decodeHalf], a block of rows converted at a time), and a prompt's
/// forward converts the slot's rows into one float buffer per cache ([#keys], [#values]); either gives the results of
/// a float32 cache holding the rounded values, bit for bit.
public final class KvCache {
    /// Number of sequences it holds, and positions per sequence.
    public final int slots, capacity;
    /// Same as [#slots]; the batch size of the single-position API.
    public final int B;
    /// F32 or F16.
    public final DType dtype;
    private final int kvDim;
    final float[][][] k, v;         // (L)(slots)(capacity, KVH·HS), the layout Attention.forward reads for one row; F32
    private final short[][][] kh, vh;   // the same as float16 bits; F16
    private final float[] kRead, vRead; // (capacity, KVH·HS): one slot's rows of one layer converted for attention; F16

    /// A float32 cache.
    public KvCache(LlamaConfig c, int slots, int capacity) { this(c, slots, capacity, DType.F32); }

    public KvCache(LlamaConfig c, int slots, int capacity, DType dtype) {
        if (slots <= 0 || capacity <= 0) throw new ConfigException("KV cache needs slots > 0 and capacity > 0, got " + slots + " slots, capacity " + capacity);
        if (dtype != DType.F32 && dtype != DType.F16)
            throw new ConfigException("KV cache type " + dtype + " is not supported; use F32 (default) or F16");
        if (capacity > c.maxPositionEmbeddings())
            throw new ConfigException("KV cache capacity " + capacity + " exceeds max_position_embeddings " + c.maxPositionEmbeddings()
                    + "; ask for at most " + c.maxPositionEmbeddings() + " positions");
        if ((long) capacity * c.kvDim() > Integer.MAX_VALUE)
            throw new ConfigException("KV cache of " + capacity + " positions x " + c.kvDim() + " is too large for one array per layer and slot; lower the context");
        this.slots = slots; this.B = slots; this.capacity = capacity; this.dtype = dtype; this.kvDim = c.kvDim();
        int L = c.numHiddenLayers(), n = capacity * kvDim;
        if (dtype == DType.F32) {
            k = new float[L][slots][n];
            v = new float[L][slots][n];
            kh = vh = null;
            kRead = vRead = null;
        } else {
            k = v = null;
            kh = new short[L][slots][n];
            vh = new short[L][slots][n];
            kRead = new float[n];
            vRead = new float[n];
        }
    }

    /// Stores positions [pos, pos + n) of `slot` in `layer`: rows of KVH·HS keys and values from k[off ..], v[off ..].
    void write(int layer, int slot, int pos, float[] keys, float[] values, int off, int n) {
        int o = pos * kvDim, len = n * kvDim;
        if (dtype == DType.F32) {
            System.arraycopy(keys, off, k[layer][slot], o, len);
            System.arraycopy(values, off, v[layer][slot], o, len);
        } else {
            toHalf(keys, off, kh[layer][slot], o, len);
            toHalf(values, off, vh[layer][slot], o, len);
        }
    }

    /// The first `positions` key rows of `slot` in `layer`, as floats at row 0 of the returned array: the slot's own
    /// array (F32), or the cache's read buffer (F16), valid until the next [#keys] call.
    float[] keys(int layer, int slot, int positions) {
        if (dtype == DType.F32) return k[layer][slot];
        Attention.halfToFloat(kh[layer][slot], 0, kRead, 0, positions * kvDim);
        return kRead;
    }

    /// [#keys] for the values (the buffer valid until the next [#values] call).
    float[] values(int layer, int slot, int positions) {
        if (dtype == DType.F32) return v[layer][slot];
        Attention.halfToFloat(vh[layer][slot], 0, vRead, 0, positions * kvDim);
        return vRead;
    }

    /// The float16 bits of `slot`'s keys in `layer`, (capacity, KVH·HS) rows (F16 only).
    short[] keyBits(int layer, int slot) { return kh[layer][slot]; }

    /// The float16 bits of `slot`'s values in `layer` (F16 only).
    short[] valueBits(int layer, int slot) { return vh[layer][slot]; }

    // a plain loop: C2 compiles it to the hardware conversion, a vector at a time
    private static void toHalf(float[] src, int so, short[] dst, int o, int n) {
        for (int i = 0; i < n; i++) dst[o + i] = Float.floatToFloat16(src[so + i]);
    }

    /// Copies the first `positions` positions of slot `from` into slot `to` in every layer: a sequence that forks
    /// (two answers to one prompt) continues from a copy of the shared prefix's keys and values.
    public void copyPrefix(int from, int to, int positions) {
        if (from < 0 || from >= slots || to < 0 || to >= slots || positions < 0 || positions > capacity)
            throw new ConfigException("cannot copy " + positions + " positions from slot " + from + " to slot " + to
                    + " of a KV cache of " + slots + " slots x " + capacity + " positions");
        if (from == to || positions == 0) return;
        int n = positions * kvDim;
        for (int l = 0; l < layers(); l++) {
            if (dtype == DType.F32) {
                System.arraycopy(k[l][from], 0, k[l][to], 0, n);
                System.arraycopy(v[l][from], 0, v[l][to], 0, n);
            } else {
                System.arraycopy(kh[l][from], 0, kh[l][to], 0, n);
                System.arraycopy(vh[l][from], 0, vh[l][to], 0, n);
            }
        }
    }

    private int layers() { return dtype == DType.F32 ? k.length : kh.length; }

    /// Bytes held by keys and values (the F16 read buffers included).
    public long bytes() { return bytes(layers(), slots, capacity, kvDim, dtype); }

    /// Bytes a float32 cache of this shape holds, without allocating it (memory planning).
    public static long bytes(LlamaConfig c, int slots, int capacity) { return bytes(c, slots, capacity, DType.F32); }

    /// Bytes a cache of this shape and type holds, without allocating it (memory planning).
    public static long bytes(LlamaConfig c, int slots, int capacity, DType dtype) {
        return bytes(c.numHiddenLayers(), slots, capacity, c.kvDim(), dtype);
    }

    private static long bytes(int layers, int slots, int capacity, int kvDim, DType dtype) {
        long values = 2L * layers * slots * capacity * kvDim;
        return dtype == DType.F32 ? 4 * values : 2 * values + 8L * capacity * kvDim;
    }
}
