package org.peft4j.train.optim;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

/// `paged_adamw_32bit`: [AdamW]'s algorithm, float for float, with m and v in a [PagedState] file mapping instead of
/// the Java heap, so the OS can page them out under a memory budget (specs.md §1.6: paging changes placement, never
/// numerics). `paged_adamw_8bit` is [AdamW8bit#paged]. Each tensor's region holds `[m (n) f32][v (n) f32]`.
/// The per-element loop repeats AdamW's line for line; `PagedAdamWTest` checks the two agree bit for bit.
public final class PagedAdamW implements AutoCloseable {
    private static final ValueLayout.OfFloat F32 = ValueLayout.JAVA_FLOAT;

    private final List<float[]> params; // each (n_i), updated in place
    private final List<float[]> grads;  // each (n_i), read only
    private final PagedState paged;     // region t: m then v of tensor t
    private final AdamW.Config config;
    private long step;

    /// State file in `dir` (deleted on [#close]); `budgetBytes` as [PagedState] defines it.
    public PagedAdamW(List<float[]> params, List<float[]> grads, AdamW.Config config, Path dir, long budgetBytes) {
        if (params.size() != grads.size())
            throw new IllegalArgumentException("PagedAdamW got " + params.size() + " parameters but " + grads.size() + " gradients");
        long[] bytes = new long[params.size()];
        for (int i = 0; i < bytes.length; i++) {
            if (params.get(i).length != grads.get(i).length)
                throw new IllegalArgumentException("PagedAdamW parameter " + i + " has " + params.get(i).length
                        + " elements but its gradient has " + grads.get(i).length);
            bytes[i] = 8L * params.get(i).length;
        }
        this.params = List.copyOf(params);
        this.grads = List.copyOf(grads);
        this.config = config;
        this.paged = new PagedState(dir, bytes, budgetBytes);
    }

    public long step() { return step; }

    public PagedState pagedState() { return paged; }

    /// One update with learning rate lr, as [AdamW#step(double)]. Allocates no arrays.
    public void step(double lr) {
        step++;
        AdamW.Scalars k = AdamW.Scalars.of(config, step, lr);
        for (int t = 0; t < params.size(); t++) {
            float[] p = params.get(t), g = grads.get(t);
            MemorySegment st = paged.region(t);
            int n = p.length;
            for (int i = 0; i < n; i++) {
                float gi = g[i], m0 = st.getAtIndex(F32, i), v0 = st.getAtIndex(F32, n + i);
                float mi = m0 + k.ob1() * (gi - m0);                   // torch: exp_avg.lerp_(grad, 1 − β1)
                float vi = k.b2() * v0 + k.ob2() * gi * gi;
                st.setAtIndex(F32, i, mi);
                st.setAtIndex(F32, n + i, vi);
                p[i] = p[i] * k.decay() - k.stepSize() * mi / ((float) Math.sqrt(vi) / k.bc2Sqrt() + k.eps());
            }
            paged.updated(t);
        }
    }

    /// A copy of the moments for saving, in [AdamW]'s checkpoint form.
    public AdamW.State state() {
        List<float[]> m = new ArrayList<>(), v = new ArrayList<>();
        for (int t = 0; t < params.size(); t++) {
            long n = params.get(t).length;
            m.add(paged.region(t).asSlice(0, 4 * n).toArray(F32));
            v.add(paged.region(t).asSlice(4 * n, 4 * n).toArray(F32));
        }
        return new AdamW.State(step, List.copyOf(m), List.copyOf(v));
    }

    /// Restores a saved state (copies in), e.g. on resume; accepts [AdamW#state()] too.
    public void load(AdamW.State s) {
        if (s.m().size() != params.size() || s.v().size() != params.size())
            throw new IllegalArgumentException("PagedAdamW state has " + s.m().size() + " tensors, this optimizer has " + params.size()
                    + "; resume with the same trainable parameters as the checkpoint");
        for (int t = 0; t < params.size(); t++) {
            int n = params.get(t).length;
            if (s.m().get(t).length != n || s.v().get(t).length != n)
                throw new IllegalArgumentException("PagedAdamW state tensor " + t + " has " + s.m().get(t).length
                        + " elements, expected " + n + "; the checkpoint belongs to a different adapter shape");
            MemorySegment.copy(s.m().get(t), 0, paged.region(t), F32, 0, n);
            MemorySegment.copy(s.v().get(t), 0, paged.region(t), F32, 4L * n, n);
            paged.updated(t);
        }
        step = s.step();
    }

    /// Unmaps and deletes the state file.
    @Override
    public void close() { paged.close(); }
}
