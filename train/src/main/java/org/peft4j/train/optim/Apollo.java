package org.peft4j.train.optim;

import org.peft4j.core.Peft4jException.ConfigException;
import org.peft4j.model.adapter.lora.Pissa;
import org.peft4j.train.engine.Param;

import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.Set;

/// APOLLO (Zhu et al. 2024, arXiv:2412.05270): SGD-like memory with AdamW-like results. Adam runs in a rank-r
/// random projection of each targeted matrix's gradient only to estimate a per-channel (or per-tensor) scaling of
/// the raw gradient, which is then applied in full rank. LLaMA-Factory's `use_apollo` (src/llamafactory/train/
/// trainer_utils.py `_create_apollo_optimizer`) groups the 2-D weights of the `apollo_target` linear layers with
/// rank, proj, proj_type, update_proj_gap, scale, scale_type of `apollo_torch.APOLLOAdamW` (zhuhanqing/APOLLO
/// apollo_torch/apollo.py `AdamW.step`, random_projector.py `GradientProjector`, proj_type std):
/// ```
/// every update_interval steps (t = 0, T, ...): P = randn / √r   ((r, cols) when rows ≥ cols, else (rows, r))  [svd: GaLore's]
/// R = G·Pᵀ or Pᵀ·G;   m ← β1·m + (1 − β1)·R;   v ← β2·v + (1 − β2)·R²;   N = m / (√v + eps)
/// channel: s_c = ‖N_c‖ / (‖R_c‖ + 1e-8) per row (rows ≥ cols) or column of G;   tensor: s = ‖N‖ / (‖R‖ + 1e-8)
/// U = G ⊙ s;   [scale_front: U ← √scale·U]
/// norm-growth limiter (Fira): after the first step, λ = max(‖U‖ / (prev + 1e-8), 1.01) / 1.01, U ← U/λ; prev ← ‖U‖
/// [else U ← √scale·U];   p ← p − lr·√(1 − β2ᵗ)/(1 − β1ᵗ) · U;   p ← p − lr·wd·p
/// ```
/// Untargeted tensors take GaLore's AdamW update ([GaLore]) without projection. The random projection is drawn
/// from `seed`, the tensor's index and the refresh count with java.util.Random (torch's generator draws other
/// numbers; any Gaussian P serves the method). `scaleFront` puts √scale before the limiter, which changes the
/// update only through the limiter's 1e-8 guard (the key apollo_scale_front is accepted with that note; LLaMA-Factory
/// hands it to a parameter group APOLLOAdamW does not read).
public final class Apollo {
    /// LLaMA-Factory's keys: apollo_target, apollo_rank, apollo_update_interval, apollo_scale, apollo_proj (random,
    /// svd), apollo_proj_type (std), apollo_scale_type (channel, tensor), apollo_layerwise, apollo_scale_front.
    public record Config(List<String> targets, int rank, int updateInterval, double scale, String proj, String projType,
                         String scaleType, boolean layerwise, boolean scaleFront) {
        public Config {
            if (rank < 1) throw new ConfigException("apollo_rank must be >= 1, got " + rank);
            if (updateInterval < 1) throw new ConfigException("apollo_update_interval must be >= 1, got " + updateInterval);
            if (!(scale > 0)) throw new ConfigException("apollo_scale must be > 0, got " + scale);
            if (!List.of("random", "svd").contains(proj)) throw new ConfigException("apollo_proj must be random or svd, got '" + proj + "'");
            if (!projType.equals("std"))
                throw new ConfigException("apollo_proj_type '" + projType + "' is not built yet; peft4j implements APOLLO's std projection (use apollo_proj_type: std)");
            if (!List.of("channel", "tensor").contains(scaleType)) throw new ConfigException("apollo_scale_type must be channel or tensor, got '" + scaleType + "'");
            targets = List.copyOf(targets);
        }
    }

    /// Fills P for tensor `index` at its `refresh`-th projection: (r, cols) when `right`, else (rows, r).
    public interface Projection { void fill(float[] p, int index, long refresh, int rows, int cols, int r, boolean right, float[] grad); }

    private final List<Param> params;
    private final AdamW.Config adam;
    private final Config config;
    private final boolean[] projected, right, decays;
    private final int[] ranks;
    private final long[] refreshes;
    private final float[][] proj, m, v;
    private final float[] low;                // the projected gradient of one tensor (scratch for the largest)
    private final double[] prevNorm;          // the limiter's previous ‖U‖ (NaN before the first step)
    private final double[] scaleN, scaleR;    // per-channel ‖N_c‖², ‖R_c‖² (scratch, max(rows, cols))
    private final Projection source;
    private long step;

    public Apollo(List<Param> params, AdamW.Config adam, Config config, Set<String> linearNames, long seed) {
        this(params, adam, config, linearNames, config.proj().equals("svd") ? Apollo::svd : random(seed));
    }

    Apollo(List<Param> params, AdamW.Config adam, Config config, Set<String> linearNames, Projection source) {
        this.params = List.copyOf(params);
        this.adam = adam;
        this.config = config;
        this.source = source;
        int n = params.size();
        projected = new boolean[n];
        right = new boolean[n];
        decays = new boolean[n];
        ranks = new int[n];
        refreshes = new long[n];
        proj = new float[n][];
        m = new float[n][];
        v = new float[n][];
        prevNorm = new double[n];
        java.util.Arrays.fill(prevNorm, Double.NaN);
        List<String> targets = config.targets().contains("all") ? List.copyOf(linearNames) : config.targets();
        int maxDim = 0, maxLow = 0;
        for (int i = 0; i < n; i++) {
            Param p = params.get(i);
            decays[i] = GaLore.decays(p.name());
            projected[i] = p.shape().length == 2 && GaLore.isLinear(p.name(), linearNames) && targets.stream().anyMatch(p.name()::contains);
            int len = p.data().length;
            if (!projected[i]) {
                m[i] = new float[len];
                v[i] = new float[len];
                continue;
            }
            int rows = (int) p.shape()[0], cols = (int) p.shape()[1];
            right[i] = rows >= cols;
            int r = config.proj().equals("svd") ? Math.min(config.rank(), Math.min(rows, cols)) : config.rank();
            ranks[i] = r;
            int lowLen = right[i] ? rows * r : r * cols;
            proj[i] = new float[right[i] ? r * cols : rows * r];
            m[i] = new float[lowLen];
            v[i] = new float[lowLen];
            maxLow = Math.max(maxLow, lowLen);
            maxDim = Math.max(maxDim, Math.max(rows, cols));
        }
        low = new float[maxLow];
        scaleN = new double[maxDim];
        scaleR = new double[maxDim];
    }

    /// random_projector.py `get_orthogonal_matrix`: Gaussian entries / √r, from (seed, tensor, refresh).
    static Projection random(long seed) {
        return (p, index, refresh, rows, cols, r, right, grad) -> {
            Random rng = new Random(seed * 0x9E3779B97F4A7C15L + index * 1_000_003L + refresh);
            double inv = 1 / Math.sqrt(r);
            int len = right ? r * cols : rows * r;
            for (int i = 0; i < len; i++) p[i] = (float) (rng.nextGaussian() * inv);
        };
    }

    /// apollo_proj svd: GaLore's projector (top-r singular vectors of the gradient).
    static void svd(float[] p, int index, long refresh, int rows, int cols, int r, boolean right, float[] grad) {
        Pissa.Svd d = Pissa.svd(grad, rows, cols, r, -1, null);
        for (int k = 0; k < r; k++) {
            int sign = right ? GaLore.signOf(d.vt(), k * cols, 1, cols) : GaLore.signOf(d.u(), k, r, rows);
            if (right) for (int j = 0; j < cols; j++) p[k * cols + j] = (float) (sign * d.vt()[k * cols + j]);
            else for (int i = 0; i < rows; i++) p[i * r + k] = (float) (sign * d.u()[i * r + k]);
        }
    }

    public boolean projected(int i) { return projected[i]; }

    public long step() { return step; }

    /// Floats of state for a (rows, cols) matrix at `rank` (m, v, P and the limiter's norm), for `estimate`.
    public static long stateFloats(long rows, long cols, int rank) {
        return rows >= cols ? 2 * rows * rank + rank * cols + 1 : 2 * rank * cols + rows * rank + 1;
    }

    public void step(double lr) {
        long t0 = step;
        step++;
        double bc1 = 1 - Math.pow(adam.beta1(), step), bc2 = 1 - Math.pow(adam.beta2(), step);
        float stepSize = (float) (lr * Math.sqrt(bc2) / bc1);
        float b1 = (float) adam.beta1(), b2 = (float) adam.beta2(), ob1 = (float) (1 - adam.beta1()), ob2 = (float) (1 - adam.beta2());
        float eps = (float) adam.eps();
        double sqrtScale = Math.sqrt(config.scale());
        boolean channel = config.scaleType().equals("channel");
        for (int t = 0; t < params.size(); t++) {
            Param pr = params.get(t);
            float[] p = pr.data(), g = pr.grad();
            float wd = decays[t] ? (float) (lr * adam.weightDecay()) : 0f;
            if (!projected[t]) {
                GaLore.adamFull(p, g, m[t], v[t], b1, b2, ob1, ob2, eps, stepSize, wd);
                continue;
            }
            int rows = (int) pr.shape()[0], cols = (int) pr.shape()[1], r = ranks[t];
            boolean rt = right[t];
            if (t0 % config.updateInterval() == 0) source.fill(proj[t], t, refreshes[t]++, rows, cols, r, rt, g);
            float[] R = low, mt = m[t], vt = v[t];
            GaLore.project(R, g, proj[t], rows, cols, r, rt);
            // channels: rows of G when rows ≥ cols (R is (rows, r), norms over r), else columns (R is (r, cols))
            int channels = rt ? rows : cols;
            java.util.Arrays.fill(scaleN, 0, channels, 0);
            java.util.Arrays.fill(scaleR, 0, channels, 0);
            for (int i = 0; i < mt.length; i++) {
                float mi = b1 * mt[i] + ob1 * R[i], vi = b2 * vt[i] + ob2 * R[i] * R[i];
                mt[i] = mi;
                vt[i] = vi;
                float ni = mi / ((float) Math.sqrt(vi) + eps);
                int ch = rt ? i / r : i % cols;
                scaleN[ch] += (double) ni * ni;
                scaleR[ch] += (double) R[i] * R[i];
            }
            if (channel) for (int c = 0; c < channels; c++) scaleN[c] = Math.sqrt(scaleN[c]) / (Math.sqrt(scaleR[c]) + 1e-8);
            else {
                double sn = 0, sr = 0;
                for (int c = 0; c < channels; c++) { sn += scaleN[c]; sr += scaleR[c]; }
                double s = Math.sqrt(sn) / (Math.sqrt(sr) + 1e-8);
                java.util.Arrays.fill(scaleN, 0, channels, s);
            }
            // U = G ⊙ s (√scale in front with scale_front), its norm for the limiter
            double front = config.scaleFront() ? sqrtScale : 1, norm = 0;
            for (int i = 0; i < rows; i++)
                for (int j = 0; j < cols; j++) {
                    double u = g[i * cols + j] * scaleN[rt ? i : j] * front;
                    norm += u * u;
                }
            norm = Math.sqrt(norm);
            double limiter = 1;
            // the previous norm is kept as float32 (torch keeps it in a float tensor), so a checkpoint restores it exactly
            if (Double.isNaN(prevNorm[t])) prevNorm[t] = (float) norm;
            else {
                limiter = Math.max(norm / (prevNorm[t] + 1e-8), 1.01) / 1.01;
                prevNorm[t] = (float) (norm / limiter);
            }
            double k = front / limiter * (config.scaleFront() ? 1 : sqrtScale);
            for (int i = 0; i < rows; i++)
                for (int j = 0; j < cols; j++) {
                    int q = i * cols + j;
                    p[q] -= stepSize * (float) (g[q] * scaleN[rt ? i : j] * k);
                    p[q] -= wd * p[q];
                }
        }
    }

    /// What a checkpoint keeps: m, v, P (null where not projected), and per tensor {refreshes, limiter norm}.
    public record State(long step, List<float[]> m, List<float[]> v, List<float[]> proj, float[] refreshes, float[] prevNorms) {}

    public State state() {
        List<float[]> pp = new ArrayList<>();
        for (float[] x : proj) pp.add(x);
        float[] rf = new float[refreshes.length], pn = new float[prevNorm.length];
        for (int i = 0; i < rf.length; i++) { rf[i] = refreshes[i]; pn[i] = (float) prevNorm[i]; }
        return new State(step, List.of(m), List.of(v), pp, rf, pn);
    }

    public void load(State s) {
        if (s.m().size() != m.length || s.refreshes().length != refreshes.length)
            throw new ConfigException("APOLLO state has " + s.m().size() + " tensors, this run has " + m.length
                    + "; resume with the same trainable parameters and apollo keys as the checkpoint");
        for (int i = 0; i < m.length; i++) {
            copy(s.m().get(i), m[i], i);
            copy(s.v().get(i), v[i], i);
            copy(s.proj().get(i), proj[i], i);
            refreshes[i] = (long) s.refreshes()[i];
            prevNorm[i] = s.prevNorms()[i];
        }
        step = s.step();
    }

    private void copy(float[] from, float[] to, int i) {
        if ((from == null) != (to == null) || from != null && from.length != to.length)
            throw new ConfigException("APOLLO state of '" + params.get(i).name() + "' does not match this run (apollo_rank or apollo_target changed?); resume with the checkpoint's settings");
        if (from != null) System.arraycopy(from, 0, to, 0, to.length);
    }
}
