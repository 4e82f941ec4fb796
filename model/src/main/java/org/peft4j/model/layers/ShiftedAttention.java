package org.peft4j.model.layers;

import org.peft4j.core.Gemm;
import org.peft4j.core.Parallel;
import org.peft4j.core.Peft4jException.ConfigException;

import java.util.Arrays;

/// LongLoRA's shifted sparse attention (S²-Attn), a training-only replacement of [Attention]: the sequence is cut into
/// [#GROUPS] groups of g = T/4 tokens (LongLoRA's `group_size_ratio` 1/4) and each query attends causally within its
/// group only; the upper half of the query heads (h ≥ NH/2) has q, k and v rolled by −g/2 along the whole sequence
/// first, so its groups straddle the lower half's group boundaries, and its output is rolled back by +g/2.
/// Inference keeps full attention (LongLoRA and LLaMA-Factory patch only `self.training` forwards).
///
/// Reference: LongLoRA `llama_attn_replace.py`, `forward_noflashattn` (dvlab-research/LongLoRA):
/// `qkv[:, NH/2:] = qkv[:, NH/2:].roll(-g/2, dims=2)`, reshape (B, NH, T, HS) → (B·G, NH, g, HS), causal softmax
/// attention per group, then `out[:, :, NH/2:] = out[:, :, NH/2:].roll(g/2, dims=1)` on (B, T, NH, HS).
/// - The roll runs over the **whole sequence** (LongLoRA), so the shifted heads' last group holds the sequence's last
///   g/2 tokens followed by its first g/2, and those first tokens attend to the last ones (LongLoRA's wrap-around,
///   kept as it is; in a right-padded row the last ones are padding, as in LongLoRA). LLaMA-Factory's copy (`model_utils/longlora.py`) rolls the output back inside each (g)-long group
///   (its `attn_output.reshape(...)` is not assigned), which does not undo the shift; we follow LongLoRA.
/// - GQA: LongLoRA shifts k and v after `repeat_kv`, i.e. per query head. When the shifted query heads NH/2.. are
///   exactly the query heads of the key/value heads KVH/2.. ((NH/2) divisible by NH/KVH), those key/value heads are
///   shifted in place of the copies; otherwise k and v are expanded to NH heads ([#kvHeads]).
///
/// (B, T, H·HS) is (B·G, g, H·HS) with no copy, so after the roll the groups are [Attention]'s rows: its blocked fast
/// path runs on B·G sequences of g tokens (about a quarter of the causal T×T products), and its backward likewise.
/// The roll and its adjoint are copies of O(T·H·HS). [#forwardScalar]/[#backwardScalar] are the plain-loop twins:
/// one masked softmax per query over the original positions, no roll.
public final class ShiftedAttention {
    private ShiftedAttention() {}

    /// Groups per sequence: LongLoRA's and LLaMA-Factory's group_size_ratio of 1/4.
    public static final int GROUPS = 4;
    /// The sequence length must be a multiple of this: four groups of an even size (the shift g/2 is whole, and the
    /// roll back is the exact inverse); LLaMA-Factory's training collator pads to a multiple of 8 too.
    public static final int MULTIPLE = 2 * GROUPS;

    /// Refuses a length S²-Attn cannot split.
    public static void check(int T) {
        if (T < MULTIPLE || T % MULTIPLE != 0)
            throw new ConfigException("shift_attn splits a sequence into " + GROUPS + " groups of an even size, so its length must be a multiple of "
                    + MULTIPLE + "; got " + T + " (the trainer pads batches to a multiple of " + MULTIPLE + ")");
    }

    /// Key/value heads of the rolled k and v: KVH when the shifted query heads are exactly those of the upper half of
    /// the key/value heads, else NH (each query head its own copy, as `repeat_kv`).
    public static int kvHeads(int NH, int KVH) { return (NH / 2) % (NH / KVH) == 0 ? KVH : NH; }

    /// Floats of each rolled buffer [#forward] and [#backward] take: {q and out, k and v} for (B, T).
    public static int[] scratchSizes(int B, int T, int NH, int KVH, int HS) {
        return new int[] {Math.multiplyExact(B * T, NH * HS), Math.multiplyExact(B * T, kvHeads(NH, KVH) * HS)};
    }

    /// out = S²-Attn(q, k, v).   out, q: (B, T, NH·HS)   k, v: (B, T, KVH·HS), q and k already rotated (positions are
    /// the original ones, as LongLoRA applies RoPE before the shift).   att: (B·G, NH, g, g) probabilities kept for
    /// backward (B·NH·T·g floats).   qs, ys: (B, T, NH·HS) scratch; ks, vs: (B, T, kvHeads·HS) scratch.
    public static void forward(Gemm gemm, float[] out, float[] att, float[] q, float[] k, float[] v,
                               float[] qs, float[] ks, float[] vs, float[] ys, int B, int T, int NH, int KVH, int HS) {
        check(T);
        int g = T / GROUPS, KV2 = kvHeads(NH, KVH);
        roll(qs, q, B, T, NH, NH, HS, g / 2);
        roll(ks, k, B, T, KV2, KVH, HS, g / 2);
        roll(vs, v, B, T, KV2, KVH, HS, g / 2);
        Attention.forward(gemm, ys, att, qs, ks, vs, B * GROUPS, g, g, NH, KV2, HS, 0);
        rollBack(out, ys, false, B, T, NH, NH, HS, g / 2);
    }

    /// Adds into dq, dk, dv (+=). att: [#forward]'s, overwritten (as [Attention#backward]); q, k, v: the forward's
    /// inputs (rolled again here, so the scratch may have served other layers since). qs, ks, vs, ys, dqs, dks, dvs:
    /// scratch of [#scratchSizes]; attScratch: [Attention#backwardScratchSize] of (B, T).
    public static void backward(Gemm gemm, float[] dq, float[] dk, float[] dv, float[] dout, float[] att, float[] q, float[] k, float[] v,
                                float[] qs, float[] ks, float[] vs, float[] ys, float[] dqs, float[] dks, float[] dvs, float[] attScratch,
                                int B, int T, int NH, int KVH, int HS) {
        check(T);
        int g = T / GROUPS, KV2 = kvHeads(NH, KVH), nq = B * T * NH * HS, nkv = B * T * KV2 * HS;
        roll(qs, q, B, T, NH, NH, HS, g / 2);
        roll(ks, k, B, T, KV2, KVH, HS, g / 2);
        roll(vs, v, B, T, KV2, KVH, HS, g / 2);
        roll(ys, dout, B, T, NH, NH, HS, g / 2);              // out = roll⁻¹(ys)  →  dys = roll(dout)
        Arrays.fill(dqs, 0, nq, 0f);
        Arrays.fill(dks, 0, nkv, 0f);
        Arrays.fill(dvs, 0, nkv, 0f);
        Attention.backward(gemm, dqs, dks, dvs, ys, att, qs, ks, vs, B * GROUPS, g, NH, KV2, HS, attScratch);
        rollBack(dq, dqs, true, B, T, NH, NH, HS, g / 2);     // xs = roll(x)  →  dx += rollᵀ(dxs)
        rollBack(dk, dks, true, B, T, KV2, KVH, HS, g / 2);
        rollBack(dv, dvs, true, B, T, KV2, KVH, HS, g / 2);
    }

    /// dst (B, T, Hd·HS) ← src (B, T, Hs·HS), Hd ≥ Hs: dst head j reads src head j·Hs/Hd, at (t + shift) mod T when
    /// j ≥ Hd/2 (a shifted head: torch `roll(-shift)`), else at t.
    static void roll(float[] dst, float[] src, int B, int T, int Hd, int Hs, int HS, int shift) {
        Parallel.range(B * T, bt -> {
            int b = bt / T, t = bt % T, ts = (t + shift) % T;
            for (int j = 0; j < Hd; j++) {
                int from = ((b * T + (j >= Hd / 2 ? ts : t)) * Hs + j * Hs / Hd) * HS;
                System.arraycopy(src, from, dst, (bt * Hd + j) * HS, HS);
            }
        });
    }

    /// The adjoint of [#roll]: dst (B, T, Hs·HS) (+)= the sum over the src heads j (B, T, Hd·HS) that read it, each from
    /// (t − shift) mod T when shifted (torch `roll(+shift)`). With Hd = Hs it is the inverse permutation (the roll
    /// back of the output). Pulls per destination row and adds heads in order: deterministic at any thread count.
    static void rollBack(float[] dst, float[] src, boolean accumulate, int B, int T, int Hd, int Hs, int HS, int shift) {
        Parallel.range(B * T, bt -> {
            int b = bt / T, t = bt % T, ts = (t - shift + T) % T;
            if (!accumulate) Arrays.fill(dst, bt * Hs * HS, (bt + 1) * Hs * HS, 0f);
            for (int j = 0; j < Hd; j++) {
                int from = ((b * T + (j >= Hd / 2 ? ts : t)) * Hd + j) * HS, to = (bt * Hs + j * Hs / Hd) * HS;
                for (int i = 0; i < HS; i++) dst[to + i] += src[from + i];
            }
        });
    }

    /// Whether query position t of query head h sees key position s (original positions): both in the same group
    /// after the head's roll, and s not after t there.
    static boolean visible(int h, int NH, int t, int s, int T) {
        int g = T / GROUPS, shift = h >= NH / 2 ? g / 2 : 0;
        int rt = (t - shift + T) % T, rs = (s - shift + T) % T;   // rolled index: x_rolled[i] = x[(i + shift) mod T]
        return rt / g == rs / g && rs <= rt;
    }

    /// The scalar twin of [#forward]: per (b, h, t) a softmax over the keys [#visible] from t, in original positions.
    /// att: (B, NH, T, T), zero where not visible.
    public static void forwardScalar(float[] out, float[] att, float[] q, float[] k, float[] v, int B, int T, int NH, int KVH, int HS) {
        check(T);
        int qStride = NH * HS, kvStride = KVH * HS;
        float scale = (float) (1.0 / Math.sqrt(HS));
        Parallel.range(B * NH, bh -> {
            int b = bh / NH, h = bh % NH, kh = h / (NH / KVH);
            for (int t = 0; t < T; t++) {
                int po = (bh * T + t) * T, qo = (b * T + t) * qStride + h * HS;
                float max = Float.NEGATIVE_INFINITY;
                for (int s = 0; s < T; s++) {
                    att[po + s] = 0f;
                    if (!visible(h, NH, t, s, T)) continue;
                    int ko = (b * T + s) * kvStride + kh * HS;
                    float dot = 0f;
                    for (int i = 0; i < HS; i++) dot += q[qo + i] * k[ko + i];
                    att[po + s] = dot * scale;
                    max = Math.max(max, dot * scale);
                }
                float sum = 0f;
                for (int s = 0; s < T; s++)
                    if (visible(h, NH, t, s, T)) { att[po + s] = (float) Math.exp(att[po + s] - max); sum += att[po + s]; }
                for (int s = 0; s < T; s++) att[po + s] /= sum;
                for (int i = 0; i < HS; i++) out[qo + i] = 0f;
                for (int s = 0; s < T; s++) {
                    float p = att[po + s];
                    if (p == 0f) continue;
                    int vo = (b * T + s) * kvStride + kh * HS;
                    for (int i = 0; i < HS; i++) out[qo + i] += p * v[vo + i];
                }
            }
        });
    }

    /// The scalar twin of [#backward], adding into dq, dk, dv (+=); att: [#forwardScalar]'s (B, NH, T, T).
    /// dv += Pᵀ·dout, dS = P ⊙ (dP − Σ P⊙dP), dq += dS·k/√HS, dk += dSᵀ·q/√HS over the visible keys; one task per
    /// (b, key/value head), its query heads in order.
    public static void backwardScalar(float[] dq, float[] dk, float[] dv, float[] dout, float[] att, float[] q, float[] k, float[] v,
                                      int B, int T, int NH, int KVH, int HS) {
        int group = NH / KVH, qStride = NH * HS, kvStride = KVH * HS;
        float scale = (float) (1.0 / Math.sqrt(HS));
        Parallel.range(B * KVH, bkh -> {
            int b = bkh / KVH, kh = bkh % KVH;
            float[] dp = new float[T];
            for (int h = kh * group; h < (kh + 1) * group; h++)
                for (int t = 0; t < T; t++) {
                    int po = ((b * NH + h) * T + t) * T, qo = (b * T + t) * qStride + h * HS;
                    float sum = 0f;
                    for (int s = 0; s < T; s++) {
                        dp[s] = 0f;
                        if (!visible(h, NH, t, s, T)) continue;
                        int vo = (b * T + s) * kvStride + kh * HS;
                        for (int i = 0; i < HS; i++) {
                            dp[s] += dout[qo + i] * v[vo + i];
                            dv[vo + i] += att[po + s] * dout[qo + i];
                        }
                        sum += att[po + s] * dp[s];
                    }
                    for (int s = 0; s < T; s++) {
                        if (!visible(h, NH, t, s, T)) continue;
                        float ds = att[po + s] * (dp[s] - sum) * scale;
                        int ko = (b * T + s) * kvStride + kh * HS;
                        for (int i = 0; i < HS; i++) {
                            dq[qo + i] += ds * k[ko + i];
                            dk[ko + i] += ds * q[qo + i];
                        }
                    }
                }
        });
    }
}
