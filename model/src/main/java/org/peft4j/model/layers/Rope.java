package org.peft4j.model.layers;

/// Rotary position embedding in Hugging Face's rotate_half layout: for each head, element i pairs with i + HS/2.
/// out[i] = x[i]·cos − x[i+h]·sin,  out[i+h] = x[i+h]·cos + x[i]·sin,  angle = pos · invFreq[i].
/// Reference: HF `apply_rotary_pos_emb`, `LlamaRotaryEmbedding`.
public final class Rope {
    private Rope() {}

    /// Plain inverse frequencies 1 / theta^(2i/HS), i in [0, HS/2). Scaling (llama3, linear) is applied by the caller.
    public static double[] invFreq(int HS, double theta) {
        double[] f = new double[HS / 2];
        for (int i = 0; i < f.length; i++) f[i] = 1.0 / Math.pow(theta, (2.0 * i) / HS);
        return f;
    }

    /// cos, sin: (maxPos, HS/2) tables for positions [0, maxPos).
    public static void tables(float[] cos, float[] sin, double[] invFreq, int maxPos) {
        int h = invFreq.length;
        for (int p = 0; p < maxPos; p++)
            for (int i = 0; i < h; i++) {
                double a = p * invFreq[i];
                cos[p * h + i] = (float) Math.cos(a);
                sin[p * h + i] = (float) Math.sin(a);
            }
    }

    /// In place. x: (B, T, nHeads·HS); token t of each row is at position pos0 + t.   cos, sin: (maxPos, HS/2)
    public static void forward(float[] x, float[] cos, float[] sin, int B, int T, int nHeads, int HS, int pos0) {
        rotate(x, cos, sin, B, T, nHeads, HS, pos0, 1f);
    }

    /// In place, one row of a batch: x[off, off + T·nHeads·HS) holds T tokens at positions pos0 + t.
    public static void forwardRow(float[] x, int off, float[] cos, float[] sin, int T, int nHeads, int HS, int pos0) {
        rotate(x, off, cos, sin, 1, T, nHeads, HS, pos0, 1f);
    }

    /// In place: dx ← Rᵀ·dx. The rotation is orthogonal, so its backward is the rotation by −angle.
    /// Overwrites dx (the gradient w.r.t. the rotated q or k) with the gradient w.r.t. the unrotated input;
    /// shapes as in [#forward], same pos0 as the forward (0 in training).
    public static void backward(float[] dx, float[] cos, float[] sin, int B, int T, int nHeads, int HS, int pos0) {
        rotate(dx, cos, sin, B, T, nHeads, HS, pos0, -1f);
    }

    /// rotation by angle·sign; sign −1 is the inverse (and the transpose), which is the backward.
    static void rotate(float[] x, float[] cos, float[] sin, int B, int T, int nHeads, int HS, int pos0, float sign) {
        rotate(x, 0, cos, sin, B, T, nHeads, HS, pos0, sign);
    }

    static void rotate(float[] x, int off, float[] cos, float[] sin, int B, int T, int nHeads, int HS, int pos0, float sign) {
        int h = HS / 2;
        for (int b = 0; b < B; b++)
            for (int t = 0; t < T; t++) {
                int tab = (pos0 + t) * h;
                for (int hd = 0; hd < nHeads; hd++) {
                    int o = off + ((b * T + t) * nHeads + hd) * HS;
                    for (int i = 0; i < h; i++) {
                        float c = cos[tab + i], s = sign * sin[tab + i];
                        float x1 = x[o + i], x2 = x[o + i + h];
                        x[o + i] = x1 * c - x2 * s;
                        x[o + i + h] = x2 * c + x1 * s;
                    }
                }
            }
    }
}
