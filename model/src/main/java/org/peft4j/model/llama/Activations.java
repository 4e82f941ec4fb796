package org.peft4j.model.llama;

import org.peft4j.core.Peft4jException.ConfigException;
import org.peft4j.model.LlamaConfig;
import org.peft4j.model.layers.Attention;
import org.peft4j.model.layers.Rope;
import org.peft4j.model.layers.ShiftedAttention;

import java.util.LinkedHashMap;
import java.util.Map;

/// Every buffer of one [Decoder] forward (and backward, when planned for it) over up to B rows × Tmax new tokens,
/// allocated once from a [Plan]; a step allocates nothing. [#sizes] lists the same buffers without allocating them:
/// the memory estimate reads it, so the plan and the estimate cannot drift apart.
///
/// Layout: N = B·Tmax rows; per-layer buffers have `slots` entries: L when kept for backward without checkpointing,
/// else 1 (inference reuses one; checkpointing recomputes a block's buffers during backward). The residual stream
/// has L+1 buffers when kept for backward (each block's input), else 2 used in turn.
public final class Activations {
    /// What to plan for.
    /// @param B               rows per forward
    /// @param Tmax            new tokens per row per forward (prefill chunk, or the training sequence length)
    /// @param backward        keep what backward needs, and allocate the gradient scratch
    /// @param checkpointing   keep only each block's input; backward recomputes the block
    /// @param cacheCapacity   positions per KV-cache slot the forwards will attend over (0: no cache, training)
    /// @param maxRank         the largest LoRA rank of the adapters the forwards will use (0: none)
    /// @param maxDoraOut      the largest out size of a DoRA adapter's module (0: no DoRA)
    /// @param dropoutMaxIn    the largest in size of a module with LoRA dropout while training (0: none)
    public record Plan(int B, int Tmax, boolean backward, boolean checkpointing, int cacheCapacity,
                       int maxRank, int maxDoraOut, int dropoutMaxIn) {
        public Plan {
            if (B < 1 || Tmax < 1) throw new ConfigException("activations need B >= 1 and Tmax >= 1, got " + B + " x " + Tmax);
            if (checkpointing && !backward) throw new ConfigException("checkpointing only applies to activations kept for backward");
            if (backward && cacheCapacity != 0) throw new ConfigException("a training forward attends within its own rows: plan it without a KV cache");
        }

        /// Training: B rows of up to Tmax tokens, kept for backward.
        public static Plan training(int B, int Tmax, boolean checkpointing) {
            return new Plan(B, Tmax, true, checkpointing, 0, 0, 0, 0);
        }

        /// Inference over a KV cache of `capacity` positions per slot, up to B rows × Tmax new tokens per forward.
        public static Plan inference(int B, int Tmax, int capacity) {
            return new Plan(B, Tmax, false, false, capacity, 0, 0, 0);
        }

        /// This plan with adapter scratch for ranks up to `maxRank`, DoRA modules up to `maxDoraOut` wide, and LoRA
        /// dropout on inputs up to `dropoutMaxIn` wide (each 0 for none).
        public Plan withAdapters(int maxRank, int maxDoraOut, int dropoutMaxIn) {
            return new Plan(B, Tmax, backward, checkpointing, cacheCapacity, Math.max(this.maxRank, maxRank),
                    Math.max(this.maxDoraOut, maxDoraOut), Math.max(this.dropoutMaxIn, dropoutMaxIn));
        }

        /// Positions the RoPE tables cover.
        int positions() { return Math.max(Tmax, cacheCapacity); }

        /// Key positions one attention row spans: the cache capacity, or the sequence itself in training.
        int keys() { return cacheCapacity > 0 ? cacheCapacity : Tmax; }
    }

    private static final int P = Projection.values().length;

    public final Plan plan;
    public final int B, Tmax;
    int rows, T;                    // the shape of the last forward
    final int slots;
    final int baseScratchFloats;
    // forward
    final float[][] resid;          // (L+1 or 2)(N, C)
    final float[][] ln1, ln2;       // (slots)(N, C)
    final float[][] rstd1, rstd2;   // (slots)(N)
    final float[][] q, k, v;        // (slots)(N, qDim / kvDim), after RoPE
    final float[][] probs;          // (slots)(B, NH, Tmax, keys) kept for backward; inference: (threads, min(Tmax, BR), keys) blocks
    final float[][] attY;           // (slots)(N, qDim)
    final float[][] resid2;         // (slots)(N, C): block input + attention output
    final float[][] gate, up, act;  // (slots)(N, F)
    final float[] lnf, rstdf;       // (N, C), (N)
    final float[] last;             // (B, C) last position of each row
    final float[] qRow, attRow;     // (Tmax, qDim): one row's q and attention output, for cache rows that are not row 0
    final float[] cos, sin;         // (positions, HS/2)
    final float[] baseScratch;      // tiles of 16-bit / 4-bit base weights
    // adapters
    final float[][][] h;            // (slots)(7)(N, maxRank); grown by [#fitAdapter] for a wider adapter
    final float[][][] u;            // (slots)(7)(N, maxDoraOut), DoRA only; grown likewise
    final float[][][] xd, mask;     // (slots)(7)(N, in), LoRA dropout while training only
    final AdapterRuns runs;
    float[] ia3x, ia3dy;            // (N, max(C, qDim, F)) (IA)³ scratch: the scaled input, the base output / scaled dy; [#fitIa3]
    // S²-Attn (LongLoRA shift_attn), training forwards only; [#fitShift]
    boolean shifted;                // the last forward ran S²-Attn (its backward and recomputed blocks do too)
    float[] s2q, s2y, s2dq;         // (N, qDim): rolled q, the rolled output (then dout), dq in rolled order
    float[] s2k, s2v, s2dk, s2dv;   // (N, kvHeads·HS): rolled k, v and their gradients
    // backward
    final float[] dres, dres2, dln, dq, dk, dv, dattY, dgate, dup, dact, attScratch;
    float[] dh, du;
    final float[] dxd;
    // the single-position API's per-row arrays (filled per call, never reallocated)
    final int[] pos0Rows;
    final org.peft4j.model.adapter.LoadedAdapter[] adapterRows;
    private int rankPlanned, doraOutPlanned;

    /// Allocates the buffers of `plan` for `c`; `baseScratchFloats` is the largest scratch a base weight asks for.
    Activations(LlamaConfig c, Plan plan, int baseScratchFloats) {
        this.plan = plan; this.B = plan.B(); this.Tmax = plan.Tmax(); this.baseScratchFloats = baseScratchFloats;
        Map<String, Long> s = sizes(c, plan, baseScratchFloats);
        slots = plan.backward() && !plan.checkpointing() ? c.numHiddenLayers() : 1;
        int L = c.numHiddenLayers();
        resid = new float[plan.backward() ? L + 1 : 2][n(s, "resid")];
        ln1 = new float[slots][n(s, "ln1")]; ln2 = new float[slots][n(s, "ln2")];
        rstd1 = new float[slots][n(s, "rstd1")]; rstd2 = new float[slots][n(s, "rstd2")];
        q = new float[slots][n(s, "q")]; k = new float[slots][n(s, "k")]; v = new float[slots][n(s, "v")];
        probs = new float[slots][n(s, "probs")];
        attY = new float[slots][n(s, "attY")]; resid2 = new float[slots][n(s, "resid2")];
        gate = new float[slots][n(s, "gate")]; up = new float[slots][n(s, "up")]; act = new float[slots][n(s, "act")];
        lnf = new float[n(s, "lnf")]; rstdf = new float[n(s, "rstdf")]; last = new float[n(s, "last")];
        qRow = new float[n(s, "qRow")]; attRow = new float[n(s, "attRow")];
        cos = new float[n(s, "cos")]; sin = new float[n(s, "sin")];
        Rope.tables(cos, sin, c.ropeScaling().apply(Rope.invFreq(c.headDim(), c.ropeTheta())), plan.positions());
        baseScratch = new float[n(s, "baseScratch")];
        h = new float[slots][P][]; u = new float[slots][P][]; xd = new float[slots][P][]; mask = new float[slots][P][];
        for (int sl = 0; sl < slots; sl++)
            for (Projection p : Projection.values()) {
                int i = p.ordinal();
                h[sl][i] = new float[n(s, "h")];
                u[sl][i] = new float[n(s, "u")];
                xd[sl][i] = new float[plan.dropoutMaxIn() > 0 ? B * Tmax * p.in(c) : 0];
                mask[sl][i] = new float[plan.dropoutMaxIn() > 0 ? B * Tmax * p.in(c) : 0];
            }
        runs = new AdapterRuns(B);
        dres = new float[n(s, "dres")]; dres2 = new float[n(s, "dres2")]; dln = new float[n(s, "dln")];
        dq = new float[n(s, "dq")]; dk = new float[n(s, "dk")]; dv = new float[n(s, "dv")]; dattY = new float[n(s, "dattY")];
        dgate = new float[n(s, "dgate")]; dup = new float[n(s, "dup")]; dact = new float[n(s, "dact")];
        attScratch = new float[n(s, "attScratch")];
        dh = new float[n(s, "dh")]; dxd = new float[n(s, "dxd")]; du = new float[n(s, "du")];
        pos0Rows = new int[B]; adapterRows = new org.peft4j.model.adapter.LoadedAdapter[B];
        rankPlanned = plan.maxRank(); doraOutPlanned = plan.maxDoraOut();
        ia3x = new float[0]; ia3dy = new float[0];
        s2q = s2y = s2dq = s2k = s2v = s2dk = s2dv = new float[0];
    }

    /// Allocates the S²-Attn scratch on the first shifted forward (later ones allocate nothing): the rolled q, k, v and
    /// output, and their gradients ([ShiftedAttention#scratchSizes]); one set serves every layer, since backward rolls
    /// again. Its probabilities use a quarter of `probs`, planned for full attention, which evaluation runs.
    synchronized void fitShift(LlamaConfig c) {
        if (s2q.length > 0) return;
        int[] n = ShiftedAttention.scratchSizes(B, Tmax, c.numAttentionHeads(), c.numKeyValueHeads(), c.headDim());
        s2q = new float[n[0]]; s2y = new float[n[0]]; s2dq = new float[n[0]];
        s2k = new float[n[1]]; s2v = new float[n[1]]; s2dk = new float[n[1]]; s2dv = new float[n[1]];
    }

    /// Allocates the (IA)³ scratch on the first forward with an (IA)³ adapter (later ones allocate nothing): the scaled
    /// input of a feed-forward module, and in backward the recomputed base output and the scaled output gradient.
    synchronized void fitIa3(LlamaConfig c) {
        int w = Math.max(Math.max(c.hiddenSize(), c.qDim()), c.intermediateSize()), N = B * Tmax;
        if (ia3x.length < N * w) ia3x = new float[Math.multiplyExact(N, w)];
        if (plan.backward() && ia3dy.length < N * w) ia3dy = new float[Math.multiplyExact(N, w)];
    }

    /// Grows the adapter scratch for an adapter of rank `r` (and DoRA modules up to `doraOut` wide, 0 for LoRA) when
    /// the plan did not cover it: the first forward with a wider adapter allocates, later ones do not.
    synchronized void fitAdapter(int r, int doraOut) {
        if (r <= rankPlanned && doraOut <= doraOutPlanned) return;
        int N = B * Tmax;
        rankPlanned = Math.max(rankPlanned, r); doraOutPlanned = Math.max(doraOutPlanned, doraOut);
        for (int sl = 0; sl < slots; sl++)
            for (int i = 0; i < P; i++) {
                if (h[sl][i].length < N * rankPlanned) h[sl][i] = new float[Math.multiplyExact(N, rankPlanned)];
                if (u[sl][i].length < N * doraOutPlanned) u[sl][i] = new float[Math.multiplyExact(N, doraOutPlanned)];
            }
        if (plan.backward()) {
            if (dh.length < N * rankPlanned) dh = new float[Math.multiplyExact(N, rankPlanned)];
            if (du.length < N * doraOutPlanned) du = new float[Math.multiplyExact(N, doraOutPlanned)];
        }
    }

    /// Every buffer of `plan` by name, in floats, **per copy** (per-layer buffers are allocated `slots` times, the
    /// residual L+1 or 2 times, adapter buffers `slots`·7 times): the single list allocation and [#bytes] read.
    public static Map<String, Long> sizes(LlamaConfig c, Plan plan, int baseScratchFloats) {
        long N = (long) plan.B() * plan.Tmax(), C = c.hiddenSize(), F = c.intermediateSize();
        long qd = c.qDim(), kvd = c.kvDim(), NH = c.numAttentionHeads();
        boolean bw = plan.backward();
        Map<String, Long> m = new LinkedHashMap<>();
        m.put("resid", N * C);
        m.put("ln1", N * C); m.put("ln2", N * C); m.put("rstd1", N); m.put("rstd2", N);
        m.put("q", N * qd); m.put("k", N * kvd); m.put("v", N * kvd);
        long probs = bw ? plan.B() * NH * plan.Tmax() * plan.keys()
                : plan.cacheCapacity() == 0 ? Attention.inferenceScratchSize(plan.Tmax(), plan.keys(), org.peft4j.core.Parallel.threads())
                // over a cache: room for a float16 cache's decode too (Attention.decodeHalf)
                : Math.max(Attention.inferenceScratchSize(plan.Tmax(), plan.keys(), org.peft4j.core.Parallel.threads()),
                        Attention.halfScratchSize(plan.keys(), c.numAttentionHeads(), c.numKeyValueHeads(), c.headDim(), org.peft4j.core.Parallel.threads()));
        m.put("probs", probs);
        m.put("attY", N * qd); m.put("resid2", N * C);
        m.put("gate", N * F); m.put("up", N * F); m.put("act", N * F);
        m.put("lnf", N * C); m.put("rstdf", N); m.put("last", plan.B() * C);
        boolean rows = plan.cacheCapacity() > 0 && plan.B() > 1;
        m.put("qRow", rows ? plan.Tmax() * qd : 0); m.put("attRow", rows ? plan.Tmax() * qd : 0);
        m.put("cos", (long) plan.positions() * c.headDim() / 2); m.put("sin", (long) plan.positions() * c.headDim() / 2);
        m.put("baseScratch", (long) baseScratchFloats);
        m.put("h", N * plan.maxRank()); m.put("u", N * plan.maxDoraOut());
        long inSum = 0;
        if (plan.dropoutMaxIn() > 0) for (Projection p : Projection.values()) inSum += N * p.in(c);
        m.put("xd", inSum); m.put("mask", inSum);   // summed over the 7 projections
        long g = bw ? 1 : 0;
        m.put("dres", g * N * C); m.put("dres2", g * N * C); m.put("dln", g * N * C);
        m.put("dq", g * N * qd); m.put("dk", g * N * kvd); m.put("dv", g * N * kvd); m.put("dattY", g * N * qd);
        m.put("dgate", g * N * F); m.put("dup", g * N * F); m.put("dact", g * N * F);
        m.put("attScratch", bw ? (long) Attention.backwardScratchSize(plan.B(), plan.Tmax(), c.numAttentionHeads(), c.headDim()) : 0);
        long outMax = Math.max(Math.max(qd, C), F);
        m.put("dh", g * N * plan.maxRank());
        m.put("dxd", plan.dropoutMaxIn() > 0 ? g * N * Math.max(Math.max(C, qd), F) : 0);
        m.put("du", plan.maxDoraOut() > 0 ? g * N * outMax : 0);
        for (var e : m.entrySet())
            if (e.getValue() > Integer.MAX_VALUE)
                throw new ConfigException("batch " + plan.B() + " x sequence " + plan.Tmax() + " needs a buffer '" + e.getKey() + "' of "
                        + e.getValue() + " floats, more than one Java array holds; lower the batch size or the sequence length");
        return m;
    }

    /// Bytes of all buffers of `plan`, counting copies (what [Activations] allocates for it).
    public static long bytes(LlamaConfig c, Plan plan, int baseScratchFloats) {
        long b = 0;
        for (long x : bytesByName(c, plan, baseScratchFloats).values()) b += x;
        return b;
    }

    /// [#sizes] in bytes with every copy counted, by buffer name.
    public static Map<String, Long> bytesByName(LlamaConfig c, Plan plan, int baseScratchFloats) {
        Map<String, Long> s = sizes(c, plan, baseScratchFloats), out = new LinkedHashMap<>();
        int L = c.numHiddenLayers(), slots = plan.backward() && !plan.checkpointing() ? L : 1;
        for (var e : s.entrySet()) {
            long copies = switch (e.getKey()) {
                case "resid" -> plan.backward() ? L + 1 : 2;
                case "ln1", "ln2", "rstd1", "rstd2", "q", "k", "v", "probs", "attY", "resid2", "gate", "up", "act" -> slots;
                case "h", "u" -> (long) slots * P;
                case "xd", "mask" -> slots;   // already summed over projections
                default -> 1;
            };
            out.put(e.getKey(), 4 * copies * e.getValue());
        }
        return out;
    }

    /// Bytes held by these buffers.
    public long bytes() {
        long f = 0;
        for (float[][] a : new float[][][] {resid, ln1, ln2, rstd1, rstd2, q, k, v, probs, attY, resid2, gate, up, act})
            for (float[] x : a) f += x.length;
        for (float[][][] a : new float[][][][] {h, u, xd, mask})
            for (float[][] y : a) for (float[] x : y) f += x.length;
        for (float[] x : new float[][] {lnf, rstdf, last, qRow, attRow, cos, sin, baseScratch, dres, dres2, dln, dq, dk, dv, dattY,
                dgate, dup, dact, attScratch, dh, dxd, du, ia3x, ia3dy, s2q, s2y, s2dq, s2k, s2v, s2dk, s2dv}) f += x.length;
        return 4 * f;
    }

    private static int n(Map<String, Long> s, String key) { return Math.toIntExact(s.get(key)); }
}
