package org.peft4j.model.llama;

import org.peft4j.core.DType;
import org.peft4j.core.Gemm;
import org.peft4j.core.Peft4jException.ConfigException;
import org.peft4j.model.LlamaConfig;
import org.peft4j.model.adapter.AdapterSet;
import org.peft4j.model.adapter.LoadedAdapter;
import org.peft4j.model.quant.QuantizedModel;

import java.nio.file.Path;

/// A Llama-family model for generation and evaluation: the [Decoder] (the one forward, shared with training) with
/// KV-cache inference entry points, and a registry of PEFT adapters ([AdapterSet]) for merging and by-name lookup.
///
/// Adapters are values, not state of the model: every forward takes one per row (or one for all rows, or none), rows
/// with different adapters share the base products, and the adapter scratch lives in the [Activations]. [#merge]
/// instead writes one registered adapter into the float32 base weights in place; while one is merged, a forward
/// with an unmerged adapter is refused (it would count twice).
public final class LlamaModel {
    public final LlamaConfig config;
    public final LlamaWeights weights;
    public final Decoder decoder;
    private final AdapterSet adapters;

    public LlamaModel(LlamaWeights weights, Gemm gemm) { this(Decoder.of(weights, gemm)); }

    public LlamaModel(Decoder decoder) {
        this.decoder = decoder; this.config = decoder.config; this.weights = decoder.weights;
        this.adapters = new AdapterSet(weights, decoder.gemm());
    }

    /// A 4-bit model run as it is stored: each linear is dequantized tile by tile inside its product.
    public static LlamaModel of(QuantizedModel qm, Gemm gemm) { return new LlamaModel(Decoder.of(qm, gemm)); }

    public Gemm gemm() { return decoder.gemm(); }

    /// The adapters registered over these base weights: `adapters().load(name, dir)` reads and checks a PEFT adapter.
    public AdapterSet adapters() { return adapters; }

    /// Reads the PEFT adapter in `dir`, checks it against this model's config, and registers it as `name`.
    public LoadedAdapter loadAdapter(String name, Path dir) { return adapters.load(name, dir); }

    /// Writes adapter `name` into the base weights in place (W0 + s·B·A; DoRA its merge).
    /// **Mutates `weights`' arrays**, shared with every model over the same `LlamaWeights`; [#unmerge] restores
    /// them within float rounding. For a merged export that leaves the base alone, see [AdapterSet#mergedCopy].
    public void merge(String name) {
        if (!decoder.denseF32()) throw new ConfigException("merging writes into float32 base weights; this model holds them quantized or in 16 bits");
        adapters.merge(name);
    }

    /// Undoes [#merge], restoring the base weights within float rounding.
    public void unmerge() { adapters.unmerge(); }

    private volatile DType kvCacheType = DType.F32;

    /// The type of the KV caches [#newCache] makes for generation and serving: F32 (the default) or F16 ([KvCache]).
    public DType kvCacheType() { return kvCacheType; }

    /// Sets [#kvCacheType] for the caches made from now on (F32 or F16; anything else is refused).
    public LlamaModel kvCacheType(DType type) {
        if (type != DType.F32 && type != DType.F16)
            throw new ConfigException("KV cache type " + type + " is not supported; use F32 (default) or F16");
        this.kvCacheType = type;
        return this;
    }

    /// A cache of `slots` sequences of up to `capacity` positions, of type [#kvCacheType].
    public KvCache newCache(int slots, int capacity) { return new KvCache(config, slots, capacity, kvCacheType); }

    /// Buffers for forwards of up to B rows × Tmax new tokens over `cache`, with adapter scratch for the registered
    /// adapters (a wider adapter passed later grows it once).
    public Activations newActivations(int B, int Tmax, KvCache cache) {
        if (B > cache.slots) throw new ConfigException("activations for " + B + " rows over a cache of " + cache.slots + " slots");
        int r = 0, out = 0;
        for (String n : adapters.names()) {
            LoadedAdapter a = adapters.get(n);
            r = Math.max(r, a.maxRank());
            if (a.dora()) out = Math.max(out, a.maxOut());
        }
        return decoder.newActivations(Activations.Plan.inference(B, Tmax, cache.capacity).withAdapters(r, out, 0));
    }

    /// Runs B rows of T new tokens; row b continues cache slot slots[b] (null: slot b), which holds pos0[b]
    /// positions, with adapters[b] (null, or a null array: the base).
    /// logits: (B, V) for each row's last position, or (B, T, V) when `allPositions`.
    public void forward(float[] logits, int[] tokens, int B, int T, int[] slots, int[] pos0, LoadedAdapter[] adapters,
                        KvCache cache, Activations a, boolean allPositions) {
        if (adapters != null && this.adapters.merged() != null)
            for (int b = 0; b < Math.min(B, adapters.length); b++)
                if (adapters[b] != null)
                    throw new ConfigException("adapter '" + this.adapters.merged() + "' is merged into the base weights; unmerge() it before running "
                            + adapters[b] + " unmerged (the two would add up)");
        decoder.forward(a, tokens, B, T, slots, pos0, adapters, cache, null);
        decoder.logits(logits, a, allPositions);
    }

    /// Runs T new tokens per row at positions [pos0, pos0 + T) of cache slots 0..B-1 with no adapter.
    /// The decode step (T = 1) allocates no arrays.
    public void forward(float[] logits, int[] tokens, int B, int T, int pos0, KvCache cache, Activations a, boolean allPositions) {
        forward(logits, tokens, B, T, pos0, null, cache, a, allPositions);
    }

    /// As above with `adapter` (null: the base) on every row.
    public void forward(float[] logits, int[] tokens, int B, int T, int pos0, LoadedAdapter adapter, KvCache cache, Activations a,
                        boolean allPositions) {
        java.util.Arrays.fill(a.pos0Rows, 0, Math.min(B, a.pos0Rows.length), pos0);
        LoadedAdapter[] rows = null;
        if (adapter != null) { java.util.Arrays.fill(a.adapterRows, 0, Math.min(B, a.adapterRows.length), adapter); rows = a.adapterRows; }
        forward(logits, tokens, B, T, null, a.pos0Rows, rows, cache, a, allPositions);
    }

    /// Logits (T, V) of every position of one sequence, computed in one pass with fresh buffers (tests, evaluation).
    public float[] logits(int[] tokens) { return logits(tokens, null); }

    /// As [#logits(int[])] with `adapter` (null: the base).
    public float[] logits(int[] tokens, LoadedAdapter adapter) {
        int T = tokens.length;
        KvCache cache = new KvCache(config, 1, T);   // float32 whatever kvCacheType: scores are exact
        float[] out = new float[T * config.vocabSize()];
        forward(out, tokens, 1, T, 0, adapter, cache, newActivations(1, T, cache), true);
        return out;
    }
}
