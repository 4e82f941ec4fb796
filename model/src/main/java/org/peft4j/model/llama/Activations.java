package org.peft4j.model.llama;

import org.peft4j.model.LlamaConfig;

/// Scratch buffers of one forward pass over (B, Tmax) tokens, allocated once and reused for every call with T ≤ Tmax
/// (prefill uses T = prompt length, decode T = 1). Shapes use N = B·T rows.
public final class Activations {
    public final int B, Tmax;
    final float[] x;        // (N, C) residual stream
    final float[] xn;       // (N, C) normalized input of a sub-block
    final float[] q;        // (N, NH·HS)
    final float[] k, v;     // (N, KVH·HS) this call's keys and values, before they are copied into the cache
    final float[] att;      // (N, NH·HS) attention output
    final float[] proj;     // (N, C) o_proj / down_proj output
    final float[] gate, up; // (N, F)
    final float[] last;     // (B, C) last position of each row, for last-only logits
    final float[] probs;    // (B, NH, Tmax, capacity) attention probabilities, or (B, NH, 1, capacity) when that would pass
                            // PROBS_LIMIT floats (then a long prefill takes Attention's scalar path, which needs none)

    /// Largest probability buffer planned for prefill (128 MiB): beyond it prefill attention runs row by row.
    static final long PROBS_LIMIT = 32L << 20;

    public Activations(LlamaConfig c, int B, int Tmax, int capacity) {
        this.B = B; this.Tmax = Tmax;
        int N = B * Tmax, C = c.hiddenSize(), F = c.intermediateSize();
        x = new float[N * C]; xn = new float[N * C];
        q = new float[N * c.qDim()]; att = new float[N * c.qDim()];
        k = new float[N * c.kvDim()]; v = new float[N * c.kvDim()];
        proj = new float[N * C];
        gate = new float[N * F]; up = new float[N * F];
        last = new float[B * C];
        long full = (long) B * c.numAttentionHeads() * Tmax * capacity;
        probs = new float[Math.toIntExact(full <= PROBS_LIMIT ? full : (long) B * c.numAttentionHeads() * capacity)];
    }
}
