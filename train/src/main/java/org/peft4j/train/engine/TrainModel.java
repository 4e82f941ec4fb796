package org.peft4j.train.engine;

import org.peft4j.model.llama.Projection;
import org.peft4j.core.Gemm;
import org.peft4j.core.Peft4jException.ConfigException;
import org.peft4j.core.Peft4jException.UnsupportedModelException;
import org.peft4j.model.LlamaConfig;
import org.peft4j.model.layers.Attention;
import org.peft4j.model.layers.CrossEntropy;
import org.peft4j.model.layers.Embedding;
import org.peft4j.model.layers.Linear;
import org.peft4j.model.layers.Neftune;
import org.peft4j.model.layers.RmsNorm;
import org.peft4j.model.layers.Rope;
import org.peft4j.model.layers.SwiGlu;
import org.peft4j.model.llama.LlamaWeights;
import org.peft4j.model.adapter.lora.DoraLinear;
import org.peft4j.model.adapter.lora.Dropout;
import org.peft4j.model.adapter.lora.LoraConfig;
import org.peft4j.model.adapter.lora.LoraLinear;
import org.peft4j.model.adapter.lora.LoraWeights;
import org.peft4j.model.adapter.lora.Pissa;
import org.peft4j.model.quant.QuantizedModel;
import org.peft4j.quant.Nf4Tensor;
import org.peft4j.quant.QuantLinear;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.IdentityHashMap;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;

/// The training forward and backward of a Llama-family decoder, llm.c style: each block's forward is a list of layer
/// calls and its backward is the same list reversed. Memory is planned once for (B, Tmax): activations, gradient
/// scratch and adapter buffers are allocated in the constructor and a step allocates no tensors.
///
/// What is trained follows the [Method]: LoRA adapters over a frozen base (only `Linear.backwardInput` runs for
/// base weights, no base gradient exists), every weight (full), or LLaMA-Factory's freeze tuning.
/// With `checkpointing`, only each block's input is kept and the block is recomputed during backward.
public final class TrainModel {
    public final LlamaConfig config;
    public final LlamaWeights weights;
    public final Method method;
    public final int B, Tmax;
    public final boolean checkpointing;
    private final Gemm gemm;
    private final int L, C, F, V, NH, KVH, HS, qDim, kvDim;
    private final float eps;

    // LoRA: (L)(7) adapters or null where not targeted, their gradients and saved h / dropout buffers.
    private final LoraWeights[][] lora;
    private LoraWeights[][] pissaInit;    // (L)(7) PiSSA's initial A0, B0 (copies), kept for the conversion; else null
    private final float[][][] dA, dB;
    private final float[][][] h;          // (slots)(7) (N, r)
    private final float[][][] xd, mask;   // (slots)(7) (N, in), only with dropout
    private final float[][] scale;        // (L)(7)
    private final float dropout;
    // DoRA: magnitude gradients, the detached weight norms ‖W0 + s·B·A‖ per row (refreshed at each forward), and
    // u = drop(x)·(W0 + s·B·A)ᵀ kept per slot for backward, with its gradient scratch.
    private final boolean dora;
    private final float[][][] dMag, doraNorm; // (L)(7) (out)
    private final float[][][] u;              // (slots)(7) (N, out)
    private float[] du;                       // (N, max out)
    boolean doraNormsHeld;                    // tests: keep the norms of the last forward (the detached constant)
    private float[] dh;                   // (N, rMax) scratch
    private float[] dxd;                  // (N, max in) scratch for dropout backward

    // Full / freeze: weight array → its gradient (tied embeddings share one gradient).
    private final Map<float[], float[]> gradOf = new IdentityHashMap<>();
    private final List<Param> params = new ArrayList<>();

    // Activations. Per-layer arrays have `slots` entries: L, or 1 with checkpointing.
    private final float[][] resid;        // (L+1) (N, C): the input of each block; resid[L] is the final hidden state
    private final float[][] ln1, ln2;     // (slots) (N, C)
    private final float[][] rstd1, rstd2; // (slots) (N)
    private final float[][] q;            // (slots) (N, qDim), after RoPE
    private final float[][] k, v;         // (slots) (N, kvDim), k after RoPE
    private final float[][] att;          // (slots) (B, NH, T, T) softmax probabilities (dS once backward has run)
    private final float[][] attY;         // (slots) (N, qDim)
    private final float[][] resid2;       // (slots) (N, C): block input + attention output
    private final float[][] gate, up, act; // (slots) (N, F)
    private final float[] lnf, rstdf;     // (N, C), (N)
    private final float[] logits;         // (N, V); turned into dlogits in place by backward
    private final double[] lse;           // (N)
    private final float[] cos, sin;       // (Tmax, HS/2)

    // Gradient scratch.
    private final float[] dres, dres2, dln, dq, dk, dv, dattY, dgate, dup, dact; // (N, ·)
    private final float[] attScratch;     // Attention.backwardScratchSize(B, Tmax, NH, HS)

    // QLoRA: the 4-bit base linears, (L)(7) in Projection order, and the tile they are dequantized into; else null.
    private final Nf4Tensor[][] quantBase;
    private final float[] quantScratch;   // (max over modules of QuantLinear.scratchSize(in, out))

    // Wall time of attention and of the loss since the last reset, when timing is on (benchmarks).
    private boolean timing;
    private long attentionNanos, lossNanos;

    private float neftuneAlpha;
    private int Bc;                       // rows of the current batch, ≤ B
    private long seed;

    /// With PiSSA init ([LoraConfig.Init#PISSA]) this **rewrites the targeted base weights of `weights` in place** into
    /// the residual W − s·B0·A0; load a fresh copy for anything that needs the original base.
    public TrainModel(LlamaWeights weights, Method method, Gemm gemm, int B, int Tmax, boolean checkpointing, long seed) {
        this(weights, null, method, gemm, B, Tmax, checkpointing, seed);
    }

    /// QLoRA: LoRA over a 4-bit base whose linears go through [QuantLinear] (dequantized tile by tile, never whole).
    public TrainModel(QuantizedModel qm, Method method, Gemm gemm, int B, int Tmax, boolean checkpointing, long seed) {
        this(qm.weights, qm.linears, method, gemm, B, Tmax, checkpointing, seed);
    }

    private TrainModel(LlamaWeights weights, Nf4Tensor[][] quantBase, Method method, Gemm gemm, int B, int Tmax, boolean checkpointing, long seed) {
        LlamaConfig c = weights.config;
        if (quantBase != null && !(method instanceof Method.Lora))
            throw new ConfigException("a 4-bit base is frozen: only LoRA (QLoRA) trains over it; use finetuning_type: lora, or load the unquantized model for full/freeze tuning");
        this.quantBase = quantBase;
        int scratch = 0;
        if (quantBase != null) for (Projection m : Projection.values()) scratch = Math.max(scratch, QuantLinear.scratchSize(m.in(c), m.out(c)));
        this.quantScratch = quantBase == null ? null : new float[scratch];
        this.config = c; this.weights = weights; this.method = method; this.gemm = gemm;
        this.B = B; this.Tmax = Tmax; this.checkpointing = checkpointing; this.seed = seed;
        L = c.numHiddenLayers(); C = c.hiddenSize(); F = c.intermediateSize(); V = c.vocabSize();
        NH = c.numAttentionHeads(); KVH = c.numKeyValueHeads(); HS = c.headDim();
        qDim = c.qDim(); kvDim = c.kvDim(); eps = (float) c.rmsNormEps();
        if (B < 1 || Tmax < 2) throw new ConfigException("training needs batch >= 1 and sequence length >= 2, got " + B + " x " + Tmax);
        if (Tmax > c.maxPositionEmbeddings())
            throw new ConfigException("cutoff_len " + Tmax + " exceeds the model's max_position_embeddings " + c.maxPositionEmbeddings() + "; lower cutoff_len");
        long n = (long) B * Tmax;
        if (n * Math.max(V, F) > Integer.MAX_VALUE || (long) B * NH * Tmax * Tmax > Integer.MAX_VALUE)
            throw new ConfigException("batch " + B + " x sequence " + Tmax + " is too large for this model's activations; lower per_device_train_batch_size or cutoff_len");
        int N = (int) n, slots = checkpointing ? 1 : L;

        resid = new float[L + 1][N * C];
        ln1 = new float[slots][N * C]; ln2 = new float[slots][N * C];
        rstd1 = new float[slots][N]; rstd2 = new float[slots][N];
        q = new float[slots][N * qDim]; k = new float[slots][N * kvDim]; v = new float[slots][N * kvDim];
        att = new float[slots][B * NH * Tmax * Tmax];
        attY = new float[slots][N * qDim]; resid2 = new float[slots][N * C];
        gate = new float[slots][N * F]; up = new float[slots][N * F]; act = new float[slots][N * F];
        lnf = new float[N * C]; rstdf = new float[N]; logits = new float[N * V]; lse = new double[N];
        cos = new float[Tmax * HS / 2]; sin = new float[Tmax * HS / 2];
        Rope.tables(cos, sin, c.ropeScaling().apply(Rope.invFreq(HS, c.ropeTheta())), Tmax);
        dres = new float[N * C]; dres2 = new float[N * C]; dln = new float[N * C];
        dq = new float[N * qDim]; dk = new float[N * kvDim]; dv = new float[N * kvDim]; dattY = new float[N * qDim];
        dgate = new float[N * F]; dup = new float[N * F]; dact = new float[N * F];
        attScratch = new float[Attention.backwardScratchSize(B, Tmax, NH, HS)];

        int nm = Projection.values().length;
        if (method instanceof Method.Lora(LoraConfig lc)) {
            dora = lc.useDora();
            if (dora && quantBase != null) throw new UnsupportedModelException("DoRA over a 4-bit base is not supported; set use_dora: false or drop quantization_bit");
            lora = new LoraWeights[L][nm]; dA = new float[L][nm][]; dB = new float[L][nm][]; scale = new float[L][nm];
            dMag = dora ? new float[L][nm][] : null;
            doraNorm = dora ? new float[L][nm][] : null;
            dropout = (float) lc.loraDropout();
            h = new float[slots][nm][]; xd = new float[slots][nm][]; mask = new float[slots][nm][];
            u = dora ? new float[slots][nm][] : null;
            int rMax = 1, inMax = 1;
            SplittableRandom init = new SplittableRandom(seed);
            boolean pissa = lc.initLoraWeights() == LoraConfig.Init.PISSA;
            if (pissa && quantBase != null)
                throw new ConfigException("PiSSA rewrites the base weights into W - s·B·A, which a 4-bit base cannot hold; drop pissa_init or quantization_bit");
            if (pissa && dora) throw new ConfigException("PiSSA with DoRA is not supported; set use_dora: false or pissa_init: false");
            if (pissa) pissaInit = new LoraWeights[L][nm];
            for (int l = 0; l < L; l++) {
                if (!lc.transformsLayer(l)) continue;
                for (Projection m : Projection.values()) {
                    if (!lc.targets(m.module)) continue;
                    int r = lc.rank(m.module), in = m.in(c), out = m.out(c);
                    LoraWeights lw = LoraWeights.allocate(r, in, out, dora);
                    if (pissa) {
                        // PiSSA: A, B from the top-r SVD of W, and W ← W − s·B·A **in place**: the arrays of `weights` now
                        // hold the residual base (any other model sharing them sees it too); the adapted layer still equals W
                        Pissa.init(m.weight(weights.layers.get(l)), lw.a(), lw.b(), (float) lc.scaling(m.module), out, in, r, lc.pissaNiter(), init.split());
                        pissaInit[l][m.ordinal()] = new LoraWeights(r, in, out, lw.a().clone(), lw.b().clone(), null);
                    } else LoraLinear.init(lw.a(), lw.b(), lc.initLoraWeights(), init.split(), in, out, r);
                    // DoRA: the magnitude starts as the row norms of W0 + s·B·A (PEFT), so the adapted layer equals the base
                    if (dora) DoraLinear.weightNorm(lw.magnitude(), m.weight(weights.layers.get(l)), lw.a(), lw.b(), (float) lc.scaling(m.module), out, in, r);
                    attach(l, m, lw, (float) lc.scaling(m.module));
                    rMax = Math.max(rMax, r); inMax = Math.max(inMax, in);
                }
            }
            if (params.isEmpty())
                throw new ConfigException("lora_target " + lc.targetModules() + " matches no linear layer; use names among "
                        + LoraConfig.ALL_LINEAR + " or 'all'");
            for (int s = 0; s < slots; s++)
                for (Projection m : Projection.values()) {
                    int r = 0;
                    for (int l = 0; l < L; l++) if (lora[l][m.ordinal()] != null) r = Math.max(r, lora[l][m.ordinal()].r());
                    if (r == 0) continue;
                    h[s][m.ordinal()] = new float[N * r];
                    if (dora) u[s][m.ordinal()] = new float[N * m.out(c)];
                    if (dropout > 0) { xd[s][m.ordinal()] = new float[N * m.in(c)]; mask[s][m.ordinal()] = new float[N * m.in(c)]; }
                }
            dh = new float[N * rMax];
            dxd = dropout > 0 ? new float[N * inMax] : null;
            int outMax = 1;
            for (Projection m : Projection.values()) outMax = Math.max(outMax, m.out(c));
            du = dora ? new float[N * outMax] : null;
        } else {
            lora = null; dA = null; dB = null; h = null; xd = null; mask = null; scale = null; dropout = 0;
            dora = false; dMag = null; doraNorm = null; u = null; du = null;
            boolean full = method instanceof Method.Full;
            if (full) {
                addParam(LlamaWeights.EMBED_TOKENS, new long[]{V, C}, weights.embedTokens);
                if (!c.tieWordEmbeddings()) addParam(LlamaWeights.LM_HEAD, new long[]{V, C}, weights.lmHead);
                addParam(LlamaWeights.NORM, new long[]{C}, weights.norm);
            }
            for (int l = 0; l < L; l++) {
                LlamaWeights.Layer lw = weights.layers.get(l);
                for (var t : org.peft4j.model.llama.LayerTensor.values()) {
                    if (!t.present(c)) continue;
                    boolean train = full || (method instanceof Method.Freeze fz && fz.trains(l, L)
                            && fz.trainsModule(t.suffix.substring(0, t.suffix.indexOf('.'))));
                    if (train) addParam(t.name(l), t.shape(c), lw.get(t));
                }
            }
            if (params.isEmpty()) throw new ConfigException("the freeze settings select no trainable parameter; check freeze_trainable_layers and freeze_trainable_modules");
        }
    }

    private void attach(int l, Projection m, LoraWeights lw, float s) {
        lora[l][m.ordinal()] = lw;
        scale[l][m.ordinal()] = s;
        dA[l][m.ordinal()] = new float[lw.a().length];
        dB[l][m.ordinal()] = new float[lw.b().length];
        String base = "base_model.model.model.layers." + l + "." + m.path();
        params.add(new Param(base + ".lora_A.weight", new long[]{lw.r(), lw.in()}, lw.a(), dA[l][m.ordinal()]));
        params.add(new Param(base + ".lora_B.weight", new long[]{lw.out(), lw.r()}, lw.b(), dB[l][m.ordinal()]));
        if (lw.magnitude() != null) {
            dMag[l][m.ordinal()] = new float[lw.out()];
            doraNorm[l][m.ordinal()] = new float[lw.out()];
            params.add(new Param(base + ".lora_magnitude_vector", new long[]{lw.out()}, lw.magnitude(), dMag[l][m.ordinal()]));
        }
    }

    private void addParam(String name, long[] shape, float[] data) {
        float[] g = gradOf.computeIfAbsent(data, d -> new float[d.length]);
        params.add(new Param(name, shape, data, g));
    }

    /// The trainable tensors with their gradients, in a fixed order (optimizer state and checkpoints follow it).
    public List<Param> params() { return params; }

    /// The adapter of (layer, module), or null; LoRA only.
    public LoraWeights adapter(int layer, Projection m) { return lora == null ? null : lora[layer][m.ordinal()]; }

    /// PiSSA's initial factors A0, B0 of (layer, module), or null (not PiSSA, or no adapter there): with them
    /// [Pissa#convert] turns the trained adapter into a plain LoRA over the original base.
    public LoraWeights pissaInit(int layer, Projection m) { return pissaInit == null ? null : pissaInit[layer][m.ordinal()]; }

    /// Replaces adapter values (e.g. loaded from a checkpoint), keeping the arrays the optimizer holds.
    public void setNeftuneAlpha(float alpha) { this.neftuneAlpha = alpha; }

    /// Benchmarks: measure the wall time of attention (forward and backward) and of the loss, from zero.
    public void startTiming() { timing = true; attentionNanos = 0; lossNanos = 0; }

    /// Nanoseconds spent in attention and in the loss since [#startTiming]: {attention, loss}.
    public long[] timings() { return new long[] {attentionNanos, lossNanos}; }

    public void zeroGrad() { for (Param p : params) Arrays.fill(p.grad(), 0f); }

    /// The logits of the last forward, (B·T, V); valid until the next backward (which overwrites them in place).
    public float[] logits() { return logits; }

    /// Forward over a (B, T) batch, T ≤ Tmax, with aligned targets (IGNORE = -100; see `CrossEntropy.shiftLabels`).
    /// Returns the sum of the per-token losses. `training` enables dropout and NEFTune; `step` seeds their noise.
    public double forward(int[] tokens, int[] targets, int T, boolean training, long step) {
        return forward(tokens, targets, B, T, training, step);
    }

    /// As [#forward(int[], int[], int, boolean, long)] for a batch of `rows` ≤ B sequences (an epoch's last batch).
    public double forward(int[] tokens, int[] targets, int rows, int T, boolean training, long step) {
        if (rows < 1 || rows > B) throw new ConfigException("batch of " + rows + " rows outside [1, " + B + "]");
        this.Bc = rows;
        checkBatch(tokens, targets, T);
        int N = Bc * T;
        if (dora && !doraNormsHeld) refreshDoraNorms();
        Embedding.forward(resid[0], tokens, weights.embedTokens, N, C);
        if (training && neftuneAlpha > 0)
            Neftune.forward(resid[0], Bc, T, C, neftuneAlpha, true, rng(step, -1, -1));
        for (int l = 0; l < L; l++) blockForward(l, T, training, step);
        RmsNorm.forward(lnf, rstdf, resid[L], weights.norm, N, C, eps);
        Linear.forward(gemm, logits, lnf, weights.lmHead, null, N, C, V);
        if (targets == null) return 0;
        long t0 = timing ? System.nanoTime() : 0;
        double loss = CrossEntropy.forward(null, lse, logits, targets, N, V);
        if (timing) lossNanos += System.nanoTime() - t0;
        return loss;
    }

    /// Backward of the last `forward` (same tokens, targets and T), adding into the parameter gradients.
    /// lossScale = dLoss/d(sum of token losses): 1 / (target tokens in the whole accumulated batch).
    public void backward(int[] tokens, int[] targets, int T, float lossScale, long step) {
        int N = Bc * T;
        long t0 = timing ? System.nanoTime() : 0;
        CrossEntropy.backward(logits, logits, lse, targets, N, V, lossScale);   // logits now hold dlogits
        if (timing) lossNanos += System.nanoTime() - t0;
        Arrays.fill(dres, 0, N * C, 0f);
        Arrays.fill(dln, 0, N * C, 0f);
        Linear.backwardInput(gemm, dln, logits, weights.lmHead, N, C, V);
        float[] gHead = gradOf.get(weights.lmHead);
        if (gHead != null) Linear.backwardWeight(gemm, gHead, null, logits, lnf, N, C, V);
        RmsNorm.backward(dres, gradOf.get(weights.norm), dln, resid[L], weights.norm, rstdf, N, C);
        for (int l = L - 1; l >= 0; l--) {
            if (checkpointing) blockForward(l, T, true, step);
            blockBackward(l, T);
        }
        float[] gEmbed = gradOf.get(weights.embedTokens);
        if (gEmbed != null) Embedding.backward(gEmbed, dres, tokens, N, C);
    }

    /// The DoRA norms are constants of a step (PEFT detaches them): recomputed from the current A and B.
    private void refreshDoraNorms() {
        for (int l = 0; l < L; l++)
            for (Projection m : Projection.values()) {
                LoraWeights lw = lora[l][m.ordinal()];
                if (lw == null) continue;
                DoraLinear.weightNorm(doraNorm[l][m.ordinal()], m.weight(weights.layers.get(l)), lw.a(), lw.b(), scale[l][m.ordinal()],
                        lw.out(), lw.in(), lw.r());
            }
    }

    /// One block: x = resid[l] → resid[l+1].
    private void blockForward(int l, int T, boolean training, long step) {
        LlamaWeights.Layer w = weights.layers.get(l);
        int s = checkpointing ? 0 : l, N = Bc * T;
        RmsNorm.forward(ln1[s], rstd1[s], resid[l], w.inputLayernorm(), N, C, eps);
        linear(l, s, Projection.Q_PROJ, q[s], ln1[s], T, training, step);
        linear(l, s, Projection.K_PROJ, k[s], ln1[s], T, training, step);
        linear(l, s, Projection.V_PROJ, v[s], ln1[s], T, training, step);
        Rope.forward(q[s], cos, sin, Bc, T, NH, HS, 0);
        Rope.forward(k[s], cos, sin, Bc, T, KVH, HS, 0);
        long t0 = timing ? System.nanoTime() : 0;
        Attention.forward(gemm, attY[s], att[s], q[s], k[s], v[s], Bc, T, T, NH, KVH, HS, 0);
        if (timing) attentionNanos += System.nanoTime() - t0;
        linear(l, s, Projection.O_PROJ, resid2[s], attY[s], T, training, step);
        add(resid2[s], resid[l], N * C);
        RmsNorm.forward(ln2[s], rstd2[s], resid2[s], w.postAttentionLayernorm(), N, C, eps);
        linear(l, s, Projection.GATE_PROJ, gate[s], ln2[s], T, training, step);
        linear(l, s, Projection.UP_PROJ, up[s], ln2[s], T, training, step);
        SwiGlu.forward(act[s], gate[s], up[s], N * F);
        linear(l, s, Projection.DOWN_PROJ, resid[l + 1], act[s], T, training, step);
        add(resid[l + 1], resid2[s], N * C);
    }

    /// The block's forward reversed. On entry dres = dL/d resid[l+1]; on exit dres = dL/d resid[l].
    private void blockBackward(int l, int T) {
        LlamaWeights.Layer w = weights.layers.get(l);
        int s = checkpointing ? 0 : l, N = Bc * T;
        // resid[l+1] = resid2 + down(act)
        System.arraycopy(dres, 0, dres2, 0, N * C);
        Arrays.fill(dact, 0, N * F, 0f);
        linearBackward(l, s, Projection.DOWN_PROJ, dact, dres, act[s], T);
        Arrays.fill(dgate, 0, N * F, 0f);
        Arrays.fill(dup, 0, N * F, 0f);
        SwiGlu.backward(dgate, dup, dact, gate[s], up[s], N * F);
        Arrays.fill(dln, 0, N * C, 0f);
        linearBackward(l, s, Projection.UP_PROJ, dln, dup, ln2[s], T);
        linearBackward(l, s, Projection.GATE_PROJ, dln, dgate, ln2[s], T);
        RmsNorm.backward(dres2, gradOf.get(w.postAttentionLayernorm()), dln, resid2[s], w.postAttentionLayernorm(), rstd2[s], N, C);
        // resid2 = resid[l] + o(attention(rope(q), rope(k), v))
        System.arraycopy(dres2, 0, dres, 0, N * C);
        Arrays.fill(dattY, 0, N * qDim, 0f);
        linearBackward(l, s, Projection.O_PROJ, dattY, dres2, attY[s], T);
        Arrays.fill(dq, 0, N * qDim, 0f);
        Arrays.fill(dk, 0, N * kvDim, 0f);
        Arrays.fill(dv, 0, N * kvDim, 0f);
        long t0 = timing ? System.nanoTime() : 0;
        Attention.backward(gemm, dq, dk, dv, dattY, att[s], q[s], k[s], v[s], Bc, T, NH, KVH, HS, attScratch);
        if (timing) attentionNanos += System.nanoTime() - t0;
        Rope.backward(dq, cos, sin, Bc, T, NH, HS, 0);
        Rope.backward(dk, cos, sin, Bc, T, KVH, HS, 0);
        Arrays.fill(dln, 0, N * C, 0f);
        linearBackward(l, s, Projection.V_PROJ, dln, dv, ln1[s], T);
        linearBackward(l, s, Projection.K_PROJ, dln, dk, ln1[s], T);
        linearBackward(l, s, Projection.Q_PROJ, dln, dq, ln1[s], T);
        RmsNorm.backward(dres, gradOf.get(w.inputLayernorm()), dln, resid[l], w.inputLayernorm(), rstd1[s], N, C);
    }

    /// y = x·Wᵀ + b, plus the adapter's s·B·A·drop(x) when the module has one.   y: (N, out)   x: (N, in)
    private void linear(int l, int s, Projection m, float[] y, float[] x, int T, boolean training, long step) {
        LlamaWeights.Layer w = weights.layers.get(l);
        int N = Bc * T, in = m.in(config), out = m.out(config);
        if (quantBase != null) QuantLinear.forward(gemm, y, x, quantBase[l][m.ordinal()], m.bias(w), quantScratch, N, in, out);
        else Linear.forward(gemm, y, x, m.weight(w), m.bias(w), N, in, out);
        LoraWeights lw = lora == null ? null : lora[l][m.ordinal()];
        if (lw == null) return;
        float[] xin = x;
        if (dropout > 0 && training) {
            xin = xd[s][m.ordinal()];
            Dropout.forward(xin, mask[s][m.ordinal()], x, dropout, rng(step, l, m.ordinal()), N * in);
        }
        int i = m.ordinal();
        if (dora) DoraLinear.forward(gemm, y, h[s][i], u[s][i], doraNorm[l][i], xin, m.weight(w), lw.a(), lw.b(), lw.magnitude(), scale[l][i], N, in, out, lw.r());
        else LoraLinear.forward(gemm, y, h[s][i], xin, lw.a(), lw.b(), scale[l][i], N, in, out, lw.r());
    }

    /// Mirrors `linear`: dx += dy·W (+ the adapter's path), and dW, db when the base weight is trained.
    private void linearBackward(int l, int s, Projection m, float[] dx, float[] dy, float[] x, int T) {
        LlamaWeights.Layer w = weights.layers.get(l);
        int N = Bc * T, in = m.in(config), out = m.out(config);
        float[] W = m.weight(w);
        float[] dW = gradOf.get(W);
        if (dW != null) {
            float[] bias = m.bias(w);
            Linear.backwardWeight(gemm, dW, bias == null ? null : gradOf.get(bias), dy, x, N, in, out);
        }
        if (quantBase != null) QuantLinear.backwardInput(gemm, dx, dy, quantBase[l][m.ordinal()], quantScratch, N, in, out);
        else Linear.backwardInput(gemm, dx, dy, W, N, in, out);
        LoraWeights lw = lora == null ? null : lora[l][m.ordinal()];
        if (lw == null) return;
        int i = m.ordinal();
        float[] xin = dropout > 0 ? xd[s][i] : x;
        float[] dxin = dx;
        if (dropout > 0) { Arrays.fill(dxd, 0, N * in, 0f); dxin = dxd; }
        if (dora) DoraLinear.backward(gemm, dxin, dA[l][i], dB[l][i], dMag[l][i], du, dh, dy, xin, h[s][i], u[s][i], doraNorm[l][i],
                W, lw.a(), lw.b(), lw.magnitude(), scale[l][i], N, in, out, lw.r());
        else LoraLinear.backward(gemm, dxin, dA[l][i], dB[l][i], dh, dy, xin, h[s][i], lw.a(), lw.b(), scale[l][i], N, in, out, lw.r());
        if (dropout > 0) Dropout.backward(dx, dxd, mask[s][i], N * in);
    }

    /// A noise stream derived from (seed, step, layer, module) alone, so a recomputed block (checkpointing) and a
    /// resumed run draw the same dropout masks and NEFTune noise.
    private SplittableRandom rng(long step, int layer, int module) {
        long z = seed * 0x9E3779B97F4A7C15L + step;
        z = z * 0xBF58476D1CE4E5B9L + layer + 1;
        z = z * 0x94D049BB133111EBL + module + 1;
        return new SplittableRandom(z);
    }

    private void checkBatch(int[] tokens, int[] targets, int T) {
        if (T < 1 || T > Tmax) throw new ConfigException("sequence length " + T + " outside [1, " + Tmax + "]");
        if (tokens.length < Bc * T) throw new ConfigException("tokens hold " + tokens.length + " ids, need B·T = " + Bc * T);
        if (targets != null && targets.length < Bc * T) throw new ConfigException("targets hold " + targets.length + " ids, need B·T = " + Bc * T);
        for (int i = 0; i < Bc * T; i++)
            if (tokens[i] < 0 || tokens[i] >= V) throw new ConfigException("token id " + tokens[i] + " at position " + i + " is outside the vocabulary [0, " + V + ")");
    }

    private static void add(float[] y, float[] x, int n) {
        for (int i = 0; i < n; i++) y[i] += x[i];
    }

    /// Bytes of activations and gradient scratch planned for (B, Tmax), for reports and `estimate`.
    public long activationBytes() {
        long f = 0;
        for (float[][] a : List.of(resid, ln1, ln2, rstd1, rstd2, q, k, v, att, attY, resid2, gate, up, act))
            for (float[] x : a) f += x.length;
        f += lnf.length + rstdf.length + logits.length + 2L * lse.length;
        f += attScratch.length + dres.length + dres2.length + dln.length + dq.length + dk.length + dv.length + dattY.length + dgate.length + dup.length + dact.length;
        return 4 * f;
    }
}
