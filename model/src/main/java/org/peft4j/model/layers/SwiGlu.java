package org.peft4j.model.layers;

import jdk.incubator.vector.FloatVector;
import org.peft4j.core.kernels.ColdStart;
import org.peft4j.core.kernels.Exp;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.VectorSpecies;
import org.peft4j.core.Parallel;

/// SwiGLU gate: out = silu(gate) · up, silu(x) = x · sigmoid(x).   Reference: HF LlamaMLP (`act_fn(gate_proj(x)) * up_proj(x)`).
/// Backward: dup = dout·silu(g),  dgate = dout·up·σ(g)·(1 + g·(1 − σ(g))).
public final class SwiGlu {
    private SwiGlu() {}

    private static final VectorSpecies<Float> S = FloatVector.SPECIES_PREFERRED;
    /// Elements per parallel chunk: fixed, so the split does not depend on timing (nothing is reduced anyway).
    private static final int CHUNK = 1 << 14;

    /// out, gate, up: (n) flattened (N, H). Vector API exp, chunks in parallel; [#forwardScalar] is the twin.
    /// While the start is cold ([ColdStart]) every element takes the scalar loop of the vector loop's tail, which does
    /// lane for lane what a vector lane does (the same bits).
    public static void forward(float[] out, float[] gate, float[] up, int n) {
        // the twin in its own call site and method: the vector loop's compiled profile never sees the cold start
        if (GATE.cold()) Parallel.chunks(n, (n + CHUNK - 1) / CHUNK, (c, from, to) -> tail(out, gate, up, from, to));
        else Parallel.chunks(n, (n + CHUNK - 1) / CHUNK, (c, from, to) -> forwardRange(false, out, gate, up, from, to));
    }

    /// [#forward] over [from, to): vector lanes, then the tail; the tail loop alone when `cold`.
    static void forwardRange(boolean cold, float[] out, float[] gate, float[] up, int from, int to) {
        if (cold) { tail(out, gate, up, from, to); return; }
        int i = from;
        for (int end = from + S.loopBound(to - from); i < end; i += S.length()) {
            FloatVector g = FloatVector.fromArray(S, gate, i);
            FloatVector sig = Exp.exp(g.neg()).add(1f);   // Exp: the same bits in every JIT state
            g.div(sig).mul(FloatVector.fromArray(S, up, i)).intoArray(out, i);
        }
        tail(out, gate, up, i, to);
    }

    /// The scalar loop over [from, to): lane for lane what a vector lane does.
    private static void tail(float[] out, float[] gate, float[] up, int from, int to) {
        for (int i = from; i < to; i++) {
            float g = gate[i];
            out[i] = g / (1f + Exp.exp(-g)) * up[i];
        }
    }

    /// The vector path on a row of real length and a tail, for [ColdStart]'s warm-up.
    private static final ColdStart.Gate GATE = ColdStart.gate("swiglu", new Runnable() {
        final int n = 1536 + 3;
        final float[] out = new float[n], gate = new float[n], up = new float[n];
        public void run() { forwardRange(false, out, gate, up, 0, n); }
    }, 20_000);

    /// Adds into dgate and dup (+=), as [#backwardScalar], vectorized and in parallel chunks.
    public static void backward(float[] dgate, float[] dup, float[] dout, float[] gate, float[] up, int n) {
        Parallel.chunks(n, (n + CHUNK - 1) / CHUNK, (c, from, to) -> {
            int i = from;
            for (int end = from + S.loopBound(to - from); i < end; i += S.length()) {
                FloatVector g = FloatVector.fromArray(S, gate, i), d = FloatVector.fromArray(S, dout, i);
                FloatVector sig = FloatVector.broadcast(S, 1f).div(Exp.exp(g.neg()).add(1f));
                FloatVector silu = g.mul(sig);
                d.fma(silu, FloatVector.fromArray(S, dup, i)).intoArray(dup, i);
                FloatVector dsilu = sig.mul(g.mul(sig.neg().add(1f)).add(1f));   // σ(g)·(1 + g·(1 − σ(g)))
                d.mul(FloatVector.fromArray(S, up, i)).fma(dsilu, FloatVector.fromArray(S, dgate, i)).intoArray(dgate, i);
            }
            for (; i < to; i++) {
                float g = gate[i];
                float sig = 1f / (1f + Exp.exp(-g));
                dup[i] += dout[i] * (g * sig);
                dgate[i] += dout[i] * up[i] * sig * (1f + g * (1f - sig));
            }
        });
    }

    /// The scalar twin of [#forward].   out, gate, up: (n) flattened (N, H)
    public static void forwardScalar(float[] out, float[] gate, float[] up, int n) {
        for (int i = 0; i < n; i++) {
            float g = gate[i];
            out[i] = g / (1f + (float) Math.exp(-g)) * up[i];
        }
    }

    /// The scalar twin of [#backward]. Adds into dgate and dup (+=).   dgate, dup, dout, gate, up: (n) flattened (N, H)
    public static void backwardScalar(float[] dgate, float[] dup, float[] dout, float[] gate, float[] up, int n) {
        for (int i = 0; i < n; i++) {
            float g = gate[i];
            float sig = 1f / (1f + (float) Math.exp(-g));
            float silu = g * sig;
            dup[i] += dout[i] * silu;
            dgate[i] += dout[i] * up[i] * sig * (1f + g * (1f - sig));
        }
    }
}
