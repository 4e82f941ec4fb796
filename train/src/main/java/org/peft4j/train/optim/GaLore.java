package org.peft4j.train.optim;

import org.peft4j.core.Peft4jException.ConfigException;
import org.peft4j.model.adapter.lora.Pissa;
import org.peft4j.train.engine.Param;

import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.Set;

/// GaLore (Zhao et al. 2024, arXiv:2403.03507): full-parameter training whose Adam moments live in a rank-r
/// projection of each targeted matrix's gradient. LLaMA-Factory's `use_galore` (src/llamafactory/train/trainer_utils.py
/// `_create_galore_optimizer`) puts the 2-D weights of the `galore_target` linear layers in a group with rank,
/// update_proj_gap, scale and proj_type, and everything else in plain groups, of galore_torch's `GaLoreAdamW`
/// (jiaweizzhao/GaLore galore_torch/adamw.py `AdamW.step`, galore_projector.py `GaLoreProjector`, proj_type std):
/// ```
/// every update_interval steps (t = 0, T, 2T, ... before the step): U, S, Vᵀ = svd(G)
///     rows ≥ cols: P = Vᵀ[:r, :] (r, cols), R = G·Pᵀ       else: P = U[:, :r] (rows, r), R = Pᵀ·G
/// m ← β1·m + (1 − β1)·R      v ← β2·v + (1 − β2)·R²          (in the projected shape; never reset)
/// N = m / (√v + eps);  N_full = scale · (N·P  or  P·N)
/// p ← p − lr·√(1 − β2ᵗ)/(1 − β1ᵗ) · N_full;   p ← p − lr·wd·p
/// ```
/// Untargeted tensors take the same update without projection (N_full = N). The SVD is exact, in double
/// ([Pissa#svd]); singular vectors are signed so that each one's largest-magnitude entry is positive (torch's
/// signs depend on its LAPACK; the update is the same for either sign while P is fixed). A projection refresh
/// allocates its SVD's buffers (every update_interval steps); other steps allocate nothing.
///
/// State: for a targeted (rows, cols) matrix, m and v of the projected shape plus P: 2·rows·r + r·cols floats
/// (rows ≥ cols) or 2·r·cols + rows·r, instead of AdamW's 2·rows·cols ([#stateFloats]).
public final class GaLore {
    /// LLaMA-Factory's keys: galore_target (module names or all), galore_rank, galore_update_interval, galore_scale,
    /// galore_proj_type (std only), galore_layerwise.
    public record Config(List<String> targets, int rank, int updateInterval, double scale, String projType, boolean layerwise) {
        public Config {
            if (rank < 1) throw new ConfigException("galore_rank must be >= 1, got " + rank);
            if (updateInterval < 1) throw new ConfigException("galore_update_interval must be >= 1, got " + updateInterval);
            if (!projType.equals("std"))
                throw new ConfigException("galore_proj_type '" + projType + "' is not built yet; peft4j implements GaLore's std projection (use galore_proj_type: std)");
            targets = List.copyOf(targets);
        }
    }

    private final List<Param> params;
    private final AdamW.Config adam;
    private final Config config;
    private final boolean[] projected, right, decays;
    private final int[] ranks;
    private final float[][] proj, m, v;        // proj: P (null when not projected)
    private final float[] low;                 // the projected gradient / update of one tensor (scratch for the largest)
    private long step;

    /// `linearNames`: the module names a target `all` stands for (q_proj, ..., down_proj).
    public GaLore(List<Param> params, AdamW.Config adam, Config config, Set<String> linearNames) {
        this.params = List.copyOf(params);
        this.adam = adam;
        this.config = config;
        int n = params.size();
        projected = new boolean[n];
        right = new boolean[n];
        decays = new boolean[n];
        ranks = new int[n];
        proj = new float[n][];
        m = new float[n][];
        v = new float[n][];
        List<String> targets = config.targets().contains("all") ? List.copyOf(linearNames) : config.targets();
        int maxLow = 0;
        for (int i = 0; i < n; i++) {
            Param p = params.get(i);
            decays[i] = decays(p.name());
            projected[i] = p.shape().length == 2 && isLinear(p.name(), linearNames) && targets.stream().anyMatch(p.name()::contains);
            int len = p.data().length;
            if (!projected[i]) {
                m[i] = new float[len];
                v[i] = new float[len];
                continue;
            }
            int rows = (int) p.shape()[0], cols = (int) p.shape()[1];
            right[i] = rows >= cols;
            int r = Math.min(config.rank(), Math.min(rows, cols));    // torch: Vh[:rank] / U[:, :rank] keep at most min(rows, cols)
            ranks[i] = r;
            int lowLen = right[i] ? rows * r : r * cols;
            proj[i] = new float[right[i] ? r * cols : rows * r];
            m[i] = new float[lowLen];
            v[i] = new float[lowLen];
            maxLow = Math.max(maxLow, lowLen);
        }
        low = new float[maxLow];
    }

    /// A linear layer's weight: `<...>.<module>.weight` with module among `linearNames` (lm_head excluded, as
    /// LLaMA-Factory's find_all_linear_modules).
    public static boolean isLinear(String name, Set<String> linearNames) {
        if (!name.endsWith(".weight")) return false;
        String s = name.substring(0, name.length() - ".weight".length());
        return linearNames.contains(s.substring(s.lastIndexOf('.') + 1));
    }

    /// transformers' `get_decay_parameter_names`: no decay for biases and layer norms.
    static boolean decays(String name) {
        String n = name.toLowerCase(Locale.ROOT);
        return !(n.endsWith("bias") || n.contains("norm"));
    }

    public boolean projected(int i) { return projected[i]; }

    /// Floats of state kept for a (rows, cols) matrix projected at `rank` (m, v and P), for `estimate`.
    public static long stateFloats(long rows, long cols, int rank) {
        long r = Math.min(rank, Math.min(rows, cols));
        return rows >= cols ? 2 * rows * r + r * cols : 2 * r * cols + rows * r;
    }

    public int rank(int i) { return ranks[i]; }

    public long step() { return step; }

    public void step(double lr) {
        long t0 = step;     // galore_torch projects with state["step"] before its increment
        step++;
        double bc1 = 1 - Math.pow(adam.beta1(), step), bc2 = 1 - Math.pow(adam.beta2(), step);
        float stepSize = (float) (lr * Math.sqrt(bc2) / bc1);
        float b1 = (float) adam.beta1(), b2 = (float) adam.beta2(), ob1 = (float) (1 - adam.beta1()), ob2 = (float) (1 - adam.beta2());
        float eps = (float) adam.eps(), scale = (float) config.scale();
        for (int t = 0; t < params.size(); t++) {
            Param pr = params.get(t);
            float[] p = pr.data(), g = pr.grad();
            float wd = decays[t] ? (float) (lr * adam.weightDecay()) : 0f;
            if (!projected[t]) {
                GaLore.adamFull(p, g, m[t], v[t], b1, b2, ob1, ob2, eps, stepSize, wd);
                continue;
            }
            int rows = (int) pr.shape()[0], cols = (int) pr.shape()[1], r = ranks[t];
            if (t0 % config.updateInterval() == 0) refresh(t, g, rows, cols, r);
            float[] P = proj[t], R = low, mt = m[t], vt = v[t];
            project(R, g, P, rows, cols, r, right[t]);
            for (int i = 0; i < mt.length; i++) {
                float mi = b1 * mt[i] + ob1 * R[i], vi = b2 * vt[i] + ob2 * R[i] * R[i];
                mt[i] = mi;
                vt[i] = vi;
                R[i] = mi / ((float) Math.sqrt(vi) + eps);
            }
            // p −= stepSize · scale · back(N), then p −= lr·wd·p
            for (int i = 0; i < rows; i++)
                for (int j = 0; j < cols; j++) {
                    double acc = 0;
                    if (right[t]) for (int k = 0; k < r; k++) acc += (double) R[i * r + k] * P[k * cols + j];   // N (rows, r) · P (r, cols)
                    else for (int k = 0; k < r; k++) acc += (double) P[i * r + k] * R[k * cols + j];             // P (rows, r) · N (r, cols)
                    int q = i * cols + j;
                    p[q] -= stepSize * ((float) acc * scale);
                    p[q] -= wd * p[q];
                }
        }
    }

    /// R = G·Pᵀ (rows, r) when right, else Pᵀ·G (r, cols).
    static void project(float[] out, float[] g, float[] P, int rows, int cols, int r, boolean right) {
        if (right) {
            for (int i = 0; i < rows; i++)
                for (int k = 0; k < r; k++) {
                    double acc = 0;
                    for (int j = 0; j < cols; j++) acc += (double) g[i * cols + j] * P[k * cols + j];
                    out[i * r + k] = (float) acc;
                }
        } else {
            java.util.Arrays.fill(out, 0, r * cols, 0f);
            for (int k = 0; k < r; k++)
                for (int j = 0; j < cols; j++) {
                    double acc = 0;
                    for (int i = 0; i < rows; i++) acc += (double) P[i * r + k] * g[i * cols + j];
                    out[k * cols + j] = (float) acc;
                }
        }
    }

    /// A new projection from the top-r SVD of the gradient (GaLoreProjector.get_orthogonal_matrix, std).
    private void refresh(int t, float[] g, int rows, int cols, int r) {
        Pissa.Svd d = Pissa.svd(g, rows, cols, r, -1, null);
        float[] P = proj[t];
        if (right[t]) {      // P = Vᵀ[:r, :] (r, cols), each row signed
            for (int k = 0; k < r; k++) {
                int sign = signOf(d.vt(), k * cols, 1, cols);
                for (int j = 0; j < cols; j++) P[k * cols + j] = (float) (sign * d.vt()[k * cols + j]);
            }
        } else {             // P = U[:, :r] (rows, r), each column signed
            for (int k = 0; k < r; k++) {
                int sign = signOf(d.u(), k, r, rows);
                for (int i = 0; i < rows; i++) P[i * r + k] = (float) (sign * d.u()[i * r + k]);
            }
        }
    }

    /// +1 or −1 so that the entry of largest magnitude among x[from + i·stride], i < n, becomes positive.
    static int signOf(double[] x, int from, int stride, int n) {
        double best = 0;
        for (int i = 0; i < n; i++) { double e = x[from + i * stride]; if (Math.abs(e) > Math.abs(best)) best = e; }
        return best < 0 ? -1 : 1;
    }

    /// What a checkpoint keeps: m, v (projected shapes where projected) and P (null where not projected).
    public record State(long step, List<float[]> m, List<float[]> v, List<float[]> proj) {}

    public State state() {
        List<float[]> pp = new ArrayList<>();
        for (float[] x : proj) pp.add(x);
        return new State(step, List.of(m), List.of(v), pp);
    }

    public void load(State s) {
        if (s.m().size() != m.length) throw new ConfigException("GaLore state has " + s.m().size() + " tensors, this run has " + m.length
                + "; resume with the same trainable parameters and galore keys as the checkpoint");
        for (int i = 0; i < m.length; i++) {
            copy(s.m().get(i), m[i], i);
            copy(s.v().get(i), v[i], i);
            copy(s.proj().get(i), proj[i], i);
        }
        step = s.step();
    }

    private void copy(float[] from, float[] to, int i) {
        if ((from == null) != (to == null) || from != null && from.length != to.length)
            throw new ConfigException("GaLore state of '" + params.get(i).name() + "' does not match this run (galore_rank or galore_target changed?); resume with the checkpoint's settings");
        if (from != null) System.arraycopy(from, 0, to, 0, to.length);
    }

    /// The Adam update of a tensor that is not projected (GaLore's and APOLLO's AdamW on the full gradient): moments,
    /// the bias-corrected step folded into `stepSize`, then decoupled weight decay `wd` = lr · weight_decay.
    static void adamFull(float[] p, float[] g, float[] mt, float[] vt, float b1, float b2, float ob1, float ob2, float eps,
                         float stepSize, float wd) {
        for (int i = 0; i < p.length; i++) {
            float mi = b1 * mt[i] + ob1 * g[i], vi = b2 * vt[i] + ob2 * g[i] * g[i];
            mt[i] = mi;
            vt[i] = vi;
            p[i] -= stepSize * (mi / ((float) Math.sqrt(vi) + eps));
            p[i] -= wd * p[i];
        }
    }
}
