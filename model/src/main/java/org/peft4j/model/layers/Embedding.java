package org.peft4j.model.layers;

/// Token embedding lookup: out[n] = wte[tokens[n]].   Reference: torch.nn.Embedding.
public final class Embedding {
    private Embedding() {}

    /// out: (N, C)   tokens: (N)   wte: (V, C)
    public static void forward(float[] out, int[] tokens, float[] wte, int N, int C) {
        for (int n = 0; n < N; n++) System.arraycopy(wte, tokens[n] * C, out, n * C, C);
    }
}
