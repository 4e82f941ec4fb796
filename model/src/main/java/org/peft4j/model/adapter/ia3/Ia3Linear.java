package org.peft4j.model.adapter.ia3;

/// (IA)³ on one linear layer y = W·x + b: a learned vector l scales its output, y = (W·x + b) ⊙ l, or, on a
/// feed-forward module, its input, y = W·(x ⊙ l) + b. Reference: PEFT `tuners/ia3/layer.py` `Linear.forward`
/// (is_feedforward: `x * ia3_scaling` before the base layer; else `result * ia3_scaling` after it, bias included),
/// `merge` / `unmerge` (W ⊙ l, the bias ⊙ l for output scaling; unmerge divides by l + 1e-8).
/// Backward mirrors forward with the base frozen: the caller runs the base layer's input gradient.
public final class Ia3Linear {
    private Ia3Linear() {}

    /// Output scaling in place: y[r, o] *= l[o] for rows [row0, row0 + n).   y: (N, out)   l: (out)
    public static void forwardOutput(float[] y, float[] l, int row0, int n, int out) {
        for (int r = row0; r < row0 + n; r++) {
            int base = r * out;
            for (int o = 0; o < out; o++) y[base + o] *= l[o];
        }
    }

    /// Input scaling: xs[r, i] = x[r, i]·l[i] for rows [row0, row0 + n).   xs, x: (N, in)   l: (in)
    public static void forwardInput(float[] xs, float[] x, float[] l, int row0, int n, int in) {
        for (int r = row0; r < row0 + n; r++) {
            int base = r * in;
            for (int i = 0; i < in; i++) xs[base + i] = x[base + i] * l[i];
        }
    }

    /// Backward of [#forwardOutput] over N rows: dl[o] += Σ_r dy[r, o]·yBase[r, o] (yBase = W·x + b, before the
    /// scaling); dyBase = dy ⊙ l, the gradient the base layer's input gradient then reads.
    /// dyBase, dy, yBase: (N, out)   dl, l: (out)
    public static void backwardOutput(float[] dyBase, float[] dl, float[] dy, float[] yBase, float[] l, int N, int out) {
        for (int r = 0; r < N; r++) {
            int base = r * out;
            for (int o = 0; o < out; o++) {
                dl[o] += dy[base + o] * yBase[base + o];
                dyBase[base + o] = dy[base + o] * l[o];
            }
        }
    }

    /// Backward of [#forwardInput] over N rows, from dxs = dL/d(x ⊙ l) (the base layer's input gradient):
    /// dx += dxs ⊙ l, dl[i] += Σ_r dxs[r, i]·x[r, i].   dx, dxs, x: (N, in)   dl, l: (in)
    public static void backwardInput(float[] dx, float[] dl, float[] dxs, float[] x, float[] l, int N, int in) {
        for (int r = 0; r < N; r++) {
            int base = r * in;
            for (int i = 0; i < in; i++) {
                dl[i] += dxs[base + i] * x[base + i];
                dx[base + i] += dxs[base + i] * l[i];
            }
        }
    }

    /// Merges into the base in place: output scaling W[o, :] *= l[o] and bias[o] *= l[o]; input scaling
    /// W[:, i] *= l[i].   W: (out, in)   bias: (out) or null
    public static void merge(float[] W, float[] bias, float[] l, boolean feedforward, int out, int in) {
        for (int o = 0; o < out; o++)
            for (int i = 0; i < in; i++) W[o * in + i] *= feedforward ? l[i] : l[o];
        if (bias != null && !feedforward) for (int o = 0; o < out; o++) bias[o] *= l[o];
    }

    /// Undoes [#merge] as PEFT does: divides by l + 1e-8 (inexact where l is near 0, as PEFT warns).
    public static void unmerge(float[] W, float[] bias, float[] l, boolean feedforward, int out, int in) {
        for (int o = 0; o < out; o++)
            for (int i = 0; i < in; i++) W[o * in + i] /= (feedforward ? l[i] : l[o]) + 1e-8f;
        if (bias != null && !feedforward) for (int o = 0; o < out; o++) bias[o] /= l[o] + 1e-8f;
    }
}
