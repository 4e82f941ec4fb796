package org.peft4j.model.layers;

import jdk.incubator.vector.FloatVector;
import org.peft4j.core.kernels.ColdStart;
import org.peft4j.core.kernels.Exp;
import org.peft4j.core.kernels.VectorOps;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.VectorSpecies;
import org.peft4j.core.Gemm;
import org.peft4j.core.Parallel;
import org.peft4j.core.kernels.PanelGemm;
import org.peft4j.core.kernels.VectorGemm;

/// Grouped-query causal self-attention on already-rotated q and k:
/// out = softmax(q·kᵀ/√HS + causal mask)·v, query head h reads key/value head h / (NH/KVH).
/// Reference: HF `eager_attention_forward` with `repeat_kv`.
/// Backward (training: Tcap = T, pos0 = 0), per query row t with P = att[t], dP = dout·vᵀ:
/// dv += Pᵀ·dout,  dS = P ⊙ (dP − Σ P⊙dP),  dq += dS·k/√HS,  dk += dSᵀ·q/√HS.
///
/// The fast path ([#forward], [#backward]) cuts each (batch, head) into blocks of `BR` query rows and runs the blocks
/// of all heads as parallel tasks, each doing its products as single-threaded GEMMs (q·kᵀ and dout·vᵀ on the given
/// GEMM, the others on [PanelGemm], which reads its second operand in place) over the causal prefix of keys
/// [0, pos0 + t1) (about half of the full T×T work) and the softmax with a deterministic vector `exp`. Backward is
/// three such passes (by key block, query block, key block), so every output element is written by one task and
/// the result does not depend on the thread count. [#forwardScalar] and [#backwardScalar] are the plain
/// triple loops it is tested against.
public final class Attention {
    private Attention() {}

    /// Query rows per block: a (BR, T) score block of a 512-token sequence is 128 KB, inside L2.
    static final int BR = 64;
    private static final VectorSpecies<Float> S = FloatVector.SPECIES_PREFERRED;
    private static final Gemm GEMM = VectorGemm.INSTANCE;
    /// The products whose second operand is read row by row in place (P·v, dS·k, Pᵀ·dout, dSᵀ·q): no packing.
    private static final Gemm PANEL = PanelGemm.INSTANCE;

    /// out, q: (B, T, NH·HS).   k, v: (B, Tcap, KVH·HS), the cache; query t (absolute position pos0 + t) attends to
    /// keys [0, pos0 + t].   att: (B, NH, T, Tcap) softmax probabilities kept for backward, or null (then the
    /// scalar path runs, with a Tcap-long scratch row per head).
    public static void forward(float[] out, float[] att, float[] q, float[] k, float[] v,
                               int B, int T, int Tcap, int NH, int KVH, int HS, int pos0) {
        forward(null, out, att, q, k, v, B, T, Tcap, NH, KVH, HS, pos0);
    }

    /// As above, with the products on `gemm` (null: the Java GEMM). The blocks of all heads run as parallel tasks and
    /// `gemm` is called inside them, where it runs single-threaded (OpenBLAS too: see [Parallel#inTask()]).
    public static void forward(Gemm gemm, float[] out, float[] att, float[] q, float[] k, float[] v,
                               int B, int T, int Tcap, int NH, int KVH, int HS, int pos0) {
        if (att == null) { forwardScalar(out, null, q, k, v, B, T, Tcap, NH, KVH, HS, pos0); return; }
        Gemm g = gemm == null ? GEMM : gemm;
        int nb = (T + BR - 1) / BR;
        boolean cold = GATE.cold();
        // block i of a head costs ~ (pos0 + i + 1): pairing the cheap and the dear blocks balances contiguous chunks
        Parallel.range(B * NH * nb, i -> {
            int bh = i / nb, t0 = BR * paired(i % nb, nb);
            forwardBlock(cold, g, bh, t0, out, att, (bh * T + t0) * Tcap, Tcap, q, k, v, T, Tcap, NH, KVH, HS, pos0);
        });
    }

    /// Floats of scratch [#forwardInference] needs to run on `threads` threads: a (min(T, BR), Tcap) probability block
    /// each, and at least [#DECODE_ROWS] rows of Tcap each, so that decode (T = 1) can take the heads of a KV group
    /// ([#decodeGroup]) or of a row ([#decodeRow]) together (groups or rows of more heads decode head by head).
    public static int inferenceScratchSize(int T, int Tcap, int threads) {
        return Math.multiplyExact(Math.multiplyExact(Math.max(Math.min(T, BR), DECODE_ROWS), Tcap), Math.max(1, threads));
    }

    /// Probability rows per thread that [#inferenceScratchSize] gives at least (SmolLM2 has 9 heads, Qwen2.5-0.5B 14).
    static final int DECODE_ROWS = 16;

    /// The forward when nothing is kept for backward (generation, serving, scoring): the same blocked products as
    /// [#forward], each block's probabilities in a per-chunk (min(T, BR), Tcap) block of `scratch` instead of a
    /// (B, NH, T, Tcap) buffer, so a prompt of any length runs on the blocked path with memory independent of T.
    /// The results are those of [#forward] for T > 1; one new token per row (T = 1, decode) takes [#decodeHead],
    /// whose sums run in another order (within float rounding of [#forward]). scratch: ≥ one block
    /// ([#inferenceScratchSize] for one thread); with less than one block per thread, fewer threads run.
    public static void forwardInference(Gemm gemm, float[] out, float[] q, float[] k, float[] v,
                                        int B, int T, int Tcap, int NH, int KVH, int HS, int pos0, float[] scratch) {
        forwardInference(T > 1 && (long) T * (pos0 + T) <= TWIN_MAX_PAIRS && GATE.cold(), gemm, out, q, k, v, B, T, Tcap, NH, KVH, HS, pos0, scratch);
    }

    /// Query-key pairs (T·(pos0 + T), per row and head) up to which a cold start runs a prompt's blocks on the twins.
    /// The twins' work grows with the pairs, the vector code's compilation does not: SmolLM2-135M shapes on 2 Zen 5
    /// cores, first token from the shell, twins against vector code from the first call: 2.2-2.5 against 2.9-3.1 s at
    /// 144 prompt tokens, 2.9-3.9 against 3.2-3.8 s at 288, 5.4-6.7 against 3.9-4.4 s at 576 (F32 and BF16 weights).
    static final long TWIN_MAX_PAIRS = 256L * 256;

    /// [#forwardInference], the blocks' softmax and P·v on their scalar twins when `cold` (the same bits).
    static void forwardInference(boolean cold, Gemm gemm, float[] out, float[] q, float[] k, float[] v,
                                 int B, int T, int Tcap, int NH, int KVH, int HS, int pos0, float[] scratch) {
        int block = Math.min(T, BR) * Tcap;
        if (scratch.length < block)
            throw new IllegalArgumentException("attention scratch holds " + scratch.length + " floats, needs a block of " + block);
        Gemm g = gemm == null ? GEMM : gemm;
        int nb = (T + BR - 1) / BR, items = B * NH * nb;
        int chunks = Math.max(1, Math.min(Math.min(Parallel.threads(), items), scratch.length / block));
        if (T == 1) {   // decode: one query row per head, no GEMM call (packing a 1-row product costs more than it)
            int G = NH / KVH, groups = B * KVH, gchunks = Math.max(1, Math.min(Parallel.threads(), groups));
            // the heads of a KV group together (each key and value row read once for all of them), when the groups
            // split evenly enough over the threads and the scratch holds G probability rows per chunk; the same bits
            // as head by head
            // one stream on one thread over a long cache: every head of the row at once, the keys read front to back
            // in one pass (SmolLM2's shapes, 30 layers, one Zen 5 thread: 1.40 against 1.64 ms a step at 512 keys,
            // 1.79 against 2.50 at 640; but 0.79 against 0.62 at 256 and 0.27 against 0.21 at 80, where the caches
            // stay in cache and the group's shorter loops win)
            if (G > 1 && B == 1 && pos0 + 1 >= ROW_KEYS && Parallel.threads() == 1 && HS % (4 * S.length()) == 0 && G <= 4
                    && scratch.length >= NH * Tcap) {
                decodeRow(0, out, scratch, 0, q, k, v, Tcap, NH, KVH, HS, pos0);
                return;
            }
            if (G > 1 && (groups % gchunks == 0 || groups >= 4 * gchunks) && scratch.length >= gchunks * G * Tcap) {
                Parallel.chunks(groups, gchunks, (ci, from, to) -> {
                    for (int bg = from; bg < to; bg++) decodeGroup(bg, out, scratch, ci * G * Tcap, q, k, v, Tcap, NH, KVH, HS, pos0);
                });
                return;
            }
            // one row whose groups do not split evenly over the threads: key blocks, then heads, over the threads
            if (B == 1 && G > 1 && Parallel.threads() > 1 && decodeSplit(out, q, k, v, Tcap, NH, KVH, HS, pos0, scratch)) return;
            Parallel.chunks(items, chunks, (ci, from, to) -> {
                for (int bh = from; bh < to; bh++) decodeHead(bh, out, scratch, ci * block, q, k, v, Tcap, NH, KVH, HS, pos0);
            });
            return;
        }
        Parallel.chunks(items, chunks, (ci, from, to) -> {
            for (int i = from; i < to; i++)
                forwardBlock(cold, g, i / nb, BR * paired(i % nb, nb), out, scratch, ci * block, pos0 + Math.min(T, BR * paired(i % nb, nb) + BR),
                        q, k, v, T, Tcap, NH, KVH, HS, pos0);
        });
    }

    /// One query row (decode) of head bh = b·NH + h at absolute position pos0: scores q·k_s/√HS for the keys
    /// s ≤ pos0 into p[po, po + pos0 + 1) (each an FMA chain over HS in vector chunks, its lanes summed by
    /// [VectorOps#sumHalves], then the scalar tail), the softmax of [#softmaxRow], then out = Σ_s p_s·v_s, up to four
    /// vector chunks of the head at a time, each an FMA chain over s in order. Every step is the same whatever the
    /// batch, the row's place in it and the thread count.
    static void decodeHead(int bh, float[] out, float[] p, int po, float[] q, float[] k, float[] v,
                           int Tcap, int NH, int KVH, int HS, int pos0) {
        int qStride = NH * HS, kvStride = KVH * HS, L = S.length();
        float scale = (float) (1.0 / Math.sqrt(HS));
        int b = bh / NH, h = bh % NH, kh = h / (NH / KVH);
        int ko = b * Tcap * kvStride + kh * HS, qo = b * qStride + h * HS, keys = pos0 + 1, vb = S.loopBound(HS);
        for (int s = 0, kr = ko; s < keys; s++, kr += kvStride) {
            FloatVector acc = FloatVector.zero(S);
            int d = 0;
            for (; d < vb; d += L) acc = FloatVector.fromArray(S, q, qo + d).fma(FloatVector.fromArray(S, k, kr + d), acc);
            float t = 0f;
            for (; d < HS; d++) t = Math.fma(q[qo + d], k[kr + d], t);
            p[po + s] = scale * ((vb > 0 ? VectorOps.sumHalves(acc) : 0f) + t);
        }
        softmaxRow(p, po, keys, keys);
        int d = HS / (4 * L) * 4 * L;
        values1(out, qo, p, po, v, ko, kvStride, keys, d);
        for (; d + L <= HS; d += L) {
            FloatVector a = FloatVector.zero(S);
            for (int s = 0, vr = ko + d; s < keys; s++, vr += kvStride) a = FloatVector.fromArray(S, v, vr).fma(FloatVector.broadcast(S, p[po + s]), a);
            a.intoArray(out, qo + d);
        }
        for (; d < HS; d++) {
            float a = 0f;
            for (int s = 0, vr = ko + d; s < keys; s++, vr += kvStride) a = Math.fma(v[vr], p[po + s], a);
            out[qo + d] = a;
        }
    }

    /// [#decodeHead] for the NH/KVH query heads of KV group bg = b·KVH + kh at once, each key and value row loaded once
    /// for all of them: every head's scores, softmax and output are the same operations in the same order as
    /// [#decodeHead]'s (so the same bits), the heads' chains interleaved. p[po + g·Tcap ..]: head g's probabilities.
    /// Head sizes that are not a multiple of 4 vector chunks take [#decodeHead] head by head.
    static void decodeGroup(int bg, float[] out, float[] p, int po, float[] q, float[] k, float[] v,
                            int Tcap, int NH, int KVH, int HS, int pos0) {
        int L = S.length(), G = NH / KVH, b = bg / KVH, kh = bg % KVH;
        if (HS % (4 * L) != 0 || G > 4) {
            for (int g = 0; g < G; g++) decodeHead(b * NH + kh * G + g, out, p, po + g * Tcap, q, k, v, Tcap, NH, KVH, HS, pos0);
            return;
        }
        int qStride = NH * HS, kvStride = KVH * HS, keys = pos0 + 1;
        float scale = (float) (1.0 / Math.sqrt(HS));
        int ko = b * Tcap * kvStride + kh * HS, qo = b * qStride + kh * G * HS;
        // scores: per key, one chain per head over the head's chunks (decodeHead's acc), the heads in pairs
        int g = 0;
        for (; g + 2 <= G; g += 2) scores2(p, po + g * Tcap, Tcap, q, qo + g * HS, k, ko, kvStride, keys, HS, scale);
        if (g < G) scores1(p, po + g * Tcap, q, qo + g * HS, k, ko, kvStride, keys, HS, scale);
        for (g = 0; g < G; g++) softmaxRow(p, po + g * Tcap, keys, keys);
        groupValues(out, qo, p, po, Tcap, v, ko, kvStride, keys, HS, G);
    }

    /// The outputs of a KV group's G heads (at out[qo ..], probabilities at p[po + g·Tcap ..], values at v[ko ..]):
    /// per head four chains over the keys for each block of 4 chunks (decodeHead's a0..a3), the heads in pairs.
    private static void groupValues(float[] out, int qo, float[] p, int po, int Tcap, float[] v, int ko, int kvStride, int keys, int HS, int G) {
        int g = 0;
        for (; g + 2 <= G; g += 2) values2(out, qo + g * HS, p, po + g * Tcap, Tcap, v, ko, kvStride, keys, HS);
        if (g < G) values1(out, qo + g * HS, p, po + g * Tcap, v, ko, kvStride, keys, HS);
    }

    /// Cached keys from which one stream on one thread decodes by row ([#decodeRow]) rather than by group.
    static final int ROW_KEYS = 512;

    /// [#decodeGroup] for every head of batch row b at once: the scores of all heads in one pass over the keys, each
    /// key's row of the cache (all KV heads, contiguous) read once, front to back; then each head's softmax, and the
    /// values group by group as [#decodeGroup]. The same bits as [#decodeHead]. Over a cache larger than L2 (30
    /// layers, 576 keys, SmolLM2's 9 heads in 3 groups) the group-by-group scores read each row's slices as three
    /// strided streams, at about half the speed. Needs HS a multiple of 4 vector chunks, at most 4 heads a group, and
    /// NH probability rows at p[po ..] (row h at po + h·Tcap).
    static void decodeRow(int b, float[] out, float[] p, int po, float[] q, float[] k, float[] v,
                          int Tcap, int NH, int KVH, int HS, int pos0) {
        int L = S.length(), G = NH / KVH, qStride = NH * HS, kvStride = KVH * HS, keys = pos0 + 1;
        float scale = (float) (1.0 / Math.sqrt(HS));
        int ko = b * Tcap * kvStride, qo = b * qStride;
        for (int s = 0, kr = ko; s < keys; s++, kr += kvStride)
            for (int kh = 0; kh < KVH; kh++) {
                int kb = kr + kh * HS, h = kh * G, g = 0;
                for (; g + 2 <= G; g += 2) {
                    int qa = qo + (h + g) * HS, qb = qa + HS;
                    FloatVector a = FloatVector.zero(S), c = a;
                    for (int d = 0; d < HS; d += L) {
                        FloatVector kv = FloatVector.fromArray(S, k, kb + d);
                        a = FloatVector.fromArray(S, q, qa + d).fma(kv, a);
                        c = FloatVector.fromArray(S, q, qb + d).fma(kv, c);
                    }
                    p[po + (h + g) * Tcap + s] = scale * (VectorOps.sumHalves(a) + 0f);
                    p[po + (h + g + 1) * Tcap + s] = scale * (VectorOps.sumHalves(c) + 0f);
                }
                if (g < G) {
                    int qa = qo + (h + g) * HS;
                    FloatVector a = FloatVector.zero(S);
                    for (int d = 0; d < HS; d += L) a = FloatVector.fromArray(S, q, qa + d).fma(FloatVector.fromArray(S, k, kb + d), a);
                    p[po + (h + g) * Tcap + s] = scale * (VectorOps.sumHalves(a) + 0f);
                }
            }
        for (int h = 0; h < NH; h++) softmaxRow(p, po + h * Tcap, keys, keys);
        for (int kh = 0; kh < KVH; kh++) groupValues(out, qo + kh * G * HS, p, po + kh * G * Tcap, Tcap, v, ko + kh * HS, kvStride, keys, HS, G);
    }

    /// Keys a float16 decode converts at a time ([#decodeHalf]): a block of key or value rows in L1.
    static final int HALF_KEYS = 32;

    /// Floats of scratch [#decodeHalf] needs: the NH probability rows, and a block buffer per thread.
    public static int halfScratchSize(int Tcap, int NH, int KVH, int HS, int threads) {
        return NH * Tcap + Math.max(1, threads) * HALF_KEYS * KVH * HS;
    }

    /// Decode (T = 1) of one row over a float16 KV cache (`kh`, `vh`: IEEE half bits, (Tcap, KVH·HS) rows; keys
    /// 0 .. pos0): the bits of [#decodeHead] over the float values of those halves, read at half the bytes of a float32
    /// cache. The scores take blocks of [#HALF_KEYS] key rows, each converted into a per-thread buffer and scored for
    /// every head as [#decodeRow] scores a row (the blocks split over the threads); each head's softmax; then the
    /// values KV group by KV group (the groups split over the threads), each group's value slices converted a block
    /// at a time and added into the output's chains ([#values2] carried from block to block: the same operations as
    /// one pass). Needs HS a multiple of 4 vector chunks, at most 4 heads a group, and [#halfScratchSize] floats of
    /// scratch for at least one thread; returns false, doing nothing, otherwise (the caller converts the rows into
    /// float arrays and takes [#forwardInference]).
    public static boolean decodeHalf(float[] out, float[] q, short[] kh, short[] vh, int Tcap, int NH, int KVH, int HS, int pos0, float[] scratch) {
        int L = S.length(), G = NH / KVH, kvDim = KVH * HS, keys = pos0 + 1, probs = NH * Tcap, buf = HALF_KEYS * kvDim;
        if (HS % (4 * L) != 0 || G > 4 || scratch.length < probs + buf) return false;
        int threads = Math.max(1, Math.min(Parallel.threads(), (scratch.length - probs) / buf));
        float scale = (float) (1.0 / Math.sqrt(HS));
        int blocks = (keys + HALF_KEYS - 1) / HALF_KEYS;
        Parallel.chunks(blocks, Math.min(threads, blocks), (c, from, to) -> {
            int bo = probs + c * buf;
            for (int blk = from; blk < to; blk++) {
                int s0 = blk * HALF_KEYS, n = Math.min(HALF_KEYS, keys - s0);
                halfToFloat(kh, s0 * kvDim, scratch, bo, n * kvDim);
                for (int j = 0, kr = bo; j < n; j++, kr += kvDim) rowScores(scratch, s0 + j, Tcap, q, scratch, kr, NH, KVH, HS, scale);
            }
        });
        for (int h = 0; h < NH; h++) softmaxRow(scratch, h * Tcap, keys, keys);
        Parallel.chunks(KVH, Math.min(threads, KVH), (c, from, to) -> {
            int bo = probs + c * buf;
            // one thread for every group: each block's whole rows converted at once (one long loop); else each
            // thread converts its groups' slices, row by row
            boolean rows = from == 0 && to == KVH;
            for (int s0 = 0; s0 < keys; s0 += HALF_KEYS) {
                int n = Math.min(HALF_KEYS, keys - s0);
                if (rows) halfToFloat(vh, s0 * kvDim, scratch, bo, n * kvDim);
                for (int kv = from; kv < to; kv++) {
                    int vo = bo + kv * HS, stride = kvDim;
                    if (!rows) {
                        for (int j = 0; j < n; j++) halfToFloat(vh, (s0 + j) * kvDim + kv * HS, scratch, bo + j * HS, HS);
                        vo = bo;
                        stride = HS;
                    }
                    int qo = kv * G * HS, po = kv * G * Tcap + s0, g = 0;
                    for (; g + 2 <= G; g += 2) values2(s0 > 0, out, qo + g * HS, scratch, po + g * Tcap, Tcap, scratch, vo, stride, n, HS);
                    if (g < G) values1(s0 > 0, out, qo + g * HS, scratch, po + g * Tcap, scratch, vo, stride, n, HS);
                }
            }
        });
        return true;
    }

    /// Decode (T = 1) of one row over a float32 cache on several threads, where the KV groups do not split evenly over
    /// them: the scores of blocks of [#HALF_KEYS] keys split over the threads (each key's row read once, scored for
    /// every head as [#decodeRow] scores it), then the heads split over the threads, each head's softmax and values
    /// as [#decodeHead]'s. The bits of [#decodeHead]. SmolLM2's 3 groups on 2 threads went head by head before, each
    /// head reading its group's keys again. Needs HS a multiple of 4 vector chunks and NH probability rows of
    /// scratch; returns false, doing nothing, otherwise.
    static boolean decodeSplit(float[] out, float[] q, float[] k, float[] v, int Tcap, int NH, int KVH, int HS, int pos0, float[] scratch) {
        int L = S.length(), G = NH / KVH, kvDim = KVH * HS, keys = pos0 + 1;
        if (HS % (4 * L) != 0 || scratch.length < NH * Tcap) return false;
        float scale = (float) (1.0 / Math.sqrt(HS));
        int threads = Parallel.threads(), blocks = (keys + HALF_KEYS - 1) / HALF_KEYS;
        Parallel.chunks(blocks, Math.min(threads, blocks), (c, from, to) -> {
            for (int s = from * HALF_KEYS, end = Math.min(keys, to * HALF_KEYS); s < end; s++)
                rowScores(scratch, s, Tcap, q, k, s * kvDim, NH, KVH, HS, scale);
        });
        Parallel.chunks(NH, Math.min(threads, NH), (c, from, to) -> {
            for (int h = from; h < to; h++) {
                softmaxRow(scratch, h * Tcap, keys, keys);
                values1(out, h * HS, scratch, h * Tcap, v, h / G * HS, kvDim, keys, HS);
            }
        });
        return true;
    }

    /// The scores of key s (its row of every KV head at k[kr ..]) for every head, into p[h·Tcap + s]: [#decodeRow]'s.
    private static void rowScores(float[] p, int s, int Tcap, float[] q, float[] k, int kr, int NH, int KVH, int HS, float scale) {
        int L = S.length(), G = NH / KVH;
        for (int kv = 0; kv < KVH; kv++) {
            int kb = kr + kv * HS, h = kv * G, g = 0;
            for (; g + 2 <= G; g += 2) {
                int qa = (h + g) * HS, qb = qa + HS;
                FloatVector a = FloatVector.zero(S), c = a;
                for (int d = 0; d < HS; d += L) {
                    FloatVector kd = FloatVector.fromArray(S, k, kb + d);
                    a = FloatVector.fromArray(S, q, qa + d).fma(kd, a);
                    c = FloatVector.fromArray(S, q, qb + d).fma(kd, c);
                }
                p[(h + g) * Tcap + s] = scale * (VectorOps.sumHalves(a) + 0f);
                p[(h + g + 1) * Tcap + s] = scale * (VectorOps.sumHalves(c) + 0f);
            }
            if (g < G) {
                int qa = (h + g) * HS;
                FloatVector a = FloatVector.zero(S);
                for (int d = 0; d < HS; d += L) a = FloatVector.fromArray(S, q, qa + d).fma(FloatVector.fromArray(S, k, kb + d), a);
                p[(h + g) * Tcap + s] = scale * (VectorOps.sumHalves(a) + 0f);
            }
        }
    }

    /// dst[o + i] = the float value of the IEEE half src[so + i], i < n (a plain loop: C2 compiles it to the hardware
    /// conversion, a vector at a time); also the float16 KV cache's conversion for a prompt's forward.
    public static void halfToFloat(short[] src, int so, float[] dst, int o, int n) {
        for (int i = 0; i < n; i++) dst[o + i] = Float.float16ToFloat(src[so + i]);
    }

    private static void scores2(float[] p, int po, int Tcap, float[] q, int qo, float[] k, int ko, int kvStride, int keys, int HS, float scale) {
        int L = S.length();
        for (int s = 0, kr = ko; s < keys; s++, kr += kvStride) {
            FloatVector a = FloatVector.zero(S), c = a;
            for (int d = 0; d < HS; d += L) {
                FloatVector kv = FloatVector.fromArray(S, k, kr + d);
                a = FloatVector.fromArray(S, q, qo + d).fma(kv, a);
                c = FloatVector.fromArray(S, q, qo + HS + d).fma(kv, c);
            }
            p[po + s] = scale * (VectorOps.sumHalves(a) + 0f);
            p[po + Tcap + s] = scale * (VectorOps.sumHalves(c) + 0f);
        }
    }

    private static void scores1(float[] p, int po, float[] q, int qo, float[] k, int ko, int kvStride, int keys, int HS, float scale) {
        int L = S.length();
        for (int s = 0, kr = ko; s < keys; s++, kr += kvStride) {
            FloatVector a = FloatVector.zero(S);
            for (int d = 0; d < HS; d += L) a = FloatVector.fromArray(S, q, qo + d).fma(FloatVector.fromArray(S, k, kr + d), a);
            p[po + s] = scale * (VectorOps.sumHalves(a) + 0f);
        }
    }

    private static void values2(float[] out, int oo, float[] p, int po, int Tcap, float[] v, int ko, int kvStride, int keys, int HS) {
        values2(false, out, oo, p, po, Tcap, v, ko, kvStride, keys, HS);
    }

    /// `carry`: the chains continue from out's values (a block of keys after earlier ones: the same operations as one
    /// pass, a float's store and load being exact), else they start from zero.
    private static void values2(boolean carry, float[] out, int oo, float[] p, int po, int Tcap, float[] v, int ko, int kvStride, int keys, int HS) {
        int L = S.length();
        for (int d = 0; d < HS; d += 4 * L) {
            FloatVector a0 = FloatVector.zero(S), a1 = a0, a2 = a0, a3 = a0, c0 = a0, c1 = a0, c2 = a0, c3 = a0;
            if (carry) {
                a0 = FloatVector.fromArray(S, out, oo + d); a1 = FloatVector.fromArray(S, out, oo + d + L);
                a2 = FloatVector.fromArray(S, out, oo + d + 2 * L); a3 = FloatVector.fromArray(S, out, oo + d + 3 * L);
                c0 = FloatVector.fromArray(S, out, oo + HS + d); c1 = FloatVector.fromArray(S, out, oo + HS + d + L);
                c2 = FloatVector.fromArray(S, out, oo + HS + d + 2 * L); c3 = FloatVector.fromArray(S, out, oo + HS + d + 3 * L);
            }
            for (int s = 0, vr = ko + d; s < keys; s++, vr += kvStride) {
                FloatVector v0 = FloatVector.fromArray(S, v, vr), v1 = FloatVector.fromArray(S, v, vr + L);
                FloatVector v2 = FloatVector.fromArray(S, v, vr + 2 * L), v3 = FloatVector.fromArray(S, v, vr + 3 * L);
                FloatVector ps = FloatVector.broadcast(S, p[po + s]), pt = FloatVector.broadcast(S, p[po + Tcap + s]);
                a0 = v0.fma(ps, a0); a1 = v1.fma(ps, a1); a2 = v2.fma(ps, a2); a3 = v3.fma(ps, a3);
                c0 = v0.fma(pt, c0); c1 = v1.fma(pt, c1); c2 = v2.fma(pt, c2); c3 = v3.fma(pt, c3);
            }
            a0.intoArray(out, oo + d); a1.intoArray(out, oo + d + L); a2.intoArray(out, oo + d + 2 * L); a3.intoArray(out, oo + d + 3 * L);
            c0.intoArray(out, oo + HS + d); c1.intoArray(out, oo + HS + d + L); c2.intoArray(out, oo + HS + d + 2 * L); c3.intoArray(out, oo + HS + d + 3 * L);
        }
    }

    /// out[oo + d] = Σ_s p_s·v_s[d] for d below `dEnd` (a multiple of 4 vector chunks), four chains a block over s in order.
    private static void values1(float[] out, int oo, float[] p, int po, float[] v, int ko, int kvStride, int keys, int dEnd) {
        values1(false, out, oo, p, po, v, ko, kvStride, keys, dEnd);
    }

    /// `carry`: as [#values2(boolean, float[], int, float[], int, int, float[], int, int, int, int)].
    private static void values1(boolean carry, float[] out, int oo, float[] p, int po, float[] v, int ko, int kvStride, int keys, int dEnd) {
        int L = S.length();
        for (int d = 0; d < dEnd; d += 4 * L) {
            FloatVector a0 = FloatVector.zero(S), a1 = a0, a2 = a0, a3 = a0;
            if (carry) {
                a0 = FloatVector.fromArray(S, out, oo + d); a1 = FloatVector.fromArray(S, out, oo + d + L);
                a2 = FloatVector.fromArray(S, out, oo + d + 2 * L); a3 = FloatVector.fromArray(S, out, oo + d + 3 * L);
            }
            for (int s = 0, vr = ko + d; s < keys; s++, vr += kvStride) {
                FloatVector ps = FloatVector.broadcast(S, p[po + s]);
                a0 = FloatVector.fromArray(S, v, vr).fma(ps, a0);
                a1 = FloatVector.fromArray(S, v, vr + L).fma(ps, a1);
                a2 = FloatVector.fromArray(S, v, vr + 2 * L).fma(ps, a2);
                a3 = FloatVector.fromArray(S, v, vr + 3 * L).fma(ps, a3);
            }
            a0.intoArray(out, oo + d); a1.intoArray(out, oo + d + L); a2.intoArray(out, oo + d + 2 * L); a3.intoArray(out, oo + d + 3 * L);
        }
    }

    /// The j-th block in the order 0, nb−1, 1, nb−2, …: neighbours pair a short causal prefix with a long one.
    static int paired(int j, int nb) { return (j & 1) == 0 ? j >> 1 : nb - 1 - (j >> 1); }

    /// Query rows [t0, t0 + BR) of head (b, h): probabilities into att's rows at `po` (row stride Tcap, zero from each
    /// row's causal end up to `fillTo`), then out = P·v. `cold`: on the scalar twins ([#scoresScalar] where `gemm`
    /// routes q·kᵀ to the Java GEMM, [#softmaxRowScalar], [#panelScalar]).
    private static void forwardBlock(boolean cold, Gemm gemm, int bh, int t0, float[] out, float[] att, int po, int fillTo, float[] q, float[] k, float[] v,
                                     int T, int Tcap, int NH, int KVH, int HS, int pos0) {
        int qStride = NH * HS, kvStride = KVH * HS;
        float scale = (float) (1.0 / Math.sqrt(HS));
        int b = bh / NH, h = bh % NH, kh = h / (NH / KVH);
        int ko = b * Tcap * kvStride + kh * HS;
        int t1 = Math.min(T, t0 + BR), rows = t1 - t0, keys = pos0 + t1;
        int qo = (b * T + t0) * qStride + h * HS;
        Gemm g = gemm.routed(false, true, rows, keys, HS);
        if (cold && g == VectorGemm.INSTANCE && rows > 1 && keys > 1 && HS <= VectorGemm.KC)
            scoresScalar(rows, keys, HS, scale, q, qo, qStride, k, ko, kvStride, att, po, Tcap);
        else g.sgemm(false, true, rows, keys, HS, scale, q, qo, qStride, k, ko, kvStride, 0f, att, po, Tcap);
        if (cold) {
            for (int t = t0; t < t1; t++) softmaxRowScalar(att, po + (t - t0) * Tcap, pos0 + t + 1, fillTo);
            panelScalar(rows, HS, keys, att, po, Tcap, v, ko, kvStride, out, qo, qStride);
            return;
        }
        for (int t = t0; t < t1; t++) softmaxRow(att, po + (t - t0) * Tcap, pos0 + t + 1, fillTo);
        PANEL.sgemm(false, false, rows, HS, keys, 1f, att, po, Tcap, v, ko, kvStride, 0f, out, qo, qStride);
    }

    /// The vector path of a prompt's blocks (the Java GEMM's scores, [#softmaxRow], PanelGemm's P·v), cold at a
    /// process's start: a prompt's first forward runs their scalar twins, which give the same bits (SmolLM2-135M's
    /// 5-token first forward spent 88-140 ms in its 30 layers' attention, the Vector API code running uncompiled).
    /// Warm-up (training and scoring; the generator opens the gate after its first step): the softmax and P·v of one
    /// block of 16 query rows over 64 keys, head size 64, about 10 µs once compiled.
    private static final ColdStart.Gate GATE = ColdStart.gate("attention", new Runnable() {
        final int rows = 16, keys = 64, hs = 64;
        final float[] att = new float[rows * keys], v = new float[keys * hs], out = new float[rows * hs];
        public void run() {
            for (int t = 0; t < rows; t++) softmaxRow(att, t * keys, keys, keys);
            PANEL.sgemm(false, false, rows, hs, keys, 1f, att, 0, keys, v, 0, hs, 0f, out, 0, hs);
        }
    }, 40_000);

    /// The Java GEMM's scores c = scale·(q·kᵀ) as it sums them for at least two rows and two keys and a head of at
    /// most [VectorGemm#KC] (one depth block): each element one FMA chain in ascending depth, then times `scale`.
    /// q: (rows, HS) at qo, row stride qs.   k: (keys, HS) at ko, row stride ks.   c: (rows, keys) at co, row stride cs
    static void scoresScalar(int rows, int keys, int HS, float scale, float[] q, int qo, int qs, float[] k, int ko, int ks,
                             float[] c, int co, int cs) {
        for (int i = 0; i < rows; i++)
            for (int j = 0; j < keys; j++) {
                float acc = 0f;
                for (int d = 0; d < HS; d++) acc = Math.fma(q[qo + i * qs + d], k[ko + j * ks + d], acc);
                c[co + i * cs + j] = scale * acc;
            }
    }

    /// The scalar twin of [#softmaxRow]: the maximum (exact in any order), the exponentials and their sum as
    /// [Exp#expShiftSum] adds them ([Exp#expShiftSumScalar]), the same products by the sum's inverse.
    static void softmaxRowScalar(float[] x, int o, int len, int cap) {
        float max = Float.NEGATIVE_INFINITY;
        for (int i = 0; i < len; i++) max = Math.max(max, x[o + i]);
        float inv = 1f / Exp.expShiftSumScalar(x, o, len, max);
        for (int i = 0; i < len; i++) x[o + i] *= inv;
        java.util.Arrays.fill(x, o + len, o + cap, 0f);
    }

    /// PanelGemm's P·v as it sums (C = A·B, alpha 1, beta 0): each element one FMA chain in ascending k (a row of C
    /// at a time, its chains side by side).
    /// a: (m, k) at ao, row stride lda.   b: (k, n) at bo, row stride ldb.   c: (m, n) at co, row stride ldc
    static void panelScalar(int m, int n, int k, float[] a, int ao, int lda, float[] b, int bo, int ldb, float[] c, int co, int ldc) {
        float[] acc = new float[n];
        for (int i = 0; i < m; i++) {
            java.util.Arrays.fill(acc, 0f);
            for (int p = 0; p < k; p++) {
                float x = a[ao + i * lda + p];
                for (int j = 0; j < n; j++) acc[j] = Math.fma(x, b[bo + p * ldb + j], acc[j]);
            }
            for (int j = 0; j < n; j++) c[co + i * ldc + j] = 1f * acc[j];
        }
    }

    /// In place over x[o, o + len): softmax; x[o + len, o + cap) = 0 (the masked keys).
    static void softmaxRow(float[] x, int o, int len, int cap) {
        int n = S.loopBound(len), i = 0;
        FloatVector vmax = FloatVector.broadcast(S, Float.NEGATIVE_INFINITY);
        for (; i < n; i += S.length()) vmax = vmax.max(FloatVector.fromArray(S, x, o + i));
        float max = vmax.reduceLanes(VectorOperators.MAX);
        for (; i < len; i++) max = Math.max(max, x[o + i]);
        // Exp, not VectorOperators.EXP: the same bits in every JIT state (reproducible training, see Exp)
        float sum = Exp.expShiftSum(x, o, len, max);
        float inv = 1f / sum;
        for (i = 0; i < n; i += S.length()) FloatVector.fromArray(S, x, o + i).mul(inv).intoArray(x, o + i);
        for (; i < len; i++) x[o + i] *= inv;
        java.util.Arrays.fill(x, o + len, o + cap, 0f);
    }

    /// The floats [#backward] needs as scratch: per (batch, head) a private dk and dv, (T, HS) each, and a (BR, T)
    /// dP block (one per task chunk; there are at most B·NH chunks).
    public static int backwardScratchSize(int B, int T, int NH, int HS) {
        return B * NH * (2 * T * HS + BR * T);
    }

    /// As [#backward(float[], float[], float[], float[], float[], float[], float[], float[], int, int, int, int, int, float[])],
    /// allocating its scratch.
    public static void backward(float[] dq, float[] dk, float[] dv, float[] dout, float[] att,
                                float[] q, float[] k, float[] v, int B, int T, int NH, int KVH, int HS) {
        backward(dq, dk, dv, dout, att, q, k, v, B, T, NH, KVH, HS, new float[backwardScratchSize(B, T, NH, HS)]);
    }

    /// Adds into dq, dk, dv (+=). Training layout: Tcap = T and pos0 = 0, so key s ≤ t for query t.
    /// dq, dout, q: (B, T, NH·HS)   dk, dv, k, v: (B, T, KVH·HS)
    /// att: (B, NH, T, T) saved by [#forward]; **overwritten with dS** (the probabilities are not needed afterwards).
    /// scratch: [#backwardScratchSize] floats, overwritten.
    /// The NH/KVH query heads of a key/value head write private dk, dv, added afterwards in head order, so the result
    /// does not depend on the thread count.
    public static void backward(float[] dq, float[] dk, float[] dv, float[] dout, float[] att,
                                float[] q, float[] k, float[] v, int B, int T, int NH, int KVH, int HS, float[] scratch) {
        backward(null, dq, dk, dv, dout, att, q, k, v, B, T, NH, KVH, HS, scratch);
    }

    /// As above, with the products on `gemm` as in [#forward(Gemm, float[], float[], float[], float[], float[], int, int, int, int, int, int, int)].
    /// Three passes over blocks of BR rows: by key block dv = Pᵀ·dout; by query block dP = dout·vᵀ, dS = P ⊙ (dP − Σ
    /// P⊙dP) written over P, dq += dS·k·scale; by key block dk = dSᵀ·q·scale.
    public static void backward(Gemm gemm, float[] dq, float[] dk, float[] dv, float[] dout, float[] att,
                                float[] q, float[] k, float[] v, int B, int T, int NH, int KVH, int HS, float[] scratch) {
        int group = NH / KVH, kvStride = KVH * HS;
        if (scratch.length < backwardScratchSize(B, T, NH, HS))
            throw new IllegalArgumentException("attention scratch holds " + scratch.length + " floats, needs " + backwardScratchSize(B, T, NH, HS));
        Gemm g = gemm == null ? GEMM : gemm;
        int nb = (T + BR - 1) / BR, items = B * NH * nb;
        int dvBase = B * NH * T * HS, dpBase = 2 * B * NH * T * HS;   // scratch: dk (B·NH, T, HS), dv (B·NH, T, HS), dP blocks
        // key blocks cost ~ nb − j, query blocks ~ i + 1: the paired order balances the chunks
        Parallel.range(items, i -> {
            int bh = i / nb, s0 = BR * paired(i % nb, nb);
            backwardKeyBlock(bh, s0, att, dout, 1f, scratch, dvBase, T, NH, HS);            // dv = Pᵀ·dout
        });
        int chunks = Math.min(Math.min(Parallel.threads(), items), B * NH);
        Parallel.chunks(items, chunks, (ci, from, to) -> {
            for (int i = from; i < to; i++)
                backwardQueryBlock(g, i / nb, BR * paired(i % nb, nb), dq, dout, att, k, v, T, NH, KVH, HS, scratch, dpBase + ci * BR * T);
        });
        float scale = (float) (1.0 / Math.sqrt(HS));
        Parallel.range(items, i -> {
            int bh = i / nb, s0 = BR * paired(i % nb, nb);
            backwardKeyBlock(bh, s0, att, q, scale, scratch, 0, T, NH, HS);                  // dk = dSᵀ·q·scale
        });
        Parallel.range(B * T, bt -> {
            int b = bt / T, t = bt % T;
            for (int kh = 0; kh < KVH; kh++) {
                int o = bt * kvStride + kh * HS;
                for (int h = kh * group; h < (kh + 1) * group; h++) {
                    int so = ((b * NH + h) * T + t) * HS;
                    for (int i = 0; i < HS; i++) {
                        dk[o + i] += scratch[so + i];
                        dv[o + i] += scratch[dvBase + so + i];
                    }
                }
            }
        });
    }

    /// Query rows [t0, t0 + BR) of one (b, h): dP = dout·vᵀ into the block scratch at `dpo` (over the causal prefix of
    /// keys), dS = P ⊙ (dP − Σ P⊙dP) over P's rows in att (P is 0 beyond the prefix, so dS is too), dq += dS·k·scale.
    private static void backwardQueryBlock(Gemm gemm, int bh, int t0, float[] dq, float[] dout, float[] att,
                                           float[] k, float[] v, int T, int NH, int KVH, int HS, float[] scratch, int dpo) {
        int qStride = NH * HS, kvStride = KVH * HS;
        float scale = (float) (1.0 / Math.sqrt(HS));
        int b = bh / NH, h = bh % NH, kh = h / (NH / KVH);
        int t1 = Math.min(T, t0 + BR), rows = t1 - t0, keys = t1;
        int ko = b * T * kvStride + kh * HS;
        int po = ((b * NH + h) * T + t0) * T, qo = (b * T + t0) * qStride + h * HS;
        gemm.sgemm(false, true, rows, keys, HS, 1f, dout, qo, qStride, v, ko, kvStride, 0f, scratch, dpo, T);
        for (int r = 0; r < rows; r++) softmaxBackwardRow(scratch, dpo + r * T, att, po + r * T, keys);
        PANEL.sgemm(false, false, rows, HS, keys, scale, att, po, T, k, ko, kvStride, 1f, dq, qo, qStride);
    }

    /// Keys [s0, s0 + BR) of one (b, h), over the queries that see them, [s0, T): out = alpha·Mᵀ·x into the head's
    /// private (T, HS) rows at `outBase` (overwritten), M = att's (T, T) rows of the head (P, or dS after pass 2).
    private static void backwardKeyBlock(int bh, int s0, float[] att, float[] x, float alpha,
                                         float[] scratch, int outBase, int T, int NH, int HS) {
        int qStride = NH * HS;
        int b = bh / NH, h = bh % NH;
        int s1 = Math.min(T, s0 + BR), keys = s1 - s0, queries = T - s0;
        int po = ((b * NH + h) * T + s0) * T + s0, xo = (b * T + s0) * qStride + h * HS;
        PANEL.sgemm(true, false, keys, HS, queries, alpha, att, po, T, x, xo, qStride, 0f, scratch, outBase + (bh * T + s0) * HS, HS);
    }

    /// p[po, po + n) ← p ⊙ (dp − Σ p⊙dp), over the probabilities (dp is read only).
    static void softmaxBackwardRow(float[] dp, int o, float[] p, int po, int n) {
        int m = S.loopBound(n), i = 0;
        FloatVector acc = FloatVector.zero(S);
        for (; i < m; i += S.length()) acc = FloatVector.fromArray(S, p, po + i).fma(FloatVector.fromArray(S, dp, o + i), acc);
        float sum = VectorOps.sumLanes(acc);   // fixed lane order, unlike reduceLanes(ADD)
        for (; i < n; i++) sum += p[po + i] * dp[o + i];
        FloatVector vs = FloatVector.broadcast(S, sum);
        for (i = 0; i < m; i += S.length())
            FloatVector.fromArray(S, dp, o + i).sub(vs).mul(FloatVector.fromArray(S, p, po + i)).intoArray(p, po + i);
        for (; i < n; i++) p[po + i] = p[po + i] * (dp[o + i] - sum);
    }

    /// The scalar twin of [#forward]: plain loops, one query row at a time.
    /// out, q: (B, T, NH·HS).   k, v: (B, Tcap, KVH·HS), the cache; query t (absolute position pos0 + t) attends to
    /// keys [0, pos0 + t].   att: (B, NH, T, Tcap) softmax probabilities kept for backward, or null.
    /// scratch is used only when att is null: (threads · Tcap) floats, or null to allocate per head.
    public static void forwardScalar(float[] out, float[] att, float[] q, float[] k, float[] v,
                               int B, int T, int Tcap, int NH, int KVH, int HS, int pos0) {
        int group = NH / KVH;
        int qStride = NH * HS, kvStride = KVH * HS;
        float scale = (float) (1.0 / Math.sqrt(HS));
        Parallel.range(B * NH, bh -> {
            int b = bh / NH, h = bh % NH, kh = h / group;
            float[] p = att != null ? null : new float[Tcap];
            for (int t = 0; t < T; t++) {
                int len = pos0 + t + 1;
                float[] probs = att != null ? att : p;
                int po = att != null ? ((b * NH + h) * T + t) * Tcap : 0;
                int qo = (b * T + t) * qStride + h * HS;
                float max = Float.NEGATIVE_INFINITY;
                for (int s = 0; s < len; s++) {
                    int ko = (b * Tcap + s) * kvStride + kh * HS;
                    float dot = 0f;
                    for (int i = 0; i < HS; i++) dot += q[qo + i] * k[ko + i];
                    dot *= scale;
                    probs[po + s] = dot;
                    if (dot > max) max = dot;
                }
                float sum = 0f;
                for (int s = 0; s < len; s++) {
                    float e = (float) Math.exp(probs[po + s] - max);
                    probs[po + s] = e;
                    sum += e;
                }
                float inv = 1f / sum;
                for (int s = 0; s < len; s++) probs[po + s] *= inv;
                if (att != null) for (int s = len; s < Tcap; s++) probs[po + s] = 0f;
                int oo = (b * T + t) * qStride + h * HS;
                for (int i = 0; i < HS; i++) out[oo + i] = 0f;
                for (int s = 0; s < len; s++) {
                    float w = probs[po + s];
                    int vo = (b * Tcap + s) * kvStride + kh * HS;
                    for (int i = 0; i < HS; i++) out[oo + i] += w * v[vo + i];
                }
            }
        });
    }

    /// The scalar twin of [#backward].
    /// Adds into dq, dk, dv (+=). Training layout: Tcap = T and pos0 = 0, so key s ≤ t for query t.
    /// dq, dout, q: (B, T, NH·HS)   dk, dv, k, v: (B, T, KVH·HS)   att: (B, NH, T, T) saved by [#forward].
    /// GQA: dk and dv of key/value head kh sum over its NH/KVH query heads. Work is split by (b, kh), so every
    /// output element is written by one task in a fixed order: the result does not depend on the thread count.
    /// Allocates one (T) scratch row per task.
    public static void backwardScalar(float[] dq, float[] dk, float[] dv, float[] dout, float[] att,
                                float[] q, float[] k, float[] v, int B, int T, int NH, int KVH, int HS) {
        int group = NH / KVH;
        int qStride = NH * HS, kvStride = KVH * HS;
        float scale = (float) (1.0 / Math.sqrt(HS));
        Parallel.range(B * KVH, bkh -> {
            int b = bkh / KVH, kh = bkh % KVH;
            float[] dp = new float[T];                       // dP row, then dS row
            for (int h = kh * group; h < (kh + 1) * group; h++)
                for (int t = 0; t < T; t++) {
                    int len = t + 1;
                    int po = ((b * NH + h) * T + t) * T;
                    int oo = (b * T + t) * qStride + h * HS;
                    // out = P·v  →  dP = dout·vᵀ,  dv += Pᵀ·dout
                    float sumPdP = 0f;
                    for (int s = 0; s < len; s++) {
                        int vo = (b * T + s) * kvStride + kh * HS;
                        float p = att[po + s], d = 0f;
                        for (int i = 0; i < HS; i++) {
                            d += dout[oo + i] * v[vo + i];
                            dv[vo + i] += p * dout[oo + i];
                        }
                        dp[s] = d;
                        sumPdP += p * d;
                    }
                    // P = softmax(S)  →  dS = P ⊙ (dP − Σ P⊙dP)
                    for (int s = 0; s < len; s++) dp[s] = att[po + s] * (dp[s] - sumPdP);
                    // S = q·kᵀ·scale  →  dq += dS·k·scale,  dk += dSᵀ·q·scale
                    int qo = oo;
                    for (int s = 0; s < len; s++) {
                        int ko = (b * T + s) * kvStride + kh * HS;
                        float ds = dp[s] * scale;
                        for (int i = 0; i < HS; i++) {
                            dq[qo + i] += ds * k[ko + i];
                            dk[ko + i] += ds * q[qo + i];
                        }
                    }
                }
        });
    }
}
