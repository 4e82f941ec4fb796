package org.peft4j.train.engine;

import org.peft4j.core.Gemm;
import org.peft4j.core.Peft4jException.ConfigException;
import org.peft4j.core.Peft4jException.UnsupportedModelException;
import org.peft4j.model.LlamaConfig;
import org.peft4j.model.adapter.LoadedAdapter;
import org.peft4j.model.adapter.ia3.Ia3Adapter;
import org.peft4j.model.adapter.ia3.Ia3Config;
import org.peft4j.model.adapter.lora.LoraConfig;
import org.peft4j.model.adapter.oft.OftConfig;
import org.peft4j.model.adapter.oft.OftRotation;
import org.peft4j.model.adapter.lora.LoraInit;
import org.peft4j.model.adapter.lora.LoraWeights;
import org.peft4j.model.adapter.lora.PeftAdapter;
import org.peft4j.model.layers.CrossEntropy;
import org.peft4j.model.layers.SequenceLogps;
import org.peft4j.model.llama.Activations;
import org.peft4j.model.llama.Decoder;
import org.peft4j.model.llama.KvCache;
import org.peft4j.model.llama.LayerTensor;
import org.peft4j.model.llama.LlamaWeights;
import org.peft4j.model.llama.Projection;
import org.peft4j.model.quant.QuantizedModel;
import org.peft4j.model.weights.BaseWeight;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.IdentityHashMap;
import java.util.List;
import java.util.Map;

/// What training adds around the [Decoder] (the one forward and backward, shared with inference): the trainable
/// tensors and their gradients for a [Method], the trained LoRA adapter as a [LoadedAdapter] value over arrays the
/// optimizer updates in place, the loss op (cross-entropy over all positions) and the activation plan for
/// (B, Tmax, checkpointing). A step allocates no tensors.
///
/// What is trained follows the [Method]: LoRA adapters over a frozen base (only the input gradient of base weights
/// runs, no base gradient exists), every weight (full), or LLaMA-Factory's freeze tuning.
/// With `checkpointing`, only each block's input is kept and the block is recomputed during backward.
public final class TrainModel {
    public final LlamaConfig config;
    public final LlamaWeights weights;
    public final Method method;
    public final int B, Tmax;
    public final boolean checkpointing;
    private final Decoder decoder;
    private final Activations acts;
    private final int V;

    // LoRA: (L)(7) adapter tensors or null where not targeted, as a LoadedAdapter value, and their gradients.
    private final LoraWeights[][] lora;
    private LoraWeights[][] pissaInit;    // (L)(7) PiSSA's initial A0, B0 (copies), kept for the conversion; else null
    private final LoadedAdapter adapter;  // null unless LoRA
    private final LoadedAdapter[] rowAdapters;
    private final Decoder.Grads grads;
    // Prefix tuning with prefix_projection: the MLP's parameters, its activation and the prefix it computes before
    // each forward (PEFT PrefixEncoder while training); null otherwise
    private PrefixMlp prefixMlp;

    /// e (n, D), w1 (E, D), b1 (E), w2 (W, E), b2 (W) with their gradients; h and dh (n, E); prefix and dPrefix (n, W)
    /// are the adapter's array and the decoder's gradient of it, folded into the parameters' after each backward.
    private record PrefixMlp(float[] e, float[] w1, float[] b1, float[] w2, float[] b2, float[] de, float[] dw1, float[] db1,
                             float[] dw2, float[] db2, float[] h, float[] dh, float[] prefix, float[] dPrefix, int n, int D, int E, int W) {}
    boolean doraNormsHeld;                // tests: keep the norms of the last forward (the detached constant)

    // OFT: per targeted linear, the live weight (W' = W0·R_bdᵀ, rewritten before each forward), the frozen W0, the
    // parameter theta (PEFT's oft_R.weight) and its gradient, the rotations, and dL/dW' (the decoder's base gradient).
    public record OftModule(int layer, String module, float[] w, float[] w0, float[] theta, float[] dTheta, float[] rot, float[] dW, int M, int K, int nBlocks, int b) {}
    private final List<OftModule> oft;    // null unless OFT
    private int oftMaxB, oftTerms;
    private double[] oftPw, oftDr, oftDq, oftTmp;

    // Full / freeze: weight array → its gradient (tied embeddings share one gradient).
    private final Map<float[], float[]> gradOf = new IdentityHashMap<>();
    private final List<Param> params = new ArrayList<>();

    // The loss op's buffers.
    private final float[] logits;         // (N, V); turned into dlogits in place by backward
    private final double[] lse;           // (N)

    // Prompt tuning: n virtual tokens before each row; a (B, T) batch runs as (B, n + T) with n placeholder ids first
    // and their targets ignored (PEFT: labels of the virtual tokens are -100).
    private final int nVirtual;
    private final int[] extTokens, extTargets;   // (B, n + Tmax); empty without prompt tuning
    // P-tuning: the prompt encoder whose output (n, C) is the trained adapter's embeddings, rewritten before each
    // forward; the decoder's gradient w.r.t. them (n, C), folded into the encoder's weights after each backward
    private org.peft4j.model.adapter.ptuning.PromptEncoder encoder;   // null unless P-tuning
    private float[] dVirtual;

    private boolean timing;
    private long lossNanos;
    private float neftuneAlpha;
    private int Bc;                       // rows of the current batch, ≤ B
    private boolean lastTraining;         // the last forward ran with dropout and NEFTune
    private final long seed;

    /// With PiSSA init ([LoraConfig.Init#PISSA]) this **rewrites the targeted base weights of `weights` in place** into
    /// the residual W − s·B0·A0; load a fresh copy for anything that needs the original base.
    public TrainModel(LlamaWeights weights, Method method, Gemm gemm, int B, int Tmax, boolean checkpointing, long seed) {
        this(null, weights, method, gemm, B, Tmax, checkpointing, seed);
    }

    /// QLoRA: LoRA over a 4-bit base whose linears are dequantized tile by tile inside each product, never whole.
    public TrainModel(QuantizedModel qm, Method method, Gemm gemm, int B, int Tmax, boolean checkpointing, long seed) {
        this(Decoder.of(qm, gemm), qm.weights, method, gemm, B, Tmax, checkpointing, seed);
    }

    /// LoRA over a frozen base held in its own types (a GGUF model's Q8_0 … Q6_K blocks or 16-bit weights,
    /// [org.peft4j.model.gguf.GgufModel#loadBase]): `weights` holds the float32 tensors with the slots of the linears
    /// in `frozen` null; `frozen` (L)(7) in [Projection] order, each dequantized tile by tile inside its products.
    public TrainModel(LlamaWeights weights, BaseWeight[][] frozen, Method method, Gemm gemm, int B, int Tmax, boolean checkpointing, long seed) {
        this(new Decoder(weights, frozen, gemm), weights, method, gemm, B, Tmax, checkpointing, seed);
    }

    /// `frozenBase`: the decoder over a base that only LoRA trains (null: float32 `weights`, any method).
    private TrainModel(Decoder frozenBase, LlamaWeights weights, Method method, Gemm gemm, int B, int Tmax, boolean checkpointing, long seed) {
        LlamaConfig c = weights.config;
        boolean frozen = frozenBase != null;
        if (frozen && method instanceof Method.Oft)
            throw new UnsupportedModelException("OFT over a quantized base held as stored is not built (peft4j merges the rotation into float weights); "
                    + "load the 4-bit base dequantized (the train command does this for quantization_bit with finetuning_type oft) or drop quantization_bit");
        if (frozen && !(method instanceof Method.Lora))   // (IA)³ included: it is merged into float32 weights
            throw new ConfigException("a quantized (4-bit or GGUF) base is frozen: only LoRA (QLoRA) trains over it; use finetuning_type: lora, or load the unquantized model for full/freeze tuning");
        this.config = c; this.weights = weights; this.method = method;
        this.B = B; this.Tmax = Tmax; this.checkpointing = checkpointing; this.seed = seed;
        V = c.vocabSize();
        int L = c.numHiddenLayers();
        if (B < 1 || Tmax < 2) throw new ConfigException("training needs batch >= 1 and sequence length >= 2, got " + B + " x " + Tmax);
        if (Tmax > c.maxPositionEmbeddings())
            throw new ConfigException("a planned sequence length of " + Tmax + " tokens (the longest example, at most cutoff_len) exceeds the model's max_position_embeddings "
                    + c.maxPositionEmbeddings() + "; set cutoff_len to " + c.maxPositionEmbeddings() + " or less");
        if (c.slidingWindow() > 0 && Tmax > c.slidingWindow())
            throw new UnsupportedModelException("cutoff_len " + Tmax + " exceeds the sliding window " + c.slidingWindow() + " of this "
                    + c.architecture().modelType() + " model; peft4j attends to the full causal context: lower cutoff_len to " + c.slidingWindow());
        long n = (long) B * Tmax;
        if (n * V > Integer.MAX_VALUE)
            throw new ConfigException("batch " + B + " x sequence " + Tmax + " is too large for this model's logits; lower per_device_train_batch_size or cutoff_len");
        int N = (int) n;

        int nm = Projection.values().length;
        if (method instanceof Method.Lora(LoraConfig lc)) {
            oft = null;
            boolean dora = lc.useDora();
            if (dora && frozen) throw new UnsupportedModelException("DoRA over a quantized (4-bit or GGUF) base is not supported; set use_dora: false, or drop quantization_bit / use a float model");
            boolean pissa = lc.initLoraWeights() == LoraConfig.Init.PISSA;
            if (pissa && frozen)
                throw new ConfigException("PiSSA rewrites the base weights into W - s·B·A, which a quantized (4-bit or GGUF) base cannot hold; drop pissa_init or quantization_bit");
            lora = new LoraWeights[L][nm];
            float[][][] dA = new float[L][nm][], dB = new float[L][nm][], dMag = new float[L][nm][];
            LoraInit.Created created = LoraInit.create(lc, weights, seed);
            if (pissa) pissaInit = new LoraWeights[L][nm];
            Map<PeftAdapter.Target, LoraWeights> tensors = created.tensors();
            for (var e : tensors.entrySet()) {
                int l = e.getKey().layer();
                Projection m = Projection.of(e.getKey().module());
                LoraWeights lw = e.getValue();
                int i = m.ordinal();
                lora[l][i] = lw;
                if (pissa) pissaInit[l][i] = created.pissaInit().get(e.getKey());
                dA[l][i] = new float[lw.a().length];
                dB[l][i] = new float[lw.b().length];
                String base = "base_model.model.model.layers." + l + "." + m.path();
                params.add(new Param(base + ".lora_A.weight", new long[]{lw.r(), lw.in()}, lw.a(), dA[l][i]));
                params.add(new Param(base + ".lora_B.weight", new long[]{lw.out(), lw.r()}, lw.b(), dB[l][i]));
                if (lw.magnitude() != null) {
                    dMag[l][i] = new float[lw.out()];
                    params.add(new Param(base + ".lora_magnitude_vector", new long[]{lw.out()}, lw.magnitude(), dMag[l][i]));
                }
            }
            adapter = LoadedAdapter.of("training", "the adapter being trained", new PeftAdapter(lc, null, null, tensors), c);
            rowAdapters = new LoadedAdapter[B];
            Arrays.fill(rowAdapters, adapter);
            grads = new Decoder.Grads(gradOf, adapter, dA, dB, dMag);
        } else if (method instanceof Method.Ia3(Ia3Config ic)) {
            oft = null;
            // PEFT IA3Layer.update_layer: (out, 1), or (1, in) on a feed-forward module; reset_ia3_parameters: ones
            lora = null;
            float[][][] dIa3 = new float[L][nm][];
            Map<PeftAdapter.Target, float[]> vectors = new java.util.TreeMap<>();
            java.util.SplittableRandom rnd = new java.util.SplittableRandom(seed);
            for (int l = 0; l < L; l++)
                for (Projection m : Projection.values()) {
                    if (!ic.targets(m.module)) continue;
                    boolean ff = ic.feedforward(m.module);
                    float[] v = new float[ff ? m.in(c) : m.out(c)];
                    if (ic.initIa3Weights()) Arrays.fill(v, 1f);
                    else for (int j = 0; j < v.length; j++) v[j] = (float) gaussian(rnd);   // torch.randn
                    PeftAdapter.Target t = new PeftAdapter.Target(l, m.module);
                    vectors.put(t, v);
                    dIa3[l][m.ordinal()] = new float[v.length];
                    params.add(new Param(t.key(Ia3Adapter.SUFFIX), ff ? new long[]{1, v.length} : new long[]{v.length, 1}, v, dIa3[l][m.ordinal()]));
                }
            if (params.isEmpty()) throw new ConfigException("IA3 target_modules " + ic.targetModules() + " select no linear layer");
            adapter = LoadedAdapter.of("training", "the adapter being trained", new Ia3Adapter(ic, null, null, vectors), c);
            rowAdapters = new LoadedAdapter[B];
            Arrays.fill(rowAdapters, adapter);
            grads = new Decoder.Grads(gradOf, adapter, null, null, null, dIa3, null);
        } else if (method instanceof Method.Prompt pm) {
            oft = null;
            // PEFT PromptEmbedding: nn.Embedding(n, token_dim), N(0, 1) (RANDOM), or the word embeddings of the init
            // text's ids repeated or cut to n (TEXT)
            lora = null;
            int nv = pm.numVirtualTokens(), C = c.hiddenSize();
            float[] emb = new float[nv * C], dPrompt = new float[nv * C];
            if (pm.init().equals("TEXT")) {
                if (pm.textIds() == null) throw new ConfigException("prompt_tuning_init TEXT needs the init text's token ids");
                int[] ids = org.peft4j.model.adapter.prompt.PromptAdapter.textInitIds(pm.textIds(), nv);
                for (int i = 0; i < nv; i++) System.arraycopy(weights.embedTokens, ids[i] * C, emb, i * C, C);
            } else {
                java.util.SplittableRandom rnd = new java.util.SplittableRandom(seed);
                for (int j = 0; j < emb.length; j++) emb[j] = (float) gaussian(rnd);
            }
            params.add(new Param(org.peft4j.model.adapter.prompt.PromptAdapter.TENSOR, new long[]{nv, C}, emb, dPrompt));
            adapter = LoadedAdapter.of("training", "the adapter being trained",
                    new org.peft4j.model.adapter.prompt.PromptAdapter(nv, C, pm.init(), pm.initText(), null, null, emb), c);
            rowAdapters = new LoadedAdapter[B];
            Arrays.fill(rowAdapters, adapter);
            grads = new Decoder.Grads(gradOf, adapter, null, null, null, null, dPrompt);
        } else if (method instanceof Method.PTuning(var pc)) {
            oft = null;
            lora = null;
            int C = c.hiddenSize();
            // PEFT PromptEncoder: torch's module inits; its tensors are what trains, the output is the adapter
            encoder = new org.peft4j.model.adapter.ptuning.PromptEncoder(pc, C, new java.util.SplittableRandom(seed));
            for (var t : encoder.tensors()) params.add(new Param("prompt_encoder." + t.name(), t.shape(), t.data(), t.grad()));
            dVirtual = new float[pc.numVirtualTokens() * C];
            adapter = LoadedAdapter.of("training", "the adapter being trained",
                    new org.peft4j.model.adapter.prompt.PromptAdapter(pc.numVirtualTokens(), C, "RANDOM", null, null, null, encoder.forward()), c);
            rowAdapters = new LoadedAdapter[B];
            Arrays.fill(rowAdapters, adapter);
            grads = new Decoder.Grads(gradOf, adapter, null, null, null, null, dVirtual);
        } else if (method instanceof Method.Prefix pf) {
            oft = null;
            lora = null;
            int nv = pf.numVirtualTokens(), D = c.kvDim(), W = org.peft4j.model.adapter.prefix.PrefixAdapter.width(L, D), E = pf.encoderHidden(c);
            float[] prefix = new float[nv * W], dPrefix = new float[nv * W];
            java.util.SplittableRandom rnd = new java.util.SplittableRandom(seed);
            var shapes = pf.tensors(c);
            if (pf.prefixProjection()) {
                // PEFT PrefixEncoder while training: Embedding(n, D) ~ N(0, 1), then Linear(D, E), Tanh, Linear(E, W) with
                // torch's nn.Linear init, weight and bias ~ U(±1/√fan_in)
                float[] e = new float[nv * D], w1 = new float[E * D], b1 = new float[E], w2 = new float[W * E], b2 = new float[W];
                for (int j = 0; j < e.length; j++) e[j] = (float) gaussian(rnd);
                for (float[] a : new float[][]{w1, b1}) for (int j = 0; j < a.length; j++) a[j] = (float) rnd.nextDouble(-1, 1) / (float) Math.sqrt(D);
                for (float[] a : new float[][]{w2, b2}) for (int j = 0; j < a.length; j++) a[j] = (float) rnd.nextDouble(-1, 1) / (float) Math.sqrt(E);
                prefixMlp = new PrefixMlp(e, w1, b1, w2, b2, new float[e.length], new float[w1.length], new float[E], new float[w2.length], new float[W],
                        new float[nv * E], new float[nv * E], prefix, dPrefix, nv, D, E, W);
                float[][] values = {e, w1, b1, w2, b2}, gs = {prefixMlp.de(), prefixMlp.dw1(), prefixMlp.db1(), prefixMlp.dw2(), prefixMlp.db2()};
                for (int i = 0; i < values.length; i++) params.add(new Param(shapes.get(i).getKey(), shapes.get(i).getValue(), values[i], gs[i]));
            } else {
                for (int j = 0; j < prefix.length; j++) prefix[j] = (float) gaussian(rnd);   // nn.Embedding(n, L·2·D) ~ N(0, 1)
                params.add(new Param(shapes.get(0).getKey(), shapes.get(0).getValue(), prefix, dPrefix));
            }
            adapter = LoadedAdapter.of("training", "the adapter being trained", new org.peft4j.model.adapter.prefix.PrefixAdapter(nv, L,
                    c.numKeyValueHeads(), D, E, pf.prefixProjection(), null, prefix), c);
            rowAdapters = new LoadedAdapter[B];
            Arrays.fill(rowAdapters, adapter);
            grads = new Decoder.Grads(gradOf, adapter, null, null, null, null, dPrefix);
        } else if (method instanceof Method.Oft(OftConfig oc)) {
            lora = null; adapter = null; rowAdapters = null;
            oft = new ArrayList<>();
            for (int l = 0; l < L; l++) {
                LlamaWeights.Layer lw = weights.layers.get(l);
                for (Projection m : Projection.values()) {
                    if (!oc.targets(m.module)) continue;
                    int K = m.in(c), M = m.out(c);
                    int[] nb = oc.blocks(K);
                    float[] w = m.weight(lw);
                    OftModule om = new OftModule(l, m.module, w, w.clone(), new float[nb[0] * OftRotation.elements(nb[1])],
                            new float[nb[0] * OftRotation.elements(nb[1])], new float[nb[0] * nb[1] * nb[1]], new float[w.length], M, K, nb[0], nb[1]);
                    oft.add(om);
                    gradOf.put(w, om.dW);
                    params.add(new Param("base_model.model.model.layers." + l + "." + m.path() + ".oft_R.weight",
                            new long[]{nb[0], OftRotation.elements(nb[1])}, om.theta, om.dTheta));
                    oftMaxB = Math.max(oftMaxB, nb[1]);
                }
            }
            if (oft.isEmpty()) throw new ConfigException("oft_target " + oc.targetModules() + " matches no linear layer; use names among " + Projection.MODULE_NAMES + " or all");
            int t = oc.numNeumannTerms(), bb = oftMaxB * oftMaxB;
            oftPw = new double[Math.max(t, 2) * bb]; oftDr = new double[bb]; oftDq = new double[bb]; oftTmp = new double[bb];
            oftTerms = t;
            grads = new Decoder.Grads(gradOf, null, null, null, null);
        } else {
            oft = null;
            lora = null; adapter = null; rowAdapters = null;
            boolean full = method instanceof Method.Full;
            if (full) {
                addParam(LlamaWeights.EMBED_TOKENS, new long[]{V, c.hiddenSize()}, weights.embedTokens);
                if (!c.tieWordEmbeddings()) addParam(LlamaWeights.LM_HEAD, new long[]{V, c.hiddenSize()}, weights.lmHead);
                addParam(LlamaWeights.NORM, new long[]{c.hiddenSize()}, weights.norm);
            }
            for (int l = 0; l < L; l++) {
                LlamaWeights.Layer lw = weights.layers.get(l);
                for (LayerTensor t : LayerTensor.values()) {
                    if (!t.present(c)) continue;
                    boolean train = full || (method instanceof Method.Freeze fz && fz.trains(l, L)
                            && fz.trainsModule(t.suffix.substring(0, t.suffix.indexOf('.'))));
                    if (train) addParam(t.name(l), t.shape(c), lw.get(t));
                }
            }
            if (params.isEmpty()) throw new ConfigException("the freeze settings select no trainable parameter; check freeze_trainable_layers and freeze_trainable_modules");
            grads = new Decoder.Grads(gradOf, null, null, null, null);
        }
        nVirtual = method.virtualTokens();
        if (Tmax + nVirtual > c.maxPositionEmbeddings())
            throw new ConfigException(nVirtual + " virtual tokens + a sequence of " + Tmax + " tokens exceed the model's max_position_embeddings "
                    + c.maxPositionEmbeddings() + "; lower cutoff_len or num_virtual_tokens");
        if ((long) B * (Tmax + nVirtual) * V > Integer.MAX_VALUE)
            throw new ConfigException("batch " + B + " x sequence " + (Tmax + nVirtual) + " is too large for this model's logits; lower per_device_train_batch_size or cutoff_len");
        N = B * (Tmax + nVirtual);
        extTokens = new int[nVirtual > 0 ? N : 0];
        extTargets = new int[nVirtual > 0 ? N : 0];
        decoder = frozen ? frozenBase : Decoder.of(weights, gemm);
        acts = decoder.newActivations(plan(c, method, B, Tmax + nVirtual, checkpointing));
        logits = new float[N * V];
        lse = new double[N];
    }

    private static double gaussian(java.util.SplittableRandom r) {
        double u1 = r.nextDouble(), u2 = r.nextDouble();
        return Math.sqrt(-2 * Math.log(1 - u1)) * Math.cos(2 * Math.PI * u2);
    }

    /// The activation plan of a training model: (B, Tmax, checkpointing) with the adapter scratch its method needs.
    /// [org.peft4j.train.estimate.MemoryEstimate] reads the same plan.
    public static Activations.Plan plan(LlamaConfig c, Method method, int B, int Tmax, boolean checkpointing) {
        Activations.Plan p = Activations.Plan.training(B, Tmax, checkpointing);
        if (!(method instanceof Method.Lora(LoraConfig lc))) return p;
        int r = 0, doraOut = 0, dropIn = 0;
        for (int l = 0; l < c.numHiddenLayers(); l++) {
            if (!lc.transformsLayer(l)) continue;
            for (Projection m : Projection.values()) {
                if (!lc.targets(m.module)) continue;
                r = Math.max(r, lc.rank(m.module));
                if (lc.useDora()) doraOut = Math.max(doraOut, m.out(c));
                if (lc.loraDropout() > 0) dropIn = Math.max(dropIn, m.in(c));
            }
        }
        return p.withAdapters(r, doraOut, dropIn);
    }

    /// Bytes of the loss op's buffers for (B, T): logits (N, V) and the log-sum-exp (N) in double.
    public static long lossBytes(LlamaConfig c, int B, int T) {
        long N = (long) B * T;
        return 4 * N * c.vocabSize() + 8 * N;
    }

    private void addParam(String name, long[] shape, float[] data) {
        float[] g = gradOf.computeIfAbsent(data, d -> new float[d.length]);
        params.add(new Param(name, shape, data, g));
    }

    /// The trainable tensors with their gradients, in a fixed order (optimizer state and checkpoints follow it).
    public List<Param> params() { return params; }

    /// The decoder this model trains through (the same forward inference uses).
    public Decoder decoder() { return decoder; }

    /// The adapter being trained, as a value over the arrays the optimizer updates (null unless LoRA or (IA)³).
    public LoadedAdapter trainedAdapter() { return adapter; }

    /// The adapter of (layer, module), or null; LoRA only.
    public LoraWeights adapter(int layer, Projection m) { return lora == null ? null : lora[layer][m.ordinal()]; }

    /// PiSSA's initial factors A0, B0 of (layer, module), or null (not PiSSA, or no adapter there): with them
    /// [org.peft4j.model.adapter.lora.Pissa#convert] turns the trained adapter into a plain LoRA over the original base.
    public LoraWeights pissaInit(int layer, Projection m) { return pissaInit == null ? null : pissaInit[layer][m.ordinal()]; }

    public void setNeftuneAlpha(float alpha) { this.neftuneAlpha = alpha; }

    private boolean shiftAttn;

    /// LongLoRA's S²-Attn in training forwards (`training` true), full attention in evaluation ones (LongLoRA and
    /// LLaMA-Factory patch `self.training` only); a training batch's T must then be a multiple of
    /// [org.peft4j.model.layers.ShiftedAttention#MULTIPLE] ([#shiftAttnLength] pads to it).
    public void setShiftAttn(boolean on) {
        if (on && nVirtual > 0)
            throw new ConfigException("shift_attn does not combine with prompt tuning (the virtual tokens would sit in the first group only); drop one of them");
        shiftAttn = on;
    }

    public boolean shiftAttn() { return shiftAttn; }

    /// The length a batch of `T` tokens trains at with S²-Attn: T rounded up to a multiple of
    /// [org.peft4j.model.layers.ShiftedAttention#MULTIPLE] (the rest padding), or T without it.
    public static int shiftAttnLength(int T, boolean shiftAttn) {
        int m = org.peft4j.model.layers.ShiftedAttention.MULTIPLE;
        return shiftAttn ? (T + m - 1) / m * m : T;
    }

    // LLaMA-Factory's token-weighted SFT losses (use_dft_loss, use_eaft_loss): null for plain cross-entropy
    private org.peft4j.model.layers.TokenWeightedLoss.Config tokenWeights;
    private float[] tokenW, tokenLosses, tokenScales, topScratch;   // (N), (N), (N), min(20, V)

    /// Makes [#forward]/[#backward] compute DFT's or EAFT's weighted cross-entropy instead of the plain one (the
    /// weights detached, as LLaMA-Factory's `dft_loss_func`/`eaft_loss_func`); null restores cross-entropy.
    public void setTokenWeights(org.peft4j.model.layers.TokenWeightedLoss.Config cfg) {
        tokenWeights = cfg;
        if (cfg != null && tokenW == null) {
            int N = lse.length;
            tokenW = new float[N]; tokenLosses = new float[N]; tokenScales = new float[N];
            topScratch = org.peft4j.model.layers.TokenWeightedLoss.scratch(V);
        }
    }

    // LLaMA-Factory's ASFT loss (use_asft_loss): the KL weight (NaN: off), the reference's logits, then log-softmax, at
    // the labelled positions of the micro-batch (M ≤ B·Tmax, V), and the per-row KL (N)
    private double asftAlpha = Double.NaN;
    private float[] refLogq, asftKl;

    /// Makes [#forward]/[#backward] compute ASFT ([org.peft4j.model.layers.AsftLoss]) with KL weight `alpha` against
    /// the reference model (the one given to [#useReference], else the base with the adapter off): [#forward] returns
    /// Σ wₙ·ℓₙ + α·Σ KLₙ over the labelled tokens, which divided by their count is LLaMA-Factory's `asft_loss_func`.
    public void setAsft(double alpha) {
        if (!(alpha >= 0) || !Double.isFinite(alpha)) throw new ConfigException("asft_alpha must be a finite number >= 0, got " + alpha);
        if (nVirtual > 0)
            throw new ConfigException("use_asft_loss compares against a reference model without virtual tokens; it does not combine with finetuning_type prompt or ptuning");
        asftAlpha = alpha;
        setTokenWeights(null);
        int N = lse.length;
        if (tokenW == null) { tokenW = new float[N]; tokenLosses = new float[N]; tokenScales = new float[N]; }
        asftKl = new float[N];
    }

    /// Whether [#setAsft] is on: the trainer then normalises each micro-batch by its own labelled tokens.
    public boolean asft() { return !Double.isNaN(asftAlpha); }

    /// Benchmarks: measure the wall time of attention (forward and backward) and of the loss, from zero.
    public void startTiming() { timing = true; lossNanos = 0; decoder.startTiming(); }

    /// Nanoseconds spent in attention and in the loss since [#startTiming]: {attention, loss}.
    public long[] timings() { return new long[] {decoder.attentionNanos(), lossNanos}; }

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
        if (nVirtual > 0) {   // prompt tuning: the batch runs as (rows, n + T) with its virtual tokens first
            extend(tokens, targets, rows, T);
            tokens = extTokens; targets = targets == null ? null : extTargets; T += nVirtual;
        }
        if (asft() && targets != null) return forwardAsft(tokens, targets, rows, T, training, step);
        forwardLogits(tokens, rows, T, training, step);
        if (targets == null) return 0;
        if (targets.length < Bc * T) throw new ConfigException("targets hold " + targets.length + " ids, need B·T = " + Bc * T);
        long t0 = timing ? System.nanoTime() : 0;
        double loss = tokenWeights != null
                ? org.peft4j.model.layers.TokenWeightedLoss.forward(tokenWeights, tokenW, tokenLosses, lse, logits, targets, Bc * T, V, topScratch, false)
                : CrossEntropy.forward(null, lse, logits, targets, Bc * T, V);
        if (timing) lossNanos += System.nanoTime() - t0;
        return loss;
    }

    /// ASFT's forward: the reference pass first (no dropout, no NEFTune, no kept activations; final norm and lm_head on
    /// the labelled positions only, as LLaMA-Factory's KL mask reads no other), then the policy's logits and the loss.
    private double forwardAsft(int[] tokens, int[] targets, int rows, int T, boolean training, long step) {
        if (!hasReference())
            throw new ConfigException("use_asft_loss needs a reference model: full and freeze tuning read a frozen copy of the initial model; "
                    + "for LoRA set ref_model");
        if (rows < 1 || rows > B) throw new ConfigException("batch of " + rows + " rows outside [1, " + B + "]");
        this.Bc = rows;
        checkBatch(tokens, T);
        if (targets.length < Bc * T) throw new ConfigException("targets hold " + targets.length + " ids, need B·T = " + Bc * T);
        if (scoreHidden == null) {
            scoreHidden = new float[B * Tmax * config.hiddenSize()];
            scorePositions = new int[B * Tmax]; scoreTargets = new int[B * Tmax]; scoreRowOf = new int[B * Tmax];
        }
        if (refLogq == null) refLogq = new float[B * Tmax * V];
        Decoder dec = refDecoder != null ? refDecoder : decoder;
        Activations a;
        if (refDecoder != null) {
            if (refActs == null) refActs = refDecoder.newActivations(scorePlan(refAdapters == null ? null : refAdapters[0]));
            a = refActs;
        } else a = scoreActs();
        dec.forward(a, tokens, rows, T, null, null, refDecoder != null ? refAdapters : null, null, null);
        int M = 0;
        for (int n = 0; n < rows * T; n++) if (targets[n] != CrossEntropy.IGNORE) scorePositions[M++] = n;
        if (M > 0) dec.logitsAt(refLogq, scoreHidden, a, scorePositions, M);
        forwardLogits(tokens, rows, T, training, step);
        long t0 = timing ? System.nanoTime() : 0;
        double[] s = org.peft4j.model.layers.AsftLoss.forward(tokenW, tokenLosses, lse, asftKl, logits, targets, refLogq, Bc * T, V, false);
        if (timing) lossNanos += System.nanoTime() - t0;
        return s[0] + asftAlpha * s[1];
    }

    /// The model part of a step without a loss: logits (rows, T, V) of every position, returned in [#logits()], for a
    /// loss op other than cross-entropy (its gradient then goes to [#backwardLogits]).
    public float[] forwardLogits(int[] tokens, int rows, int T, boolean training, long step) {
        forwardBlocks(tokens, rows, T, training, step);
        decoder.logits(logits, acts, true);
        return logits;
    }

    /// The training forward through the blocks, keeping what backward needs.
    private void forwardBlocks(int[] tokens, int rows, int T, boolean training, long step) {
        if (rows < 1 || rows > B) throw new ConfigException("batch of " + rows + " rows outside [1, " + B + "]");
        this.Bc = rows;
        checkBatch(tokens, T);
        if (adapter != null && adapter.dora() && !doraNormsHeld) adapter.refreshDoraNorms(weights);
        refreshOft();
        refreshPrefix();
        if (encoder != null) encoder.forward();   // P-tuning: the virtual tokens from the current encoder weights
        lastTraining = training;
        decoder.forward(acts, tokens, Bc, T, null, null, rowAdapters, null, training ? noise(step) : null);
    }

    /// The model part of a reward model's step: the final-normed hidden states (rows, T, C) of every position (what
    /// TRL's value head reads), valid until the next forward. The gradient w.r.t. them goes to [#backwardNormed].
    public float[] forwardNormed(int[] tokens, int rows, int T, boolean training, long step) {
        forwardBlocks(tokens, rows, T, training, step);
        return decoder.finalNorm(acts);
    }

    /// Backward of the last [#forwardNormed] from dLoss/d(normed hidden states) (rows, T, C), adding into the
    /// parameter gradients.
    public void backwardNormed(int[] tokens, float[] dnormed, long step) {
        decoder.backwardNormed(acts, tokens, dnormed, grads, lastTraining ? noise(step) : null);
        foldOft();
        foldEncoder();
        foldPrefix();
    }

    /// Adds a trainable tensor outside the decoder (a reward model's value head): the optimizer, gradient clipping and
    /// checkpoints treat it as any other parameter. Call before the optimizer is built.
    public void addHeadParam(Param p) {
        for (Param q : params) if (q.name().equals(p.name())) throw new IllegalStateException("parameter " + p.name() + " exists already");
        params.add(p);
    }

    /// Takes a tensor out of training (no optimizer state, no update, no weight decay) while the weights keep it: a
    /// reward model's lm_head, which its value head replaces (torch skips parameters whose gradient stays None).
    /// Call before the optimizer is built.
    public void freezeParam(String name) {
        params.removeIf(p -> p.name().equals(name));
    }

    /// Backward of the last `forward` (same tokens, targets and T), adding into the parameter gradients.
    /// lossScale = dLoss/d(sum of token losses): 1 / (target tokens in the whole accumulated batch); with ASFT the sum
    /// is [#forward]'s and the scale 1 / (target tokens of this micro-batch).
    public void backward(int[] tokens, int[] targets, int T, float lossScale, long step) {
        if (nVirtual > 0) {
            extend(tokens, targets, Bc, T);
            tokens = extTokens; targets = extTargets; T += nVirtual;
        }
        int N = Bc * T;
        long t0 = timing ? System.nanoTime() : 0;
        if (asft())
            org.peft4j.model.layers.AsftLoss.backward(logits, logits, lse, targets, tokenW, refLogq, tokenScales, N, V, asftAlpha, lossScale, false);
        else if (tokenWeights != null)
            org.peft4j.model.layers.TokenWeightedLoss.backward(logits, logits, lse, targets, tokenW, tokenScales, N, V, lossScale, false);
        else CrossEntropy.backward(logits, logits, lse, targets, N, V, lossScale);   // logits now hold dlogits
        if (timing) lossNanos += System.nanoTime() - t0;
        backwardLogits(tokens, logits, step);
    }

    /// Backward of the last [#forwardLogits] from a loss op's gradient w.r.t. its logits, (rows, T, V).
    public void backwardLogits(int[] tokens, float[] dlogits, long step) {
        // the same noise as the forward (checkpointing recomputes blocks with it): none after a forward without training
        decoder.backward(acts, tokens, dlogits, grads, lastTraining ? noise(step) : null);
        foldOft();
        foldEncoder();
        foldPrefix();
    }

    /// Prefix tuning with prefix_projection: the prefix the trained adapter holds, recomputed from the MLP's current
    /// parameters (before every forward, and before saving it); a no-op otherwise.
    public void refreshPrefix() {
        PrefixMlp m = prefixMlp;
        if (m == null) return;
        org.peft4j.model.adapter.prefix.PrefixEncoder.forward(decoder.gemm(), m.prefix(), m.h(), m.e(), m.w1(), m.b1(), m.w2(), m.b2(), m.n(), m.D(), m.E(), m.W());
    }

    /// [#refreshPrefix] mirrored after a backward: the decoder's gradient of the prefix through the MLP into its
    /// parameters' gradients, then cleared for the next micro-batch.
    private void foldPrefix() {
        PrefixMlp m = prefixMlp;
        if (m == null) return;
        org.peft4j.model.adapter.prefix.PrefixEncoder.backward(decoder.gemm(), m.de(), m.dw1(), m.db1(), m.dw2(), m.db2(), m.dh(), m.dPrefix(),
                m.h(), m.e(), m.w1(), m.w2(), m.n(), m.D(), m.E(), m.W());
        Arrays.fill(m.dPrefix(), 0f);
    }

    /// P-tuning: the decoder's gradient w.r.t. the virtual tokens' embeddings (of the last backward) through the
    /// prompt encoder into its weights (added), then cleared; a no-op otherwise.
    private void foldEncoder() {
        if (encoder == null) return;
        encoder.backward(dVirtual);
        Arrays.fill(dVirtual, 0f);
    }

    /// P-tuning: the virtual tokens' embeddings (n, C) from the encoder's current weights (what PEFT saves as
    /// `prompt_embeddings`); recomputes the encoder's forward, so call it between steps, not between a forward and
    /// its backward. Null unless P-tuning.
    public float[] ptuningEmbeddings() { return encoder == null ? null : encoder.forward().clone(); }

    /// OFT: W' = W0·R_bdᵀ into each targeted weight from the current parameters (PEFT `Linear.merge`); a no-op otherwise.
    void refreshOft() {
        if (oft == null) return;
        for (OftModule m : oft) {
            OftRotation.rotations(m.rot, m.theta, m.nBlocks, m.b, oftTerms, oftPw);
            OftRotation.merge(m.w, m.w0, m.rot, m.M, m.K, m.b);
        }
    }

    /// OFT: turns the decoder's dL/dW' of the last backward into dL/dtheta (added) and clears dL/dW'.
    private void foldOft() {
        if (oft == null) return;
        for (OftModule m : oft) {
            OftRotation.backward(m.dTheta, m.dW, m.w0, m.theta, m.M, m.K, m.b, oftTerms, oftPw, oftDr, oftDq, oftTmp);
            Arrays.fill(m.dW, 0f);
        }
    }

    /// OFT: the frozen base weight of a targeted linear (layer order, then Projection order) and its trained
    /// parameter, in [#params] order; null unless OFT.
    public List<OftModule> oftModules() { return oft; }

    // Preference tuning: the scoring passes' activations (planned without backward, one set per decoder), the KV
    // cache of the paired reference pass, and the per-position scales of the sequence-level gradient, all allocated at
    // the first preference step.
    private Activations scoreActs, refActs;
    private KvCache pairCache;            // (B slots, Tmax): each pair's shared prefix, then its two continuations
    private int[] pairTokens, pairSlots, pairPos0;   // (B·Tmax), (B), (B) the paired pass's forward inputs
    private float[] rowScales;            // (N)
    private float[] scoreHidden;          // (N, C) the labelled positions' hidden states
    private int[] scorePositions, scoreTargets, scoreRowOf;   // (N) labelled positions, their targets and rows
    // The reference model when it is not this model's base with the adapter off: a frozen decoder (full/freeze
    // tuning's copy of the initial weights, or ref_model) and the adapter applied on it (ref_model_adapters), or null.
    private Decoder refDecoder;
    private LoadedAdapter[] refAdapters;

    /// Makes `reference` (with `adapter` on every row, or null) the reference model of preference tuning: a frozen copy
    /// of the initial weights for full and freeze tuning, or LLaMA-Factory's `ref_model`. Without one, the reference
    /// of a LoRA model is its base with the adapter off.
    public void useReference(Decoder reference, LoadedAdapter adapter) {
        if (reference.config.vocabSize() != config.vocabSize())
            throw new ConfigException("ref_model has a vocabulary of " + reference.config.vocabSize() + " tokens, the model "
                    + config.vocabSize() + "; the reference must share the tokenizer");
        refDecoder = reference;
        refActs = null;
        if (adapter == null) { refAdapters = null; return; }
        refAdapters = new LoadedAdapter[B];
        Arrays.fill(refAdapters, adapter);
    }

    /// Whether a reference model exists: a LoRA model's base, or one given to [#useReference].
    public boolean hasReference() { return adapter != null || refDecoder != null; }

    /// Preference tuning's reference pass: per-row log-probability sums of `targets` (and labelled counts) under the
    /// reference model: the one given to [#useReference], else the base with no adapter on any row (PEFT's
    /// `disable_adapter()`, as LLaMA-Factory uses for a LoRA policy without `ref_model`). No dropout, no NEFTune, no
    /// kept activations. Uses the logits buffer, so run it before the policy's [#forwardLogits].
    public void referenceLogps(double[] logps, int[] counts, int[] tokens, int[] targets, int rows, int T) {
        reference(logps, counts, tokens, targets, rows, T, false);
    }

    /// [#referenceLogps] of DPO's paired rows: rows u and U + u (U = rows / 2) are one prompt's chosen and rejected
    /// answers. The tokens both rows of each pair begin with (the prompt, and any common start of the answers) run
    /// once, into a KV cache that both continuations then attend to, saving about a quarter of the pass when prompt and
    /// answers are equally long; rows that share fewer than [#MIN_SHARED_PREFIX] tokens run as [#referenceLogps] does.
    /// Equal to it up to float rounding (the same products over other row blocks).
    public void referencePairLogps(double[] logps, int[] counts, int[] tokens, int[] targets, int rows, int T) {
        reference(logps, counts, tokens, targets, rows, T, true);
    }

    /// The shortest shared prefix worth a separate forward in [#referencePairLogps].
    static final int MIN_SHARED_PREFIX = 8;

    private void reference(double[] logps, int[] counts, int[] tokens, int[] targets, int rows, int T, boolean paired) {
        if (!hasReference())
            throw new ConfigException("a reference model for " + (method instanceof Method.Full ? "full" : method instanceof Method.Oft ? "OFT" : "freeze") + " tuning needs a frozen copy of the weights (ref_model); "
                    + "use finetuning_type lora, or pref_loss orpo/simpo (no reference)");
        if (refDecoder != null) {
            if (refActs == null) refActs = refDecoder.newActivations(scorePlan(refAdapters == null ? null : refAdapters[0]));
            score(refDecoder, refActs, refAdapters, logps, counts, tokens, targets, rows, T, paired);
        } else score(decoder, scoreActs(), null, logps, counts, tokens, targets, rows, T, paired);
    }

    /// The policy's per-row log-probability sums of `targets` without a backward (KTO's KL sequences, which TRL scores
    /// under `torch.no_grad()`): the model as it is now, adapter on, no dropout or NEFTune, no kept activations. Uses
    /// the logits buffer, so run it before [#forwardLogits].
    public void policyLogps(double[] logps, int[] counts, int[] tokens, int[] targets, int rows, int T) {
        if (adapter != null && adapter.dora() && !doraNormsHeld) adapter.refreshDoraNorms(weights);
        refreshOft();
        score(decoder, scoreActs(), rowAdapters, logps, counts, tokens, targets, rows, T, false);
    }

    private Activations scoreActs() {
        if (scoreActs == null) scoreActs = decoder.newActivations(scorePlan(adapter));
        return scoreActs;
    }

    /// A scoring pass's plan: (B, Tmax) without backward or cache, with scratch for `a` (null: none).
    private Activations.Plan scorePlan(LoadedAdapter a) {
        return a == null ? scorePlan(B, Tmax, 0, 0) : scorePlan(B, Tmax, a.maxRank(), a.dora() ? a.maxOut() : 0);
    }

    /// The plan of a preference stage's scoring pass (reference or no-grad policy): (B, Tmax) without backward, able
    /// to continue a KV cache of Tmax positions (the paired reference pass), with adapter scratch for ranks up to
    /// `maxRank` and DoRA modules up to `maxDoraOut` wide. [org.peft4j.train.estimate.MemoryEstimate] reads the same plan.
    public static Activations.Plan scorePlan(int B, int Tmax, int maxRank, int maxDoraOut) {
        return Activations.Plan.inference(B, Tmax, Tmax).withAdapters(maxRank, maxDoraOut, 0);
    }

    /// Bytes the preference stages (and ASFT) allocated so far beyond [#activationBytes]: the scoring passes' activations
    /// (of this model's decoder and of a reference decoder), the labelled positions' hidden states and indices, the
    /// sequence-level gradient's per-position scales and ASFT's reference logits. 0 before the first such step.
    public long scoringBytes() {
        long b = 0;
        if (scoreActs != null) b += scoreActs.bytes();
        if (refActs != null) b += refActs.bytes();
        if (scoreHidden != null) b += 4L * scoreHidden.length + 4L * (scorePositions.length + scoreTargets.length + scoreRowOf.length);
        if (rowScales != null) b += 4L * rowScales.length;
        if (refLogq != null) b += 4L * refLogq.length;
        if (pairCache != null) b += pairCache.bytes() + 4L * (pairTokens.length + pairSlots.length + pairPos0.length);
        return b;
    }

    private void score(Decoder dec, Activations a, LoadedAdapter[] adapters, double[] logps, int[] counts, int[] tokens,
                       int[] targets, int rows, int T, boolean paired) {
        if (rows < 1 || rows > B) throw new ConfigException("batch of " + rows + " rows outside [1, " + B + "]");
        this.Bc = rows;
        checkBatch(tokens, T);
        if (scoreHidden == null) {
            scoreHidden = new float[B * Tmax * config.hiddenSize()];
            scorePositions = new int[B * Tmax]; scoreTargets = new int[B * Tmax]; scoreRowOf = new int[B * Tmax];
        }
        if (paired && pairCache == null) {    // at the first paired pass, whether or not its rows share a prefix
            pairCache = new KvCache(dec.config, B, Tmax);
            pairTokens = new int[B * Tmax]; pairSlots = new int[B]; pairPos0 = new int[B];
        }
        int S = paired ? sharedPrefix(tokens, rows, T) : 0;
        if (S >= MIN_SHARED_PREFIX) {
            scorePairs(dec, a, adapters, logps, counts, tokens, targets, rows, T, S);
            return;
        }
        dec.forward(a, tokens, rows, T, null, null, adapters, null, null);
        // only the answers' positions need logits: the prompt's final norm, lm_head and softmax are skipped
        int M = 0;
        for (int n = 0; n < rows * T; n++)
            if (targets[n] != CrossEntropy.IGNORE) { scorePositions[M] = n; scoreTargets[M] = targets[n]; scoreRowOf[M] = n / T; M++; }
        dec.logitsAt(logits, scoreHidden, a, scorePositions, M);
        SequenceLogps.forwardPacked(logps, counts, lse, logits, scoreTargets, scoreRowOf, M, rows, V);
    }

    /// The number of leading tokens that rows u and U + u share for every u (U = rows / 2), at most T − 1 so that each
    /// row keeps a token of its own; 0 for an odd number of rows.
    static int sharedPrefix(int[] tokens, int rows, int T) {
        if (rows < 2 || rows % 2 != 0) return 0;
        int U = rows / 2, S = T - 1;
        for (int u = 0; u < U && S > 0; u++) {
            int c = u * T, r = (U + u) * T, n = 0;
            while (n < S && tokens[c + n] == tokens[r + n]) n++;
            S = n;
        }
        return S;
    }

    /// [#score] of pairs sharing their first S tokens: the U prefixes run once into cache slots 0..U-1, slot u is copied
    /// to slot U + u, and the 2U continuations of T − S tokens run over the cache from position S. A labelled position
    /// inside the prefix reads the prefix's hidden state (the same for both rows of its pair).
    private void scorePairs(Decoder dec, Activations a, LoadedAdapter[] adapters, double[] logps, int[] counts, int[] tokens,
                            int[] targets, int rows, int T, int S) {
        int U = rows / 2, Tc = T - S;
        for (int u = 0; u < U; u++) {
            System.arraycopy(tokens, u * T, pairTokens, u * S, S);
            pairSlots[u] = u; pairPos0[u] = 0;
        }
        dec.forward(a, pairTokens, U, S, pairSlots, pairPos0, adapters, pairCache, null);
        int M = 0;
        for (int b = 0; b < rows; b++)
            for (int n = 0; n < S; n++) {
                int t = targets[b * T + n];
                if (t != CrossEntropy.IGNORE) { scorePositions[M] = (b % U) * S + n; scoreTargets[M] = t; scoreRowOf[M] = b; M++; }
            }
        dec.gatherHidden(scoreHidden, a, scorePositions, 0, M);
        int prefixM = M;
        for (int u = 0; u < U; u++) pairCache.copyPrefix(u, U + u, S);
        for (int b = 0; b < rows; b++) {
            System.arraycopy(tokens, b * T + S, pairTokens, b * Tc, Tc);
            pairSlots[b] = b; pairPos0[b] = S;
        }
        dec.forward(a, pairTokens, rows, Tc, pairSlots, pairPos0, adapters, pairCache, null);
        for (int b = 0; b < rows; b++)
            for (int n = S; n < T; n++) {
                int t = targets[b * T + n];
                if (t != CrossEntropy.IGNORE) { scorePositions[M] = b * Tc + n - S; scoreTargets[M] = t; scoreRowOf[M] = b; M++; }
            }
        dec.gatherHidden(scoreHidden, a, scorePositions, prefixM, M);
        dec.logitsOfHidden(logits, scoreHidden, a, M);
        SequenceLogps.forwardPacked(logps, counts, lse, logits, scoreTargets, scoreRowOf, M, rows, V);
    }

    /// Per-row log-probability sums of `targets` under the logits of the last [#forwardLogits] (rows, T).
    public void sequenceLogps(double[] logps, int[] counts, int[] targets, int T) {
        SequenceLogps.forward(logps, counts, lse, logits, targets, Bc, T, V);
    }

    /// Backward of the last [#forwardLogits] + [#sequenceLogps] from dLoss/dlogps (rows), adding into the parameter
    /// gradients.
    public void backwardSequenceLogps(int[] tokens, int[] targets, double[] dlogps, int T, long step) {
        if (rowScales == null) rowScales = new float[B * Tmax];
        long t0 = timing ? System.nanoTime() : 0;
        SequenceLogps.backward(logits, logits, lse, targets, dlogps, rowScales, Bc, T, V);   // logits now hold dlogits
        if (timing) lossNanos += System.nanoTime() - t0;
        backwardLogits(tokens, logits, step);
    }

    /// Prompt tuning's (rows, n + T) batch: n placeholder ids (0; the decoder puts the prompt embeddings there) then
    /// the tokens; targets IGNORE at the first n positions (the last of them would predict the row's first token,
    /// whose label the aligned targets no longer hold: a prompt token, ignored in SFT).
    private void extend(int[] tokens, int[] targets, int rows, int T) {
        int Te = nVirtual + T;
        if (tokens.length < rows * T) throw new ConfigException("tokens hold " + tokens.length + " ids, need B·T = " + rows * T);
        for (int b = 0; b < rows; b++) {
            Arrays.fill(extTokens, b * Te, b * Te + nVirtual, 0);
            System.arraycopy(tokens, b * T, extTokens, b * Te + nVirtual, T);
            if (targets == null) continue;
            Arrays.fill(extTargets, b * Te, b * Te + nVirtual, CrossEntropy.IGNORE);
            System.arraycopy(targets, b * T, extTargets, b * Te + nVirtual, T);
        }
    }

    /// Virtual tokens before each row (prompt tuning), else 0: [#logits()] then has (rows, n + T) positions.
    public int virtualTokens() { return nVirtual; }

    private Decoder.Noise noise(long step) { return new Decoder.Noise(seed, step, neftuneAlpha, shiftAttn); }

    private void checkBatch(int[] tokens, int T) {
        if (T < 1 || T > Tmax + nVirtual) throw new ConfigException("sequence length " + T + " outside [1, " + Tmax + "]");
        if (tokens.length < Bc * T) throw new ConfigException("tokens hold " + tokens.length + " ids, need B·T = " + Bc * T);
    }

    /// Bytes of activations, gradient scratch, adapter scratch and the loss buffers planned for (B, Tmax), for reports
    /// and `estimate`.
    public long activationBytes() { return acts.bytes() + 4L * logits.length + 8L * lse.length; }
}
