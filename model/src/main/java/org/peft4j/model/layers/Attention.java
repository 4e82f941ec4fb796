package org.peft4j.model.layers;

import org.peft4j.core.Parallel;

/// Grouped-query causal self-attention on already-rotated q and k:
/// out = softmax(q·kᵀ/√HS + causal mask)·v, query head h reads key/value head h / (NH/KVH).
/// Reference: HF `eager_attention_forward` with `repeat_kv`.
/// Backward (training: Tcap = T, pos0 = 0), per query row t with P = att[t], dP = dout·vᵀ:
/// dv += Pᵀ·dout,  dS = P ⊙ (dP − Σ P⊙dP),  dq += dS·k/√HS,  dk += dSᵀ·q/√HS.
public final class Attention {
    private Attention() {}

    /// out, q: (B, T, NH·HS).   k, v: (B, Tcap, KVH·HS), the cache; query t (absolute position pos0 + t) attends to
    /// keys [0, pos0 + t].   att: (B, NH, T, Tcap) softmax probabilities kept for backward, or null.
    /// scratch is used only when att is null: (threads · Tcap) floats, or null to allocate per head.
    public static void forward(float[] out, float[] att, float[] q, float[] k, float[] v,
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

    /// Adds into dq, dk, dv (+=). Training layout: Tcap = T and pos0 = 0, so key s ≤ t for query t.
    /// dq, dout, q: (B, T, NH·HS)   dk, dv, k, v: (B, T, KVH·HS)   att: (B, NH, T, T) saved by [#forward].
    /// GQA: dk and dv of key/value head kh sum over its NH/KVH query heads. Work is split by (b, kh), so every
    /// output element is written by one task in a fixed order: the result does not depend on the thread count.
    /// Allocates one (T) scratch row per task.
    public static void backward(float[] dq, float[] dk, float[] dv, float[] dout, float[] att,
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
