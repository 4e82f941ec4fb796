package org.peft4j.model.llama;

import org.peft4j.core.DType;
import org.peft4j.core.Gemm;
import org.peft4j.core.Peft4jException.ConfigException;
import org.peft4j.core.Peft4jException.UnsupportedModelException;
import org.peft4j.model.LlamaConfig;
import org.peft4j.model.adapter.LoadedAdapter;
import org.peft4j.model.adapter.ia3.Ia3Linear;
import org.peft4j.model.adapter.lora.DoraLinear;
import org.peft4j.model.adapter.lora.Dropout;
import org.peft4j.model.adapter.lora.LoraLinear;
import org.peft4j.model.adapter.lora.LoraWeights;
import org.peft4j.model.layers.Attention;
import org.peft4j.model.layers.Embedding;
import org.peft4j.model.layers.Linear;
import org.peft4j.model.layers.Neftune;
import org.peft4j.model.layers.RmsNorm;
import org.peft4j.model.layers.Rope;
import org.peft4j.model.layers.ShiftedAttention;
import org.peft4j.model.layers.SwiGlu;
import org.peft4j.model.quant.QuantizedModel;
import org.peft4j.model.weights.BaseWeight;
import org.peft4j.model.weights.DenseF32;
import org.peft4j.model.weights.DenseHalf;

import java.util.Arrays;
import java.util.Map;
import java.util.SplittableRandom;

/// The one forward and backward of a Llama-family decoder (Llama, Qwen2, Mistral), used by generation, evaluation,
/// serving and training: embeddings, L blocks of `h = x + o_proj(Attn(RoPE(q), RoPE(k), v))` over RMSNorm'd input and
/// `x = h + down(silu(gate)·up)`, final RMSNorm, lm_head. Reference: transformers `LlamaForCausalLM.forward`
/// (shared/docs/specs.md §5). llm.c style: each block's forward is a list of layer calls and its backward the same list
/// reversed; no autograd tape.
///
/// - **Base weights** are [BaseWeight]s (float32, BF16/F16 converted per tile, or 4-bit NF4/FP4 dequantized per tile);
///   norms and biases are the float32 arrays of [#weights]; the embeddings and lm_head are too, or are held in 16
///   bits ([DenseHalf]: a 4-bit base read from a BF16 checkpoint): the embedding a BF16 row gather, lm_head a tiled
///   converting product in forward and in backward's dX (a frozen head has no weight gradient).
/// - **Rows and adapters**: a forward runs B rows of T new tokens. Each row may use its own adapter (a
///   [LoadedAdapter] value, or null for the base): the base products run once over all rows, the low-rank products
///   once per run of consecutive rows with the same adapter. Adapters are values, not state of the decoder. An (IA)³
///   adapter scales a run's base input or output instead; a prompt-tuning adapter gives a row's first n positions
///   its virtual tokens' embeddings (the caller puts n placeholder ids there); a prefix-tuning adapter gives them
///   its keys and values at every layer.
/// - **KV cache** (optional): row b continues slot `slots[b]` of a [KvCache] at position `pos0[b]`; without a cache
///   (training, whole-sequence scoring) every row starts at position 0 and attends within itself.
/// - **Memory**: every buffer is in an [Activations] planned once ([#newActivations]); a forward or backward allocates
///   nothing. Inference attention needs a probability block per thread, not a (T, keys) buffer: any prompt length.
/// - **Losses are not here**: [#logits] writes logits; the caller applies a loss op (e.g. `CrossEntropy`) and hands
///   its gradient to [#backward].
///
/// Thread-safety: the decoder holds no per-call state; concurrent calls need their own activations (and caches).
public final class Decoder {
    public final LlamaConfig config;
    public final LlamaWeights weights;
    private final BaseWeight[][] linears;   // (L)(7) in Projection order
    private final BaseWeight head;          // (V, C) lm_head: float32 over weights.lmHead, or kept in 16 bits
    private final DenseHalf embed16;        // (V, C) embeddings kept in 16 bits, or null: float32 weights.embedTokens
    private final Gemm gemm;
    private final int L, C, F, V, NH, KVH, HS, qDim, kvDim;
    private final float eps;
    private final int baseScratch;

    // Wall time of attention since the last reset, when timing is on (benchmarks).
    private volatile boolean timing;
    private long attentionNanos;

    /// Noise of a training forward: LoRA dropout and NEFTune, drawn from streams derived from (seed, step, layer,
    /// module) alone, so a recomputed block (checkpointing) and a resumed run draw the same masks. `shiftAttn`: the
    /// forward (kept for backward) runs LongLoRA's S²-Attn ([ShiftedAttention]) instead of full causal attention, as
    /// LongLoRA does in training mode only; T must then be a multiple of [ShiftedAttention#MULTIPLE].
    public record Noise(long seed, long step, float neftuneAlpha, boolean shiftAttn) {
        public Noise(long seed, long step, float neftuneAlpha) { this(seed, step, neftuneAlpha, false); }
    }

    /// Where backward adds gradients: `base` maps each trained float32 tensor of [#weights] (by identity) to its
    /// gradient; `adapter` (or null) is the trained adapter, with dA, dB and DoRA's dMag per (layer, projection).
    /// `dIa3` (or null): the gradients of an (IA)³ adapter's vectors per (layer, projection); `dPrompt` (or null):
    /// of a prompt-tuning adapter's embeddings (n, C), or of a prefix-tuning adapter's prefix (n, L·2·kvDim).
    public record Grads(Map<float[], float[]> base, LoadedAdapter adapter, float[][][] dA, float[][][] dB, float[][][] dMag,
                        float[][][] dIa3, float[] dPrompt) {
        public Grads(Map<float[], float[]> base, LoadedAdapter adapter, float[][][] dA, float[][][] dB, float[][][] dMag) {
            this(base, adapter, dA, dB, dMag, null, null);
        }
    }

    public Decoder(LlamaWeights weights, BaseWeight[][] linears, Gemm gemm) {
        this(weights, linears, null, gemm);
    }

    /// As above with the lm_head as `head` (null: float32 over `weights.lmHead`). A 16-bit head halves the bytes a
    /// decode step reads for it, and backward runs through it (dX only: it is frozen).
    public Decoder(LlamaWeights weights, BaseWeight[][] linears, BaseWeight head, Gemm gemm) {
        this(weights, linears, head, null, gemm);
    }

    /// As above with the embeddings as `embed16` (null: float32 `weights.embedTokens`), a frozen 16-bit table.
    public Decoder(LlamaWeights weights, BaseWeight[][] linears, BaseWeight head, DenseHalf embed16, Gemm gemm) {
        this.config = weights.config; this.weights = weights; this.linears = linears; this.gemm = gemm; this.embed16 = embed16;
        if (embed16 == null && weights.embedTokens == null) throw new IllegalArgumentException("the embeddings are neither float32 weights nor a 16-bit table");
        if (head == null && weights.lmHead == null) throw new IllegalArgumentException("lm_head is neither float32 weights nor a given BaseWeight");
        if (embed16 != null && (embed16.out() != weights.config.vocabSize() || embed16.in() != weights.config.hiddenSize()))
            throw new IllegalArgumentException("embeddings: " + embed16 + ", expected (" + weights.config.vocabSize() + ", " + weights.config.hiddenSize() + ")");
        this.head = head != null ? head : BaseWeight.of(weights.lmHead, weights.config.vocabSize(), weights.config.hiddenSize());
        LlamaConfig c = config;
        L = c.numHiddenLayers(); C = c.hiddenSize(); F = c.intermediateSize(); V = c.vocabSize();
        NH = c.numAttentionHeads(); KVH = c.numKeyValueHeads(); HS = c.headDim();
        qDim = c.qDim(); kvDim = c.kvDim(); eps = (float) c.rmsNormEps();
        if (linears.length != L) throw new IllegalArgumentException(linears.length + " layers of linear weights for " + L + " layers");
        int s = 0;
        for (int l = 0; l < L; l++)
            for (Projection p : Projection.values()) {
                BaseWeight w = linears[l][p.ordinal()];
                if (w == null || w.out() != p.out(c) || w.in() != p.in(c))
                    throw new IllegalArgumentException(p.weightName(l) + ": " + w + ", expected (" + p.out(c) + ", " + p.in(c) + ")");
                s = Math.max(s, w.scratchSize());
            }
        if (this.head.out() != V || this.head.in() != C)
            throw new IllegalArgumentException("lm_head: " + this.head + ", expected (" + V + ", " + C + ")");
        baseScratch = Math.max(s, this.head.scratchSize());
    }

    /// Float32 weights: every linear is a [DenseF32] over the layer's array (shared: merges and full fine-tuning
    /// updates are seen by the next forward).
    public static Decoder of(LlamaWeights w, Gemm gemm) {
        BaseWeight[][] lin = new BaseWeight[w.layers.size()][Projection.values().length];
        for (int l = 0; l < lin.length; l++)
            for (Projection p : Projection.values()) {
                float[] a = p.weight(w.layers.get(l));
                if (a == null) throw new IllegalArgumentException(p.weightName(l) + " is not held as float32 in these weights; pass its BaseWeight");
                lin[l][p.ordinal()] = BaseWeight.of(a, p.out(w.config), p.in(w.config));
            }
        return new Decoder(w, lin, gemm);
    }

    /// A 4-bit base (QLoRA): the linears are dequantized tile by tile inside each product, never whole.
    public static Decoder of(QuantizedModel qm, Gemm gemm) {
        BaseWeight[][] lin = new BaseWeight[qm.linears.length][Projection.values().length];
        for (int l = 0; l < lin.length; l++)
            for (Projection p : Projection.values()) lin[l][p.ordinal()] = BaseWeight.of(qm.linears[l][p.ordinal()]);
        return new Decoder(qm.weights, lin, qm.head16, qm.embed16, gemm);
    }

    public Gemm gemm() { return gemm; }

    /// The lm_head as it is held.
    public BaseWeight head() { return head; }

    /// The 16-bit embedding table, or null: float32 `weights.embedTokens`.
    public DenseHalf embed16() { return embed16; }

    /// The base weight of (layer, projection).
    public BaseWeight linear(int layer, Projection p) { return linears[layer][p.ordinal()]; }

    /// Whether every linear is float32 (what full/freeze tuning, PiSSA, DoRA and in-place merging need).
    public boolean denseF32() {
        for (BaseWeight[] layer : linears) for (BaseWeight w : layer) if (!(w instanceof DenseF32)) return false;
        return true;
    }

    /// The largest scratch a base weight needs: part of every [Activations.Plan]'s memory.
    public int baseScratchFloats() { return baseScratch; }

    /// Buffers for `plan` (see [Activations]).
    public Activations newActivations(Activations.Plan plan) {
        if (plan.positions() > config.maxPositionEmbeddings())
            throw new ConfigException("a sequence of " + plan.positions() + " positions exceeds the model's max_position_embeddings "
                    + config.maxPositionEmbeddings() + "; lower cutoff_len / the context length");
        return new Activations(config, plan, baseScratch);
    }

    /// Bytes the buffers of `plan` take, without allocating them.
    public long activationBytes(Activations.Plan plan) { return Activations.bytes(config, plan, baseScratch); }

    // ---------------------------------------------------------------- forward

    /// Runs B rows of T new tokens, leaving the final hidden states in `a` for [#logits] and what backward needs.
    ///
    /// - tokens: (B, T) ids, row-major
    /// - slots, pos0: with a `cache`, row b continues slot slots[b], which holds pos0[b] positions (slots null: row b
    ///   uses slot b); without a cache both are null and every row starts at position 0
    /// - adapters: per row, or null for all base
    /// - noise: a training forward (LoRA dropout, NEFTune, S²-Attn when `noise.shiftAttn()`), or null
    public void forward(Activations a, int[] tokens, int B, int T, int[] slots, int[] pos0, LoadedAdapter[] adapters,
                        KvCache cache, Noise noise) {
        check(a, tokens, B, T, slots, pos0, adapters, cache);
        int N = B * T;
        a.shifted = noise != null && noise.shiftAttn() && a.plan.backward();
        if (a.shifted) { ShiftedAttention.check(T); a.fitShift(config); }
        a.runs.fill(adapters, B);
        if (embed16 != null) Embedding.forward(a.resid[0], tokens, embed16.type(), embed16.data(), N, C);
        else Embedding.forward(a.resid[0], tokens, weights.embedTokens, N, C);
        if (noise != null && noise.neftuneAlpha() > 0)
            Neftune.forward(a.resid[0], B, T, C, noise.neftuneAlpha(), true, rng(noise, -1, -1));
        virtualTokensForward(a.resid[0], B, T, pos0, a.runs);
        for (int l = 0; l < L; l++) blockForward(a, l, B, T, slots, pos0, cache, noise);
        a.rows = B; a.T = T;
    }

    /// Logits of the last forward: (B, V) for each row's last position, or (B, T, V) when `allPositions`.
    public void logits(float[] out, Activations a, boolean allPositions) {
        int B = a.rows, T = a.T, N = B * T;
        float[] hidden = a.resid[finalResid(a)];
        if (allPositions) {
            if (out.length < N * V) throw new ConfigException("logits buffer has " + out.length + " floats, expected " + N * V);
            RmsNorm.forward(a.lnf, a.rstdf, hidden, weights.norm, N, C, eps);
            head.forward(gemm, out, a.lnf, null, N, a.baseScratch);
        } else {
            if (out.length < B * V) throw new ConfigException("logits buffer has " + out.length + " floats, expected " + B * V);
            for (int b = 0; b < B; b++) System.arraycopy(hidden, (b * T + T - 1) * C, a.last, b * C, C);
            RmsNorm.forward(a.last, null, a.last, weights.norm, B, C, eps);
            head.forward(gemm, out, a.last, null, B, a.baseScratch);
        }
    }

    /// The final norm of every position of the last forward, (B, T, C): the normed hidden states a value head reads
    /// (transformers' `hidden_states[-1]`, which is after the final norm), kept in `a` for [#backwardNormed].
    public float[] finalNorm(Activations a) {
        int N = a.rows * a.T;
        RmsNorm.forward(a.lnf, a.rstdf, a.resid[finalResid(a)], weights.norm, N, C, eps);
        return a.lnf;
    }

    /// Logits of M selected positions of the last forward: rows[m] indexes (B·T) positions; `x` (M, C) is scratch
    /// that ends holding their normed hidden states. For losses that read few positions (a preference reference pass
    /// reads only the answers' tokens): the final norm and lm_head run on those M rows only.   out: (M, V)
    public void logitsAt(float[] out, float[] x, Activations a, int[] rows, int M) {
        gatherHidden(x, a, rows, 0, M);
        logitsOfHidden(out, x, a, M);
    }

    /// Copies the final hidden states (before the final norm) of positions rows[from..to) of the last forward into
    /// rows from..to of `x` (M, C): a pass that runs in several forwards (a shared prefix, then continuations) gathers
    /// each forward's positions before the next forward overwrites them, then calls [#logitsOfHidden] once.
    public void gatherHidden(float[] x, Activations a, int[] rows, int from, int to) {
        float[] hidden = a.resid[finalResid(a)];
        for (int m = from; m < to; m++) System.arraycopy(hidden, rows[m] * C, x, m * C, C);
    }

    /// Logits of M final hidden states gathered in `x` (M, C), which ends holding them normed.   out: (M, V)
    public void logitsOfHidden(float[] out, float[] x, Activations a, int M) {
        RmsNorm.forward(x, null, x, weights.norm, M, C, eps);
        head.forward(gemm, out, x, null, M, a.baseScratch);
    }

    /// The final hidden states (before the final norm) of the last forward, (B, T, C).
    public float[] hidden(Activations a) { return a.resid[finalResid(a)]; }

    private int finalResid(Activations a) { return a.plan.backward() ? L : L & 1; }

    private void blockForward(Activations a, int l, int B, int T, int[] slots, int[] pos0, KvCache cache, Noise noise) {
        LlamaWeights.Layer w = weights.layers.get(l);
        int s = a.slots == 1 ? 0 : l, N = B * T;
        boolean keep = a.plan.backward();
        float[] x = a.resid[keep ? l : l & 1], y = a.resid[keep ? l + 1 : (l + 1) & 1];
        RmsNorm.forward(a.ln1[s], a.rstd1[s], x, w.inputLayernorm(), N, C, eps);
        linear(a, l, s, Projection.Q_PROJ, a.q[s], a.ln1[s], B, T, noise);
        linear(a, l, s, Projection.K_PROJ, a.k[s], a.ln1[s], B, T, noise);
        linear(a, l, s, Projection.V_PROJ, a.v[s], a.ln1[s], B, T, noise);
        long t0 = timing ? System.nanoTime() : 0;
        if (cache == null) {
            Rope.forward(a.q[s], a.cos, a.sin, B, T, NH, HS, 0);
            Rope.forward(a.k[s], a.cos, a.sin, B, T, KVH, HS, 0);
            for (int ri = 0; ri < a.runs.count; ri++)
                for (int b = a.runs.start[ri]; b < a.runs.start[ri + 1]; b++) prefixForward(a.k[s], a.v[s], l, b, T, 0, a.runs.adapter[ri]);
            // training keeps the probabilities for backward; an inference forward has a block of them per thread
            if (keep && a.shifted)
                ShiftedAttention.forward(gemm, a.attY[s], a.probs[s], a.q[s], a.k[s], a.v[s], a.s2q, a.s2k, a.s2v, a.s2y, B, T, NH, KVH, HS);
            else if (keep) Attention.forward(gemm, a.attY[s], a.probs[s], a.q[s], a.k[s], a.v[s], B, T, T, NH, KVH, HS, 0);
            else Attention.forwardInference(gemm, a.attY[s], a.q[s], a.k[s], a.v[s], B, T, T, NH, KVH, HS, 0, a.probs[s]);
        } else {
            int cap = cache.capacity;
            for (int b = 0; b < B; b++) {
                int p0 = pos0[b], slot = slots == null ? b : slots[b];
                Rope.forwardRow(a.q[s], b * T * qDim, a.cos, a.sin, T, NH, HS, p0);
                Rope.forwardRow(a.k[s], b * T * kvDim, a.cos, a.sin, T, KVH, HS, p0);
                prefixForward(a.k[s], a.v[s], l, b, T, p0, a.runs.adapterOf(b));
                cache.write(l, slot, p0, a.k[s], a.v[s], b * T * kvDim, T);
                float[] q = a.q[s], out = a.attY[s];
                if (b > 0) {       // Attention reads row 0 of its arrays: one row's q and output go through scratch
                    System.arraycopy(a.q[s], b * T * qDim, a.qRow, 0, T * qDim);
                    q = a.qRow; out = a.attRow;
                }
                // a float16 cache's decode reads the halves in place; otherwise attention reads float rows
                if (T > 1 || cache.dtype != DType.F16
                        || !Attention.decodeHalf(out, q, cache.keyBits(l, slot), cache.valueBits(l, slot), cap, NH, KVH, HS, p0, a.probs[s]))
                    Attention.forwardInference(gemm, out, q, cache.keys(l, slot, p0 + T), cache.values(l, slot, p0 + T), 1, T, cap, NH, KVH, HS, p0, a.probs[s]);
                if (b > 0) System.arraycopy(a.attRow, 0, a.attY[s], b * T * qDim, T * qDim);
            }
        }
        if (timing) attentionNanos += System.nanoTime() - t0;
        linear(a, l, s, Projection.O_PROJ, a.resid2[s], a.attY[s], B, T, noise);
        add(a.resid2[s], x, N * C);
        RmsNorm.forward(a.ln2[s], a.rstd2[s], a.resid2[s], w.postAttentionLayernorm(), N, C, eps);
        linear(a, l, s, Projection.GATE_PROJ, a.gate[s], a.ln2[s], B, T, noise);
        linear(a, l, s, Projection.UP_PROJ, a.up[s], a.ln2[s], B, T, noise);
        SwiGlu.forward(a.act[s], a.gate[s], a.up[s], N * F);
        linear(a, l, s, Projection.DOWN_PROJ, y, a.act[s], B, T, noise);
        add(y, a.resid2[s], N * C);
    }

    /// y = base(x) + b, plus each row run's adapter term s·B·A·drop(x) (DoRA: its re-scaled output); a run with an
    /// (IA)³ adapter scales the base's input (feed-forward module) or output instead ([Ia3Linear]).   y: (N, out)
    private void linear(Activations a, int l, int s, Projection p, float[] y, float[] x, int B, int T, Noise noise) {
        LlamaWeights.Layer w = weights.layers.get(l);
        int in = p.in(config), out = p.out(config), i = p.ordinal();
        AdapterRuns runs = a.runs;
        float[] xb = x;
        for (int ri = 0; ri < runs.count; ri++) {
            LoadedAdapter ad = runs.adapter[ri];
            if (ad == null || ad.ia3(l, p) == null || !ad.ia3Feedforward(l, p)) continue;
            if (xb == x) { xb = a.ia3x; System.arraycopy(x, 0, xb, 0, B * T * in); }
            Ia3Linear.forwardInput(xb, x, ad.ia3(l, p), runs.start[ri] * T, (runs.start[ri + 1] - runs.start[ri]) * T, in);
        }
        linears[l][i].forward(gemm, y, xb, p.bias(w), B * T, a.baseScratch);
        for (int ri = 0; ri < runs.count; ri++) {
            LoadedAdapter ad = runs.adapter[ri];
            if (ad != null && ad.ia3(l, p) != null && !ad.ia3Feedforward(l, p))
                Ia3Linear.forwardOutput(y, ad.ia3(l, p), runs.start[ri] * T, (runs.start[ri + 1] - runs.start[ri]) * T, out);
        }
        for (int ri = 0; ri < runs.count; ri++) {
            LoadedAdapter ad = runs.adapter[ri];
            LoadedAdapter.Module m = ad == null ? null : ad.module(l, p);
            if (m == null) continue;
            LoraWeights lw = m.weights();
            int row0 = runs.start[ri] * T, n = (runs.start[ri + 1] - runs.start[ri]) * T;
            float[] xin = x;
            if (noise != null && ad.dropout() > 0) {
                xin = a.xd[s][i];
                Dropout.forward(xin, a.mask[s][i], x, ad.dropout(), row0 * in, rng(noise, l, i), n * in);
            }
            if (lw.magnitude() != null)
                DoraLinear.forward(gemm, y, a.h[s][i], a.u[s][i], ad.doraNorm(l, p, weights), xin, p.weight(w), lw.a(), lw.b(),
                        lw.magnitude(), m.scaling(), row0, n, in, out, lw.r());
            else LoraLinear.forward(gemm, y, a.h[s][i], xin, lw.a(), lw.b(), m.scaling(), row0, n, in, out, lw.r());
        }
    }

    // ---------------------------------------------------------------- backward

    /// Backward of the last forward on `a` (same tokens, adapters and noise; no KV cache), adding into `g`.
    /// dlogits: (B, T, V), the loss op's gradient w.r.t. the logits of every position; it is read, not kept.
    /// Every row must use `g.adapter()` (the trained one) or, when it is null, no adapter.
    public void backward(Activations a, int[] tokens, float[] dlogits, Grads g, Noise noise) {
        if (!a.plan.backward()) throw new ConfigException("these activations were planned without backward; plan them with Plan.training");
        int B = a.rows, T = a.T, N = B * T;
        for (int r = 0; r < a.runs.count; r++)
            if (a.runs.adapter[r] != g.adapter())
                throw new ConfigException("backward through " + a.runs.adapter[r] + ", which is not the trained adapter; a batch that "
                        + "is trained uses the trained adapter on every row");
        Arrays.fill(a.dln, 0, N * C, 0f);
        head.backwardInput(gemm, a.dln, dlogits, N, a.baseScratch);   // float32: Linear.backwardInput; 16-bit: tile by tile
        float[] gHead = weights.lmHead == null ? null : g.base().get(weights.lmHead);
        if (gHead != null && !(head instanceof DenseF32 d && d.data() == weights.lmHead))
            throw new ConfigException("lm_head is trained, but this decoder holds it as " + head + "; train it over float32 weights");
        if (gHead != null) Linear.backwardWeight(gemm, gHead, null, dlogits, a.lnf, N, C, V);
        backwardFromNorm(a, tokens, a.dln, g, noise);
    }

    /// Backward of the last forward and [#finalNorm] from dL/d(normed hidden states) `dnormed` (B, T, C), for a head
    /// other than lm_head (a reward model's value head); adds into `g` as [#backward] does.
    public void backwardNormed(Activations a, int[] tokens, float[] dnormed, Grads g, Noise noise) {
        if (!a.plan.backward()) throw new ConfigException("these activations were planned without backward; plan them with Plan.training");
        for (int r = 0; r < a.runs.count; r++)
            if (a.runs.adapter[r] != g.adapter())
                throw new ConfigException("backward through " + a.runs.adapter[r] + ", which is not the trained adapter; a batch that "
                        + "is trained uses the trained adapter on every row");
        backwardFromNorm(a, tokens, dnormed, g, noise);
    }

    private void backwardFromNorm(Activations a, int[] tokens, float[] dnormed, Grads g, Noise noise) {
        int B = a.rows, T = a.T, N = B * T;
        Arrays.fill(a.dres, 0, N * C, 0f);
        RmsNorm.backward(a.dres, g.base().get(weights.norm), dnormed, a.resid[L], weights.norm, a.rstdf, N, C);
        for (int l = L - 1; l >= 0; l--) {
            if (a.plan.checkpointing()) blockForward(a, l, B, T, null, null, null, noise);
            blockBackward(a, l, B, T, g);
        }
        float[] gEmbed = weights.embedTokens == null ? null : g.base().get(weights.embedTokens);
        if (gEmbed != null) Embedding.backward(gEmbed, a.dres, tokens, N, C);
        LoadedAdapter ad = g.adapter();
        if (ad != null && ad.prompt != null)   // dPrompt[p] += dL/d x[b, p] over the rows' first n positions
            for (int b = 0; b < B; b++)
                for (int p = 0; p < Math.min(ad.virtualTokens(), T); p++)
                    for (int c = 0; c < C; c++) g.dPrompt()[p * C + c] += a.dres[(b * T + p) * C + c];
    }

    /// Prompt tuning: a row whose adapter has n virtual tokens holds them at positions 0 .. n−1 (its first n ids are
    /// placeholders, see [LoadedAdapter#virtualTokens]); their input embeddings are the adapter's, not the vocabulary's
    /// (PEFT `PeftModelForCausalLM.forward`: cat(prompts, inputs_embeds); the positions count the virtual tokens).
    /// x: (B, T, C); pos0: each row's first position (null: 0).
    private void virtualTokensForward(float[] x, int B, int T, int[] pos0, AdapterRuns runs) {
        for (int ri = 0; ri < runs.count; ri++) {
            LoadedAdapter ad = runs.adapter[ri];
            if (ad == null || ad.prompt == null) continue;
            float[] pe = ad.prompt.embeddings();
            for (int b = runs.start[ri]; b < runs.start[ri + 1]; b++)
                for (int t = 0, p = pos0 == null ? 0 : pos0[b]; t < T && p < ad.virtualTokens(); t++, p++)
                    System.arraycopy(pe, p * C, x, (b * T + t) * C, C);
        }
    }

    /// Prefix tuning: a row whose adapter has a prefix of n virtual tokens holds placeholders at positions 0 .. n−1;
    /// at every layer their keys and values are replaced by the prefix's, after RoPE (PEFT passes the prefix as
    /// past_key_values: never rotated), so the text, at positions n, n+1, …, attends to the prefix through the causal
    /// mask. k, v: (B, T, kvDim) of this layer; row b starts at position p0.
    private void prefixForward(float[] k, float[] v, int l, int b, int T, int p0, LoadedAdapter ad) {
        if (ad == null || ad.prefix == null) return;
        var px = ad.prefix;
        float[] pe = px.embeddings();
        for (int t = 0, p = p0; t < T && p < px.numVirtualTokens(); t++, p++) {
            System.arraycopy(pe, px.offset(p, l, 0), k, (b * T + t) * kvDim, kvDim);
            System.arraycopy(pe, px.offset(p, l, 1), v, (b * T + t) * kvDim, kvDim);
        }
    }

    /// [#prefixForward] mirrored (training, every row at position 0): the keys' and values' gradients at the first n
    /// positions are the prefix's (into g.dPrompt(), laid out as prompt_embeddings); the placeholders' own k_proj and
    /// v_proj outputs were discarded, so their gradients are zeroed.   dk, dv: (B, T, kvDim)
    private void prefixBackward(float[] dk, float[] dv, Grads g, int l, int B, int T) {
        LoadedAdapter ad = g.adapter();
        if (ad == null || ad.prefix == null) return;
        var px = ad.prefix;
        float[] dP = g.dPrompt();
        for (int b = 0; b < B; b++)
            for (int t = 0; t < Math.min(px.numVirtualTokens(), T); t++) {
                int at = (b * T + t) * kvDim, ok = px.offset(t, l, 0), ov = px.offset(t, l, 1);
                for (int j = 0; j < kvDim; j++) {
                    dP[ok + j] += dk[at + j];
                    dP[ov + j] += dv[at + j];
                }
                Arrays.fill(dk, at, at + kvDim, 0f);
                Arrays.fill(dv, at, at + kvDim, 0f);
            }
    }

    /// The block's forward reversed. On entry dres = dL/d resid[l+1]; on exit dres = dL/d resid[l].
    private void blockBackward(Activations a, int l, int B, int T, Grads g) {
        LlamaWeights.Layer w = weights.layers.get(l);
        int s = a.slots == 1 ? 0 : l, N = B * T;
        Map<float[], float[]> gb = g.base();
        // resid[l+1] = resid2 + down(act)
        System.arraycopy(a.dres, 0, a.dres2, 0, N * C);
        Arrays.fill(a.dact, 0, N * F, 0f);
        linearBackward(a, l, s, Projection.DOWN_PROJ, a.dact, a.dres, a.act[s], N, g);
        Arrays.fill(a.dgate, 0, N * F, 0f);
        Arrays.fill(a.dup, 0, N * F, 0f);
        SwiGlu.backward(a.dgate, a.dup, a.dact, a.gate[s], a.up[s], N * F);
        Arrays.fill(a.dln, 0, N * C, 0f);
        linearBackward(a, l, s, Projection.UP_PROJ, a.dln, a.dup, a.ln2[s], N, g);
        linearBackward(a, l, s, Projection.GATE_PROJ, a.dln, a.dgate, a.ln2[s], N, g);
        RmsNorm.backward(a.dres2, gb.get(w.postAttentionLayernorm()), a.dln, a.resid2[s], w.postAttentionLayernorm(), a.rstd2[s], N, C);
        // resid2 = resid[l] + o(attention(rope(q), rope(k), v))
        System.arraycopy(a.dres2, 0, a.dres, 0, N * C);
        Arrays.fill(a.dattY, 0, N * qDim, 0f);
        linearBackward(a, l, s, Projection.O_PROJ, a.dattY, a.dres2, a.attY[s], N, g);
        Arrays.fill(a.dq, 0, N * qDim, 0f);
        Arrays.fill(a.dk, 0, N * kvDim, 0f);
        Arrays.fill(a.dv, 0, N * kvDim, 0f);
        long t0 = timing ? System.nanoTime() : 0;
        if (a.shifted)
            ShiftedAttention.backward(gemm, a.dq, a.dk, a.dv, a.dattY, a.probs[s], a.q[s], a.k[s], a.v[s], a.s2q, a.s2k, a.s2v, a.s2y,
                    a.s2dq, a.s2dk, a.s2dv, a.attScratch, B, T, NH, KVH, HS);
        else Attention.backward(gemm, a.dq, a.dk, a.dv, a.dattY, a.probs[s], a.q[s], a.k[s], a.v[s], B, T, NH, KVH, HS, a.attScratch);
        if (timing) attentionNanos += System.nanoTime() - t0;
        prefixBackward(a.dk, a.dv, g, l, B, T);
        Rope.backward(a.dq, a.cos, a.sin, B, T, NH, HS, 0);
        Rope.backward(a.dk, a.cos, a.sin, B, T, KVH, HS, 0);
        Arrays.fill(a.dln, 0, N * C, 0f);
        linearBackward(a, l, s, Projection.V_PROJ, a.dln, a.dv, a.ln1[s], N, g);
        linearBackward(a, l, s, Projection.K_PROJ, a.dln, a.dk, a.ln1[s], N, g);
        linearBackward(a, l, s, Projection.Q_PROJ, a.dln, a.dq, a.ln1[s], N, g);
        RmsNorm.backward(a.dres, gb.get(w.inputLayernorm()), a.dln, a.resid[l], w.inputLayernorm(), a.rstd1[s], N, C);
    }

    /// Mirrors [#linear]: dx += dy·W (+ the adapter's path), and dW, db when the base weight is trained.
    private void linearBackward(Activations a, int l, int s, Projection p, float[] dx, float[] dy, float[] x, int N, Grads g) {
        LlamaWeights.Layer w = weights.layers.get(l);
        int in = p.in(config), out = p.out(config), i = p.ordinal();
        float[] W = p.weight(w);
        float[] dW = W == null ? null : g.base().get(W);
        if (dW != null) {
            float[] bias = p.bias(w);
            Linear.backwardWeight(gemm, dW, bias == null ? null : g.base().get(bias), dy, x, N, in, out);
        }
        LoadedAdapter ad = g.adapter();
        float[] v = ad == null ? null : ad.ia3(l, p);
        if (v != null) {   // (IA)³ mirrors [#linear]: the base's input gradient through the scaling
            if (ad.ia3Feedforward(l, p)) {
                Arrays.fill(a.ia3x, 0, N * in, 0f);
                linears[l][i].backwardInput(gemm, a.ia3x, dy, N, a.baseScratch);
                Ia3Linear.backwardInput(dx, g.dIa3()[l][i], a.ia3x, x, v, N, in);
            } else {
                linears[l][i].forward(gemm, a.ia3x, x, p.bias(w), N, a.baseScratch);   // the unscaled output, recomputed
                Ia3Linear.backwardOutput(a.ia3dy, g.dIa3()[l][i], dy, a.ia3x, v, N, out);
                linears[l][i].backwardInput(gemm, dx, a.ia3dy, N, a.baseScratch);
            }
            return;
        }
        linears[l][i].backwardInput(gemm, dx, dy, N, a.baseScratch);
        LoadedAdapter.Module m = ad == null ? null : ad.module(l, p);
        if (m == null) return;
        LoraWeights lw = m.weights();
        boolean drop = ad.dropout() > 0;
        float[] xin = drop ? a.xd[s][i] : x;
        float[] dxin = dx;
        if (drop) { Arrays.fill(a.dxd, 0, N * in, 0f); dxin = a.dxd; }
        if (lw.magnitude() != null)
            DoraLinear.backward(gemm, dxin, g.dA()[l][i], g.dB()[l][i], g.dMag()[l][i], a.du, a.dh, dy, xin, a.h[s][i], a.u[s][i],
                    ad.doraNorm(l, p, weights), W, lw.a(), lw.b(), lw.magnitude(), m.scaling(), N, in, out, lw.r());
        else LoraLinear.backward(gemm, dxin, g.dA()[l][i], g.dB()[l][i], a.dh, dy, xin, a.h[s][i], lw.a(), lw.b(), m.scaling(), N, in, out, lw.r());
        if (drop) Dropout.backward(dx, a.dxd, a.mask[s][i], N * in);
    }

    // ---------------------------------------------------------------- helpers

    /// A noise stream derived from (seed, step, layer, module) alone.
    private static SplittableRandom rng(Noise noise, int layer, int module) {
        long z = noise.seed() * 0x9E3779B97F4A7C15L + noise.step();
        z = z * 0xBF58476D1CE4E5B9L + layer + 1;
        z = z * 0x94D049BB133111EBL + module + 1;
        return new SplittableRandom(z);
    }

    private void check(Activations a, int[] tokens, int B, int T, int[] slots, int[] pos0, LoadedAdapter[] adapters, KvCache cache) {
        if (B < 1 || B > a.B) throw new ConfigException("a batch of " + B + " rows does not fit activations planned for " + a.B + " rows");
        if (T < 1 || T > a.Tmax) throw new ConfigException("T " + T + " is outside [1, " + a.Tmax + "], the activations' Tmax; plan them for the longest chunk");
        if (tokens.length < B * T) throw new ConfigException("tokens has " + tokens.length + " ids, expected B·T = " + (B * T));
        if (adapters != null && adapters.length < B) throw new ConfigException(adapters.length + " adapters for " + B + " rows");
        for (int i = 0; i < B * T; i++)
            if (tokens[i] < 0 || tokens[i] >= V)
                throw new ConfigException("token id " + tokens[i] + " at index " + i + " is outside the vocabulary [0, " + V + ")");
        int end = T;
        if (cache == null) {
            if (slots != null || pos0 != null) throw new ConfigException("slots and positions need a KV cache; pass null for both without one");
        } else {
            if (a.plan.backward()) throw new ConfigException("a training forward runs without a KV cache");
            if (pos0 == null || pos0.length < B) throw new ConfigException("a forward over a KV cache needs pos0 for each of the " + B + " rows");
            if (a.plan.cacheCapacity() < cache.capacity)
                throw new ConfigException("activations were planned for a cache of " + a.plan.cacheCapacity() + " positions, this cache has " + cache.capacity);
            for (int b = 0; b < B; b++) {
                int slot = slots == null ? b : slots[b];
                if (slot < 0 || slot >= cache.slots) throw new ConfigException("row " + b + " uses slot " + slot + ", outside the cache's [0, " + cache.slots + ")");
                for (int c = 0; c < b; c++)
                    if ((slots == null ? c : slots[c]) == slot) throw new ConfigException("rows " + c + " and " + b + " both continue slot " + slot);
                if (pos0[b] < 0 || pos0[b] + T > cache.capacity)
                    throw new ConfigException("row " + b + ": positions [" + pos0[b] + ", " + (pos0[b] + T) + ") do not fit a KV cache of "
                            + cache.capacity + "; allocate a larger cache");
                end = Math.max(end, pos0[b] + T);
            }
        }
        if (config.slidingWindow() > 0 && end > config.slidingWindow())
            throw new UnsupportedModelException("sequence length " + end + " exceeds the sliding window " + config.slidingWindow()
                    + "; peft4j attends to the full causal context, which differs from " + config.architecture().modelType()
                    + " beyond the window: keep sequences within " + config.slidingWindow() + " tokens");
        if (adapters != null)
            for (int b = 0; b < B; b++) {
                LoadedAdapter ad = adapters[b];
                if (ad == null) continue;
                if (!ad.base.equals(config))
                    throw new ConfigException(ad + " was checked against another base config; load it for this model");
                a.fitAdapter(ad.maxRank(), ad.dora() ? ad.maxOut() : 0);
                if (ad.ia3 != null) a.fitIa3(config);
            }
    }

    /// Benchmarks: measure the wall time of attention (forward and backward) from zero.
    public void startTiming() { timing = true; attentionNanos = 0; }

    /// Nanoseconds spent in attention since [#startTiming].
    public long attentionNanos() { return attentionNanos; }

    private static void add(float[] y, float[] x, int n) {
        for (int i = 0; i < n; i++) y[i] += x[i];
    }
}
