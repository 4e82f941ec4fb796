package org.peft4j.model.layers;

/// SwiGLU gate: out = silu(gate) · up, silu(x) = x · sigmoid(x).   Reference: HF LlamaMLP (`act_fn(gate_proj(x)) * up_proj(x)`).
/// Backward: dup = dout·silu(g),  dgate = dout·up·σ(g)·(1 + g·(1 − σ(g))).
public final class SwiGlu {
    private SwiGlu() {}

    /// out, gate, up: (n) flattened (N, H)
    public static void forward(float[] out, float[] gate, float[] up, int n) {
        for (int i = 0; i < n; i++) {
            float g = gate[i];
            out[i] = g / (1f + (float) Math.exp(-g)) * up[i];
        }
    }

    /// Adds into dgate and dup (+=).   dgate, dup, dout, gate, up: (n) flattened (N, H)
    public static void backward(float[] dgate, float[] dup, float[] dout, float[] gate, float[] up, int n) {
        for (int i = 0; i < n; i++) {
            float g = gate[i];
            float sig = 1f / (1f + (float) Math.exp(-g));
            float silu = g * sig;
            dup[i] += dout[i] * silu;
            dgate[i] += dout[i] * up[i] * sig * (1f + g * (1f - sig));
        }
    }
}
