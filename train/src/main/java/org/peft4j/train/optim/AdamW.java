package org.peft4j.train.optim;

import org.peft4j.core.Parallel;

import java.util.List;

/// AdamW with decoupled weight decay, owning the first and second moments of a fixed list of parameters.
/// Reference: `torch.optim.AdamW` (amsgrad = false, maximize = false), the single-tensor algorithm:
/// ```
/// p ← p − lr·wd·p
/// m ← β1·m + (1 − β1)·g          v ← β2·v + (1 − β2)·g²
/// p ← p − lr/(1 − β1ᵗ) · m / (√v / √(1 − β2ᵗ) + eps)
/// ```
/// Gradient clipping, accumulation and zeroing are the caller's; [#step] only reads the gradients.
public final class AdamW {
    /// Hyperparameters. HF `TrainingArguments` defaults: β1 0.9, β2 0.999, eps 1e-8, weight decay 0.0
    /// (torch's own AdamW default weight decay is 0.01).
    public record Config(double beta1, double beta2, double eps, double weightDecay) {
        public Config {
            if (!(beta1 >= 0 && beta1 < 1)) throw new IllegalArgumentException("AdamW beta1 must be in [0, 1), got " + beta1);
            if (!(beta2 >= 0 && beta2 < 1)) throw new IllegalArgumentException("AdamW beta2 must be in [0, 1), got " + beta2);
            if (!(eps >= 0)) throw new IllegalArgumentException("AdamW eps must be >= 0, got " + eps);
            if (!(weightDecay >= 0)) throw new IllegalArgumentException("AdamW weight decay must be >= 0, got " + weightDecay);
        }

        public static Config hfDefaults() { return new Config(0.9, 0.999, 1e-8, 0.0); }

        /// The same betas and eps with weight decay 0 (transformers' no-decay group: biases and norms).
        public Config withoutDecay() { return new Config(beta1, beta2, eps, 0.0); }
    }

    /// What a checkpoint keeps: the step count and one m and v array per parameter (same order and sizes).
    public record State(long step, List<float[]> m, List<float[]> v) {}

    private final List<float[]> params; // each (n_i), updated in place
    private final List<float[]> grads;  // each (n_i), read only
    private final float[][] m, v;       // each (n_i)
    private final Config config;
    private long step;

    /// params.get(i) and grads.get(i) are the same size; the optimizer keeps references to both lists' arrays.
    public AdamW(List<float[]> params, List<float[]> grads, Config config) {
        if (params.size() != grads.size())
            throw new IllegalArgumentException("AdamW got " + params.size() + " parameters but " + grads.size() + " gradients");
        this.params = List.copyOf(params);
        this.grads = List.copyOf(grads);
        this.config = config;
        m = new float[params.size()][];
        v = new float[params.size()][];
        for (int i = 0; i < params.size(); i++) {
            if (params.get(i).length != grads.get(i).length)
                throw new IllegalArgumentException("AdamW parameter " + i + " has " + params.get(i).length
                        + " elements but its gradient has " + grads.get(i).length);
            m[i] = new float[params.get(i).length];
            v[i] = new float[params.get(i).length];
        }
    }

    public long step() { return step; }

    /// The per-step scalars of torch's AdamW for step `step` (1-based), formed in double as torch forms them in
    /// Python floats, then rounded to float once: decay 1 − lr·wd, step size lr/(1 − β1ᵗ), √(1 − β2ᵗ), eps, β2, 1 − β1,
    /// 1 − β2. Shared with [PagedAdamW], which applies the same update to mapped state.
    record Scalars(float decay, float stepSize, float bc2Sqrt, float eps, float b2, float ob1, float ob2) {
        static Scalars of(Config c, long step, double lr) {
            double bc1 = 1 - Math.pow(c.beta1(), step), bc2 = 1 - Math.pow(c.beta2(), step);
            return new Scalars((float) (1 - lr * c.weightDecay()), (float) (lr / bc1), (float) Math.sqrt(bc2), (float) c.eps(),
                    (float) c.beta2(), (float) (1 - c.beta1()), (float) (1 - c.beta2()));
        }
    }

    /// One update with learning rate lr (the schedule's value for this step). Allocates no arrays.
    /// Scalars are formed in double as torch forms them in Python floats, then applied per element in float in
    /// torch's order of operations (mul_, lerp_, mul_/addcmul_, sqrt/div/add, addcdiv_).
    public void step(double lr) {
        step++;
        Scalars k = Scalars.of(config, step, lr);
        for (int t = 0; t < m.length; t++) {
            float[] p = params.get(t), g = grads.get(t), mt = m[t], vt = v[t];
            // element by element: the same bits however the tensor is split over threads
            if (p.length < PARALLEL_MIN) update(k, p, g, mt, vt, 0, p.length);
            else Parallel.chunks(p.length, Parallel.threads(), (ci, from, to) -> update(k, p, g, mt, vt, from, to));
        }
    }

    /// Tensors at least this long are updated on all threads (full fine-tuning's matrices; adapters are smaller).
    static final int PARALLEL_MIN = 1 << 16;

    static void update(Scalars k, float[] p, float[] g, float[] mt, float[] vt, int from, int to) {
        for (int i = from; i < to; i++) {
            float gi = g[i];
            float mi = mt[i] + k.ob1 * (gi - mt[i]);              // torch: exp_avg.lerp_(grad, 1 − β1)
            float vi = k.b2 * vt[i] + k.ob2 * gi * gi;
            mt[i] = mi;
            vt[i] = vi;
            p[i] = p[i] * k.decay - k.stepSize * mi / ((float) Math.sqrt(vi) / k.bc2Sqrt + k.eps);
        }
    }

    /// Live view of the moments for saving: the arrays are the optimizer's own, do not modify them.
    public State state() { return new State(step, List.of(m), List.of(v)); }

    /// Restores a saved state (copies into this optimizer's arrays), e.g. on resume.
    public void load(State s) {
        if (s.m().size() != m.length || s.v().size() != v.length)
            throw new IllegalArgumentException("AdamW state has " + s.m().size() + " tensors, this optimizer has " + m.length
                    + "; resume with the same trainable parameters as the checkpoint");
        for (int i = 0; i < m.length; i++) {
            if (s.m().get(i).length != m[i].length || s.v().get(i).length != v[i].length)
                throw new IllegalArgumentException("AdamW state tensor " + i + " has " + s.m().get(i).length
                        + " elements, expected " + m[i].length + "; the checkpoint belongs to a different adapter shape");
            System.arraycopy(s.m().get(i), 0, m[i], 0, m[i].length);
            System.arraycopy(s.v().get(i), 0, v[i], 0, v[i].length);
        }
        step = s.step();
    }
}
