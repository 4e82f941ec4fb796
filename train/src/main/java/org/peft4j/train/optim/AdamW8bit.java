package org.peft4j.train.optim;

import org.peft4j.quant.Blockwise8;
import org.peft4j.quant.DynamicMap;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

/// AdamW with bitsandbytes' blockwise 8-bit state (`adamw_8bit`, and `paged_adamw_8bit` when built by [#paged]):
/// per parameter, m as uint8 codes of the signed dynamic map and v of the unsigned map, each with one float32 absmax per
/// block of 256 elements; tensors under 4096 elements keep float32 moments (bitsandbytes' `min_8bit_size`).
/// Reference: specs.md §1.6; bitsandbytes `Optimizer2State`, CPU `_optimizer_update_8bit_blockwise_cpu`, CUDA
/// `kOptimizerStatic8bit2StateBlockwise`. Per element, in float32, each operation rounded once:
/// ```
/// m ← qmap1[c1]·absmax1[blk]              v ← qmap2[c2]·absmax2[blk]         (dequantize, previous absmax)
/// v ← v·β2 + (1 − β2)·g·g                  m ← m·β1 + (1 − β1)·g
/// p ← p·(1 − lr·wd)   (CPU order: decay before the update; only when wd > 0)
/// p ← p + (−lr/(1 − β1ᵗ))·m / (√v/√(1 − β2ᵗ) + eps)
/// absmax ← max|·| over the block (after the update); c1, c2 ← nearest code of m·(1/absmax1), v·(1/absmax2)
/// c1 moves one index toward m's sign when the code's sign differs (CUDA kernel); an all-zero block wraps to 255
/// non-finite g: m = v = 0 and p unchanged
/// ```
/// Initial state is all codes 0 and absmax 0 (bitsandbytes' zero buffers). The state lives in [MemorySegment]s: heap
/// arrays here, a file mapping for the paged variant; both run this same code, so they agree bit for bit.
public final class AdamW8bit implements AutoCloseable {
    /// Elements per absmax block (bitsandbytes `BLOCKSIZE_2STATE`).
    public static final int BLOCK = 256;
    /// Tensors with fewer elements keep float32 moments (bitsandbytes `min_8bit_size`).
    public static final int MIN_8BIT_SIZE = 4096;

    private static final float[] QMAP1 = DynamicMap.signed(), QMAP2 = DynamicMap.unsigned();
    private static final ValueLayout.OfFloat F32 = ValueLayout.JAVA_FLOAT;
    private static final ValueLayout.OfByte U8 = ValueLayout.JAVA_BYTE;

    /// One tensor's saved moments: the 8-bit form (bitsandbytes' `state1`, `state2`, `absmax1`, `absmax2`) or,
    /// under [#MIN_8BIT_SIZE] elements, float32 m and v.
    public sealed interface Moments {
        record Quantized(byte[] state1, byte[] state2, float[] absmax1, float[] absmax2) implements Moments {}
        record Full(float[] m, float[] v) implements Moments {}
    }

    /// What a checkpoint keeps: the step count and each tensor's moments, in parameter order (copies).
    public record State(long step, List<Moments> moments) {}

    private final List<float[]> params; // each (n_i), updated in place
    private final List<float[]> grads;  // each (n_i), read only
    private final MemorySegment[] state; // (tensors): 8-bit [absmax1 nb·f32][absmax2 nb·f32][c1 n·u8][c2 n·u8], else [m n·f32][v n·f32]
    private final AdamW.Config config;
    private final PagedState paged;     // null: heap state
    private final float[] mBlock = new float[BLOCK], vBlock = new float[BLOCK]; // one block's updated moments
    private final Scalars scalars = new Scalars();
    private long step;

    /// `adamw_8bit`: state on the Java heap. params.get(i) and grads.get(i) are the same size.
    public AdamW8bit(List<float[]> params, List<float[]> grads, AdamW.Config config) {
        this(params, grads, config, null, 0);
    }

    /// `paged_adamw_8bit`: the codes, absmax and small-tensor moments live in a [PagedState] file mapping in `dir`
    /// with the given residency budget (see [PagedState]); [#close] deletes the file.
    public static AdamW8bit paged(List<float[]> params, List<float[]> grads, AdamW.Config config, Path dir, long budgetBytes) {
        return new AdamW8bit(params, grads, config, dir, budgetBytes);
    }

    private AdamW8bit(List<float[]> params, List<float[]> grads, AdamW.Config config, Path dir, long budgetBytes) {
        if (params.size() != grads.size())
            throw new IllegalArgumentException("AdamW8bit got " + params.size() + " parameters but " + grads.size() + " gradients");
        this.params = List.copyOf(params);
        this.grads = List.copyOf(grads);
        this.config = config;
        long[] bytes = new long[params.size()];
        for (int i = 0; i < bytes.length; i++) {
            int n = params.get(i).length;
            if (grads.get(i).length != n)
                throw new IllegalArgumentException("AdamW8bit parameter " + i + " has " + n + " elements but its gradient has " + grads.get(i).length);
            bytes[i] = stateBytes(n);
        }
        state = new MemorySegment[bytes.length];
        paged = dir == null ? null : new PagedState(dir, bytes, budgetBytes);
        for (int i = 0; i < bytes.length; i++)
            state[i] = paged != null ? paged.region(i) : MemorySegment.ofArray(new long[(int) ((bytes[i] + 7) / 8)]);
    }

    /// Bytes of state for a tensor of n elements: 2n codes + 8 per block of 256, or 8n under [#MIN_8BIT_SIZE].
    public static long stateBytes(long n) {
        return n >= MIN_8BIT_SIZE ? 2 * n + 8 * ((n + BLOCK - 1) / BLOCK) : 8 * n;
    }

    /// The signed (m) and unsigned (v) dynamic maps, as saved under `qmap1` / `qmap2` (copies).
    public static float[] qmap1() { return QMAP1.clone(); }
    public static float[] qmap2() { return QMAP2.clone(); }

    public long step() { return step; }

    /// The file mapping of the paged variant, or null.
    public PagedState pagedState() { return paged; }

    /// One update with learning rate lr. Allocates nothing.
    public void step(double lr) {
        step++;
        double b1 = config.beta1(), b2 = config.beta2();
        Scalars s = scalars;
        s.b1 = (float) b1; s.ob1 = (float) (1 - b1); s.b2 = (float) b2; s.ob2 = (float) (1 - b2);
        s.stepSize = (float) (-lr / (1 - Math.pow(b1, step)));
        s.c2 = (float) Math.sqrt(1 - Math.pow(b2, step));
        s.eps = (float) config.eps();
        s.decays = config.weightDecay() > 0;
        s.decay = (float) (1 - lr * config.weightDecay());
        for (int t = 0; t < state.length; t++) {
            float[] p = params.get(t), g = grads.get(t);
            if (p.length >= MIN_8BIT_SIZE) update8bit(p, g, state[t], s);
            else update32bit(p, g, state[t], s);
            if (paged != null) paged.updated(t);
        }
    }

    /// Per-step constants, in float32 as the kernels use them (β's as floats, the bias corrections formed in double).
    private static final class Scalars {
        float b1, ob1, b2, ob2, stepSize, c2, eps, decay;
        boolean decays;
    }

    private void update8bit(float[] p, float[] g, MemorySegment st, Scalars s) {
        int n = p.length, nb = (n + BLOCK - 1) / BLOCK;
        long a2 = 4L * nb, c1 = 8L * nb, c2 = c1 + n;
        for (int b = 0, from = 0; from < n; b++, from += BLOCK) {
            int len = Math.min(BLOCK, n - from);
            float absM = st.get(F32, 4L * b), absV = st.get(F32, a2 + 4L * b);
            float maxM = 0f, maxV = 0f;
            for (int j = 0; j < len; j++) {
                int i = from + j;
                float m = QMAP1[st.get(U8, c1 + i) & 0xff] * absM;
                float v = QMAP2[st.get(U8, c2 + i) & 0xff] * absV;
                float gi = g[i];
                if (Float.isFinite(gi)) {
                    v = v * s.b2 + s.ob2 * gi * gi;
                    m = m * s.b1 + s.ob1 * gi;
                    p[i] = apply(p[i], m, v, s);
                } else {
                    m = 0f;
                    v = 0f;
                }
                mBlock[j] = m;
                vBlock[j] = v;
                maxM = Math.max(maxM, Math.abs(m));
                maxV = Math.max(maxV, v);
            }
            float invM = 1f / maxM, invV = 1f / maxV;   // +inf for an all-zero block: codes of NaN, see class doc
            for (int j = 0; j < len; j++) {
                float m = mBlock[j];
                int c = Blockwise8.quantizeValue(QMAP1, m * invM);
                if ((Float.floatToRawIntBits(QMAP1[c]) ^ Float.floatToRawIntBits(m)) < 0) c += m > 0 ? 1 : -1;
                st.set(U8, c1 + from + j, (byte) c);
                st.set(U8, c2 + from + j, (byte) Blockwise8.quantizeValue(QMAP2, vBlock[j] * invV));
            }
            st.set(F32, 4L * b, maxM);
            st.set(F32, a2 + 4L * b, maxV);
        }
    }

    private static void update32bit(float[] p, float[] g, MemorySegment st, Scalars s) {
        int n = p.length;
        long vOff = 4L * n;
        for (int i = 0; i < n; i++) {
            float gi = g[i], m = 0f, v = 0f;
            if (Float.isFinite(gi)) {
                v = st.getAtIndex(F32, n + i) * s.b2 + s.ob2 * gi * gi;
                m = st.getAtIndex(F32, i) * s.b1 + s.ob1 * gi;
                p[i] = apply(p[i], m, v, s);
            }
            st.setAtIndex(F32, i, m);
            st.set(F32, vOff + 4L * i, v);
        }
    }

    /// Decoupled decay first (CPU reference order), then `p + stepSize·m / (√v / c2 + eps)`.
    private static float apply(float p, float m, float v, Scalars s) {
        if (s.decays) p = p * s.decay;
        return p + s.stepSize * m / ((float) Math.sqrt(v) / s.c2 + s.eps);
    }

    /// A copy of the state for saving.
    public State state() {
        List<Moments> out = new ArrayList<>(state.length);
        for (int t = 0; t < state.length; t++) {
            int n = params.get(t).length, nb = (n + BLOCK - 1) / BLOCK;
            MemorySegment st = state[t];
            if (n >= MIN_8BIT_SIZE)
                out.add(new Moments.Quantized(st.asSlice(8L * nb, n).toArray(U8), st.asSlice(8L * nb + n, n).toArray(U8),
                        st.asSlice(0, 4L * nb).toArray(F32), st.asSlice(4L * nb, 4L * nb).toArray(F32)));
            else
                out.add(new Moments.Full(st.asSlice(0, 4L * n).toArray(F32), st.asSlice(4L * n, 4L * n).toArray(F32)));
        }
        return new State(step, List.copyOf(out));
    }

    /// Restores a saved state (copies in), e.g. on resume.
    public void load(State s) {
        if (s.moments().size() != state.length)
            throw new IllegalArgumentException("AdamW8bit state has " + s.moments().size() + " tensors, this optimizer has " + state.length
                    + "; resume with the same trainable parameters as the checkpoint");
        for (int t = 0; t < state.length; t++) {
            int n = params.get(t).length, nb = (n + BLOCK - 1) / BLOCK;
            MemorySegment st = state[t];
            switch (s.moments().get(t)) {
                case Moments.Quantized(byte[] c1, byte[] c2, float[] a1, float[] a2) when n >= MIN_8BIT_SIZE
                        && c1.length == n && c2.length == n && a1.length == nb && a2.length == nb -> {
                    MemorySegment.copy(a1, 0, st, F32, 0, nb);
                    MemorySegment.copy(a2, 0, st, F32, 4L * nb, nb);
                    MemorySegment.copy(c1, 0, st, U8, 8L * nb, n);
                    MemorySegment.copy(c2, 0, st, U8, 8L * nb + n, n);
                }
                case Moments.Full(float[] m, float[] v) when n < MIN_8BIT_SIZE && m.length == n && v.length == n -> {
                    MemorySegment.copy(m, 0, st, F32, 0, n);
                    MemorySegment.copy(v, 0, st, F32, 4L * n, n);
                }
                default -> throw new IllegalArgumentException("AdamW8bit state tensor " + t + " does not fit a parameter of " + n
                        + " elements; the checkpoint belongs to a different adapter shape or optimizer");
            }
            if (paged != null) paged.updated(t);
        }
        step = s.step();
    }

    /// Releases the paged file (deleting it); a no-op for heap state.
    @Override
    public void close() { if (paged != null) paged.close(); }
}
