package org.peft4j.model.layers;

/// SwiGLU gate: out = silu(gate) · up, silu(x) = x · sigmoid(x).   Reference: HF LlamaMLP (`act_fn(gate_proj(x)) * up_proj(x)`).
public final class SwiGlu {
    private SwiGlu() {}

    /// out, gate, up: (n) flattened (N, H)
    public static void forward(float[] out, float[] gate, float[] up, int n) {
        for (int i = 0; i < n; i++) {
            float g = gate[i];
            out[i] = g / (1f + (float) Math.exp(-g)) * up[i];
        }
    }
}
