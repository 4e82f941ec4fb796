package org.peft4j.train.optim;

import org.peft4j.core.Gemm;
import org.peft4j.core.Parallel;
import org.peft4j.core.Peft4jException.ConfigException;
import org.peft4j.train.engine.Param;

import java.util.ArrayList;
import java.util.List;

/// Muon (MomentUm Orthogonalized by Newton-Schulz; K. Jordan 2024, Moonshot's Moonlight, arXiv:2502.16982) as
/// LLaMA-Factory runs it for `use_muon` (src/llamafactory/third_party/muon/muon.py `Muon.step`, grouped by
/// src/llamafactory/train/trainer_utils.py `_create_muon_optimizer`): every trainable 2-D tensor whose name holds
/// neither `embed` nor `lm_head` takes the Muon update, the rest (norms, embeddings, lm_head) an AdamW backup.
///
/// Muon, per matrix G (rows × cols), momentum μ = 0.95, Nesterov, 5 Newton-Schulz steps:
/// ```
/// buf ← μ·buf + g          g' ← g + μ·buf
/// X ← g' (transposed when rows > cols) / (‖g'‖_F + 1e-7)
/// 5×: A ← X·Xᵀ;  B ← b·A + c·A·A;  X ← a·X + B·X        (a, b, c) = (3.4445, −4.7750, 2.0315)
/// p ← p·(1 − lr·wd);   p ← p − lr·0.2·√max(rows, cols) · X
/// ```
/// AdamW backup (note eps outside the bias correction, unlike torch's AdamW):
/// ```
/// m ← m + (1 − β1)(g − m);  v ← v + (1 − β2)(g² − v);  p ← p·(1 − lr·wd);  p ← p − lr·√(1 − β2ᵗ)/(1 − β1ᵗ) · m/(eps + √v)
/// ```
/// LLaMA-Factory's Newton-Schulz runs in bfloat16 on the GPU; peft4j runs it in float32 (sums in double), so the
/// orthogonalised update is the same function computed more precisely. State: one momentum buffer per Muon matrix
/// (half of AdamW's), m and v for the rest. The Newton-Schulz scratch is allocated once for the largest matrix.
public final class Muon {
    static final double A = 3.4445, B = -4.7750, C = 2.0315;
    static final int NS_STEPS = 5;
    static final double MOMENTUM = 0.95;

    private final List<Param> params;
    private final boolean[] muon;
    private final float[][] buf, m, v;   // buf for Muon tensors, m and v for the AdamW ones (null where unused)
    private final AdamW.Config config;
    private final float[] x, a, aa, bx;  // Newton-Schulz scratch: X (r, c), A and A·A (r, r), B·X (r, c), r ≤ c
    private long step;

    private final Gemm gemm;             // null: the scalar Newton-Schulz

    /// `gemm` runs the Newton-Schulz products ([#newtonSchulz(Gemm, float[], float[], float[], float[], int, int)]);
    /// null runs the scalar twin.
    public Muon(List<Param> params, AdamW.Config config, Gemm gemm) {
        this.gemm = gemm;
        this.params = List.copyOf(params);
        this.config = config;
        int n = params.size();
        muon = new boolean[n];
        buf = new float[n][];
        m = new float[n][];
        v = new float[n][];
        int maxR = 0, maxRC = 0;
        for (int i = 0; i < n; i++) {
            Param p = params.get(i);
            muon[i] = usesMuon(p);
            if (muon[i]) {
                buf[i] = new float[p.data().length];
                int r = (int) Math.min(p.shape()[0], p.shape()[1]);
                maxR = Math.max(maxR, r);
                maxRC = Math.max(maxRC, p.data().length);
            } else {
                m[i] = new float[p.data().length];
                v[i] = new float[p.data().length];
            }
        }
        x = new float[maxRC];
        bx = new float[maxRC];
        a = new float[maxR * maxR];
        aa = new float[maxR * maxR];
    }

    /// LLaMA-Factory `_create_muon_optimizer`: `param.ndim == 2 and "embed" not in name and "lm_head" not in name`.
    public static boolean usesMuon(Param p) { return usesMuon(p.name(), p.shape()); }

    public static boolean usesMuon(String name, long[] shape) {
        return shape.length == 2 && !name.contains("embed") && !name.contains("lm_head");
    }

    public long step() { return step; }

    public void step(double lr) {
        step++;
        double wd = config.weightDecay();
        float decay = (float) (1 - lr * wd);
        // AdamW backup scalars: scale = (1 − β1ᵗ)/√(1 − β2ᵗ), p −= (lr/scale)·m/(eps + √v)
        double scale = (1 - Math.pow(config.beta1(), step)) / Math.sqrt(1 - Math.pow(config.beta2(), step));
        float stepSize = (float) (lr / scale), ob1 = (float) (1 - config.beta1()), ob2 = (float) (1 - config.beta2()), eps = (float) config.eps();
        for (int t = 0; t < muon.length; t++) {
            Param pr = params.get(t);
            float[] p = pr.data(), g = pr.grad();
            if (muon[t]) {
                int rows = (int) pr.shape()[0], cols = (int) pr.shape()[1];
                float[] bt = buf[t];
                float mu = (float) MOMENTUM;
                boolean tr = rows > cols;
                int r = tr ? cols : rows, c = tr ? rows : cols;
                // g' = g + μ·buf after buf = μ·buf + g, written into X (transposed when tall)
                for (int i = 0; i < rows; i++)
                    for (int j = 0; j < cols; j++) {
                        int k = i * cols + j;
                        bt[k] = mu * bt[k] + g[k];
                        float gk = g[k] + mu * bt[k];
                        x[tr ? j * c + i : k] = gk;
                    }
                if (gemm == null) newtonSchulz(x, a, aa, bx, r, c);
                else newtonSchulz(gemm, x, a, aa, bx, r, c);
                float adj = (float) (lr * 0.2 * Math.sqrt(Math.max(rows, cols)));
                for (int i = 0; i < rows; i++)
                    for (int j = 0; j < cols; j++) {
                        int k = i * cols + j;
                        p[k] = p[k] * decay - adj * x[tr ? j * c + i : k];
                    }
            } else {
                float[] mt = m[t], vt = v[t];
                for (int i = 0; i < p.length; i++) {
                    float gi = g[i];
                    float mi = mt[i] + ob1 * (gi - mt[i]);
                    float vi = vt[i] + ob2 * (gi * gi - vt[i]);
                    mt[i] = mi;
                    vt[i] = vi;
                    p[i] = p[i] * decay - stepSize * (mi / (eps + (float) Math.sqrt(vi)));
                }
            }
        }
    }

    /// Newton-Schulz quintic iteration on x (r, c), r ≤ c, in place: x ← x/(‖x‖_F + 1e-7), then NS_STEPS times
    /// A = x·xᵀ, B = b·A + c·A·A, x = a·x + B·x (muon.py `zeropower_via_newtonschulz5`). Rows are computed in
    /// parallel, each by one thread with its sums in double, so the result does not depend on the thread count.
    static void newtonSchulz(float[] x, float[] a, float[] aa, float[] bx, int r, int c) {
        double norm = 0;
        for (int i = 0; i < r * c; i++) norm += (double) x[i] * x[i];
        float inv = (float) (1 / (Math.sqrt(norm) + 1e-7));
        for (int i = 0; i < r * c; i++) x[i] *= inv;
        for (int s = 0; s < NS_STEPS; s++) {
            Parallel.range(r, i -> {                       // A = X·Xᵀ (r, r)
                for (int j = 0; j < r; j++) {
                    double acc = 0;
                    for (int k = 0; k < c; k++) acc += (double) x[i * c + k] * x[j * c + k];
                    a[i * r + j] = (float) acc;
                }
            });
            Parallel.range(r, i -> {                       // B = b·A + c·A·A, kept in aa
                for (int j = 0; j < r; j++) {
                    double acc = 0;
                    for (int k = 0; k < r; k++) acc += (double) a[i * r + k] * a[k * r + j];
                    aa[i * r + j] = (float) (B * a[i * r + j] + C * acc);
                }
            });
            Parallel.range(r, i -> {                       // X' = a·X + B·X
                for (int j = 0; j < c; j++) {
                    double acc = 0;
                    for (int k = 0; k < r; k++) acc += (double) aa[i * r + k] * x[k * c + j];
                    bx[i * c + j] = (float) (A * x[i * c + j] + acc);
                }
            });
            System.arraycopy(bx, 0, x, 0, r * c);
        }
    }

    /// [#newtonSchulz(float[], float[], float[], float[], int, int)] with its three products through `gemm`
    /// (sums in float32 in the kernel's order; tested against the scalar twin).
    static void newtonSchulz(Gemm gemm, float[] x, float[] a, float[] aa, float[] bx, int r, int c) {
        double norm = 0;
        for (int i = 0; i < r * c; i++) norm += (double) x[i] * x[i];
        float inv = (float) (1 / (Math.sqrt(norm) + 1e-7));
        for (int i = 0; i < r * c; i++) x[i] *= inv;
        float fa = (float) A, fb = (float) B, fc = (float) C;
        for (int s = 0; s < NS_STEPS; s++) {
            gemm.sgemm(false, true, r, r, c, 1f, x, 0, c, x, 0, c, 0f, a, 0, r);          // A = X·Xᵀ
            gemm.sgemm(false, false, r, r, r, 1f, a, 0, r, a, 0, r, 0f, aa, 0, r);        // A·A
            for (int i = 0; i < r * r; i++) aa[i] = fb * a[i] + fc * aa[i];               // B = b·A + c·A·A
            gemm.sgemm(false, false, r, c, r, 1f, aa, 0, r, x, 0, c, 0f, bx, 0, c);           // B·X
            for (int i = 0; i < r * c; i++) x[i] = fa * x[i] + bx[i];
        }
    }

    /// What a checkpoint keeps: the momentum buffers of the Muon tensors and m, v of the others, by parameter index
    /// (a null entry where a tensor has none).
    public record State(long step, List<float[]> momentum, List<float[]> m, List<float[]> v) {}

    public State state() {
        List<float[]> b = new ArrayList<>(), mm = new ArrayList<>(), vv = new ArrayList<>();
        for (int i = 0; i < muon.length; i++) { b.add(buf[i]); mm.add(m[i]); vv.add(v[i]); }
        return new State(step, b, mm, vv);
    }

    public void load(State s) {
        if (s.momentum().size() != muon.length) throw new ConfigException("Muon state has " + s.momentum().size() + " tensors, this run has "
                + muon.length + "; resume with the same trainable parameters as the checkpoint");
        for (int i = 0; i < muon.length; i++) {
            copy(s.momentum().get(i), buf[i], i);
            copy(s.m().get(i), m[i], i);
            copy(s.v().get(i), v[i], i);
        }
        step = s.step();
    }

    private void copy(float[] from, float[] to, int i) {
        if ((from == null) != (to == null) || from != null && from.length != to.length)
            throw new ConfigException("Muon state of '" + params.get(i).name() + "' does not match this run; the checkpoint belongs to another model or optimizer");
        if (from != null) System.arraycopy(from, 0, to, 0, to.length);
    }
}
