package org.peft4j.model.layers;

import org.peft4j.core.DType;
import org.peft4j.model.weights.DenseHalf;

/// Token embedding lookup: out[n] = wte[tokens[n]], and its scatter-add backward.   Reference: torch.nn.Embedding.
/// With tied weights (`tie_word_embeddings`) wte is also the lm_head weight: see [#backward] for how the two uses add.
public final class Embedding {
    private Embedding() {}

    /// out: (N, C)   tokens: (N)   wte: (V, C)
    public static void forward(float[] out, int[] tokens, float[] wte, int N, int C) {
        for (int n = 0; n < N; n++) System.arraycopy(wte, tokens[n] * C, out, n * C, C);
    }

    /// The same lookup in a frozen 16-bit (BF16 or F16) table, each row converted exactly to float32.
    /// out: (N, C)   tokens: (N)   wte: (V, C) little-endian bit patterns of `dtype` ([DenseHalf#data])
    public static void forward(float[] out, int[] tokens, DType dtype, java.lang.foreign.MemorySegment wte, int N, int C) {
        for (int n = 0; n < N; n++) DenseHalf.toFloat(dtype, wte, (long) tokens[n] * C, out, n * C, C);
    }

    /// dwte[tokens[n]] += dout[n]. Adds into dwte (+=); a token that appears twice gets both rows' gradients.
    /// Sequential in n, so repeated tokens always add in the same order (deterministic).
    ///
    /// Tied lm_head: the tied weight's gradient is the sum of both uses. The caller passes the same dwte array to
    /// `Linear.backwardWeight(gemm, dwte, null, dLogits, xFinal, N, C, V)` (which adds dLogitsᵀ·x) and to this
    /// method; the order does not matter mathematically, by convention lm_head first since backward runs in reverse.
    /// With a frozen embedding, skip this call entirely (there is no dwte).
    ///
    /// dwte: (V, C)   dout: (N, C)   tokens: (N)
    public static void backward(float[] dwte, float[] dout, int[] tokens, int N, int C) {
        for (int n = 0; n < N; n++) {
            int wo = tokens[n] * C, o = n * C;
            for (int i = 0; i < C; i++) dwte[wo + i] += dout[o + i];
        }
    }
}
