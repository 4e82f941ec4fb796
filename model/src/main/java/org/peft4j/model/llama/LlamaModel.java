package org.peft4j.model.llama;

import org.peft4j.core.Gemm;
import org.peft4j.core.Peft4jException.ConfigException;
import org.peft4j.core.Peft4jException.UnsupportedModelException;
import org.peft4j.model.LlamaConfig;
import org.peft4j.model.adapter.AdapterSet;
import org.peft4j.model.adapter.LoadedAdapter;
import org.peft4j.model.llama.Projection;
import org.peft4j.model.layers.Attention;
import org.peft4j.model.layers.Embedding;
import org.peft4j.model.layers.Linear;
import org.peft4j.model.layers.RmsNorm;
import org.peft4j.model.layers.Rope;
import org.peft4j.model.layers.SwiGlu;

import java.nio.file.Path;

/// The inference forward pass of a Llama-family decoder (Llama, Qwen2, Mistral): embeddings, L blocks of
/// `h = x + o_proj(Attn(RoPE(q), RoPE(k), v))` over RMSNorm'd input and `x = h + down(silu(gate)·up)`, final RMSNorm,
/// lm_head. Every matrix product goes through the `Gemm` given at construction. Reference: transformers
/// `LlamaForCausalLM.forward` (shared/docs/specs.md §5).
///
/// Memory: a `KvCache` (B, capacity) and an `Activations` (B, Tmax) are allocated once; `forward` writes into them and
/// allocates nothing itself, except for a prefill too long for the planned probability buffer (see Activations), where
/// `Attention.forward` takes a capacity-long row per head.
/// The decode step (T = 1) allocates no arrays.
///
/// LoRA/DoRA adapters (PEFT directories) are registered in [#adapters] and applied unmerged after each targeted
/// Linear: [#useAdapter] switches between them, or back to the base, without touching the base weights. [#merge]
/// instead writes one into the base weights in place. The base-only forward is thread-safe across separate caches
/// and activations; with an adapter active, run one forward at a time (the adapter scratch is the model's).
public final class LlamaModel {
    public final LlamaConfig config;
    public final LlamaWeights weights;
    private final Gemm gemm;
    private final AdapterSet adapters;

    public LlamaModel(LlamaWeights weights, Gemm gemm) {
        this.config = weights.config; this.weights = weights; this.gemm = gemm;
        this.adapters = new AdapterSet(weights, gemm);
    }

    public Gemm gemm() { return gemm; }

    /// The adapters registered over these base weights: `adapters().load(name, dir)` reads and checks a PEFT adapter.
    public AdapterSet adapters() { return adapters; }

    /// Reads the PEFT adapter in `dir`, checks it against this model's config, and registers it as `name`.
    public LoadedAdapter loadAdapter(String name, Path dir) { return adapters.load(name, dir); }

    /// Applies adapter `name` (unmerged) in every following forward, or none (the base model) for null.
    public void useAdapter(String name) { adapters.use(name); }

    /// Writes adapter `name` into the base weights in place (W0 + s·B·A; DoRA its merge) and deactivates the unmerged
    /// one. **Mutates `weights`' arrays**, shared with every model over the same `LlamaWeights`; [#unmerge] restores
    /// them within float rounding. For a merged export that leaves the base alone, see [AdapterSet#mergedCopy].
    public void merge(String name) { adapters.merge(name); }

    /// Undoes [#merge], restoring the base weights within float rounding.
    public void unmerge() { adapters.unmerge(); }

    public KvCache newCache(int B, int capacity) { return new KvCache(config, B, capacity); }

    public Activations newActivations(int B, int Tmax, KvCache cache) {
        if (cache.B != B) throw new ConfigException("activations for B " + B + " do not match a cache for B " + cache.B);
        adapters.plan(B * Tmax);
        return new Activations(config, B, Tmax, cache.capacity);
    }

    /// Runs T new tokens per row at positions [pos0, pos0 + T), appending their keys and values to `cache`.
    ///
    /// - tokens: (B, T) ids, row-major
    /// - logits: (B, V) for the last position of each row, or (B, T, V) when `allPositions`
    ///
    /// All rows share pos0 (no padding). The cache must already hold positions [0, pos0) of the same rows.
    public void forward(float[] logits, int[] tokens, int B, int T, int pos0, KvCache cache, Activations a,
                        boolean allPositions) {
        LlamaConfig c = config;
        int N = B * T, C = c.hiddenSize(), F = c.intermediateSize(), V = c.vocabSize();
        int NH = c.numAttentionHeads(), KVH = c.numKeyValueHeads(), HS = c.headDim();
        int qDim = c.qDim(), kvDim = c.kvDim(), Tcap = cache.capacity;
        float eps = (float) c.rmsNormEps();
        check(logits, tokens, B, T, pos0, cache, a, allPositions);

        AdapterSet ad = adapters;   // ad.forward adds the active adapter's delta after a Linear, if any
        Embedding.forward(a.x, tokens, weights.embedTokens, N, C);
        for (int l = 0; l < c.numHiddenLayers(); l++) {
            LlamaWeights.Layer w = weights.layers.get(l);
            float[] kCache = cache.k[l], vCache = cache.v[l];
            RmsNorm.forward(a.xn, null, a.x, w.inputLayernorm(), N, C, eps);
            Linear.forward(gemm, a.q, a.xn, w.wq(), w.bq(), N, C, qDim);
            ad.forward(a.q, a.xn, l, Projection.Q_PROJ, N);
            Linear.forward(gemm, a.k, a.xn, w.wk(), w.bk(), N, C, kvDim);
            ad.forward(a.k, a.xn, l, Projection.K_PROJ, N);
            Linear.forward(gemm, a.v, a.xn, w.wv(), w.bv(), N, C, kvDim);
            ad.forward(a.v, a.xn, l, Projection.V_PROJ, N);
            Rope.forward(a.q, cache.cos, cache.sin, B, T, NH, HS, pos0);
            Rope.forward(a.k, cache.cos, cache.sin, B, T, KVH, HS, pos0);
            for (int b = 0; b < B; b++) {
                int src = b * T * kvDim, dst = (b * Tcap + pos0) * kvDim;
                System.arraycopy(a.k, src, kCache, dst, T * kvDim);
                System.arraycopy(a.v, src, vCache, dst, T * kvDim);
            }
            // with a planned probability buffer attention runs on blocked GEMMs (Attention's fast path)
            float[] probs = (long) B * NH * T * Tcap <= a.probs.length ? a.probs : null;
            Attention.forward(gemm, a.att, probs, a.q, kCache, vCache, B, T, Tcap, NH, KVH, HS, pos0);
            Linear.forward(gemm, a.proj, a.att, w.wo(), w.bo(), N, qDim, C);
            ad.forward(a.proj, a.att, l, Projection.O_PROJ, N);
            add(a.x, a.proj, N * C);

            RmsNorm.forward(a.xn, null, a.x, w.postAttentionLayernorm(), N, C, eps);
            Linear.forward(gemm, a.gate, a.xn, w.wGate(), w.bGate(), N, C, F);
            ad.forward(a.gate, a.xn, l, Projection.GATE_PROJ, N);
            Linear.forward(gemm, a.up, a.xn, w.wUp(), w.bUp(), N, C, F);
            ad.forward(a.up, a.xn, l, Projection.UP_PROJ, N);
            SwiGlu.forward(a.gate, a.gate, a.up, N * F);
            Linear.forward(gemm, a.proj, a.gate, w.wDown(), w.bDown(), N, F, C);
            ad.forward(a.proj, a.gate, l, Projection.DOWN_PROJ, N);
            add(a.x, a.proj, N * C);
        }
        if (allPositions) {
            RmsNorm.forward(a.xn, null, a.x, weights.norm, N, C, eps);
            Linear.forward(gemm, logits, a.xn, weights.lmHead, null, N, C, V);
        } else {
            for (int b = 0; b < B; b++) System.arraycopy(a.x, (b * T + T - 1) * C, a.last, b * C, C);
            RmsNorm.forward(a.last, null, a.last, weights.norm, B, C, eps);
            Linear.forward(gemm, logits, a.last, weights.lmHead, null, B, C, V);
        }
    }

    /// Logits (T, V) of every position of one sequence, computed in one pass with fresh buffers (tests, evaluation).
    public float[] logits(int[] tokens) {
        int T = tokens.length;
        KvCache cache = newCache(1, T);
        float[] out = new float[T * config.vocabSize()];
        forward(out, tokens, 1, T, 0, cache, newActivations(1, T, cache), true);
        return out;
    }

    private void check(float[] logits, int[] tokens, int B, int T, int pos0, KvCache cache, Activations a, boolean all) {
        if (B != cache.B || B != a.B) throw new ConfigException("batch " + B + " does not match the cache (B " + cache.B + ") and activations (B " + a.B + ")");
        if (T < 1 || T > a.Tmax) throw new ConfigException("T " + T + " is outside [1, " + a.Tmax + "], the activations' Tmax; allocate them for the longest chunk");
        if (pos0 < 0 || pos0 + T > cache.capacity)
            throw new ConfigException("positions [" + pos0 + ", " + (pos0 + T) + ") do not fit a KV cache of " + cache.capacity + "; allocate a larger cache");
        if (a.probs.length < B * config.numAttentionHeads() * cache.capacity)
            throw new ConfigException("activations were allocated for a smaller cache than " + cache.capacity + " positions");
        if (config.slidingWindow() > 0 && pos0 + T > config.slidingWindow())
            throw new UnsupportedModelException("sequence length " + (pos0 + T) + " exceeds the sliding window " + config.slidingWindow()
                    + "; peft4j attends to the full causal context, which differs from " + config.architecture().modelType()
                    + " beyond the window: keep prompt + output within " + config.slidingWindow() + " tokens");
        if (tokens.length < B * T) throw new ConfigException("tokens has " + tokens.length + " ids, expected B·T = " + (B * T));
        int need = (all ? B * T : B) * config.vocabSize();
        if (logits.length < need) throw new ConfigException("logits buffer has " + logits.length + " floats, expected " + need);
        for (int i = 0; i < B * T; i++)
            if (tokens[i] < 0 || tokens[i] >= config.vocabSize())
                throw new ConfigException("token id " + tokens[i] + " at index " + i + " is outside the vocabulary [0, " + config.vocabSize() + ")");
    }

    private static void add(float[] x, float[] y, int n) {
        for (int i = 0; i < n; i++) x[i] += y[i];
    }
}
