package org.peft4j.model.layers;

import org.peft4j.core.Parallel;

/// Grouped-query causal self-attention on already-rotated q and k:
/// out = softmax(q·kᵀ/√HS + causal mask)·v, query head h reads key/value head h / (NH/KVH).
/// Reference: HF `eager_attention_forward` with `repeat_kv`.
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
}
