package org.peft4j.core.kernels;

import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.IntVector;
import jdk.incubator.vector.VectorMask;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.VectorSpecies;

/// exp(x) in float with a fixed sequence of IEEE operations: x = k·ln2 + r (k = rint(x·log2 e), r in two steps with
/// a split ln2), a degree-7 Taylor polynomial of e^r by Horner with fused multiply-adds (|r| ≤ ln2/2, truncation
/// ≤ r⁸/8! < 1e-8 relative), times 2^k built in the exponent bits. Maximum error ≈ 2 ulp; exp(x) = 0 below −87.3
/// (and for −∞), +∞ above 88 (true overflow is at 88.72; callers use it on x ≤ 0 or for 1/(1+e^x), where that is harmless).
///
/// Why not `Math.exp` / `VectorOperators.EXP`: the vector EXP is an intrinsic (SVML) once C2 compiles the loop and a
/// per-lane `Math.exp` before, so its results change with JIT timing and a training run would not be bit-reproducible
/// across processes (resume after kill -9). Here the vector path and the scalar twin perform lane for lane the same
/// correctly-rounded operations, so they agree bit for bit in any execution mode.
public final class Exp {
    private static final VectorSpecies<Float> S = FloatVector.SPECIES_PREFERRED;
    private static final float LOG2E = 1.44269504088896341f;
    private static final float LN2_HI = 0.693145751953125f;          // 12 significant bits: k·LN2_HI is exact
    private static final float LN2_LO = 1.42860682030941723212e-6f;
    private static final float MAGIC = 12582912f;                     // 1.5·2²³: adding it rounds to an integer
    private static final int MAGIC_BITS = 0x4B400000;
    private static final float LO = -87.3f, HI = 88.0f;             // 2^k stays a normal float: k ∈ [−126, 127]
    private static final float C2 = 1f / 2, C3 = 1f / 6, C4 = 1f / 24, C5 = 1f / 120, C6 = 1f / 720, C7 = 1f / 5040;

    private Exp() {}

    /// The scalar twin.
    public static float exp(float x) {
        if (!(x >= LO)) return x != x ? x : 0f;                      // NaN stays NaN; −∞ and underflow give 0
        if (x > HI) return Float.POSITIVE_INFINITY;
        float t = Math.fma(x, LOG2E, MAGIC);
        float k = t - MAGIC;
        float r = Math.fma(k, -LN2_HI, x);
        r = Math.fma(k, -LN2_LO, r);
        float p = Math.fma(C7, r, C6);
        p = Math.fma(p, r, C5);
        p = Math.fma(p, r, C4);
        p = Math.fma(p, r, C3);
        p = Math.fma(p, r, C2);
        p = Math.fma(p, r, 1f);
        p = Math.fma(p, r, 1f);
        int kBits = (Float.floatToRawIntBits(t) - MAGIC_BITS + 127) << 23;
        return p * Float.intBitsToFloat(kBits);
    }

    /// exp of every lane, bit-identical with [#exp(float)] lane by lane.
    public static FloatVector exp(FloatVector x) {
        VectorMask<Float> under = x.compare(VectorOperators.GE, LO).not();  // also true for NaN
        VectorMask<Float> nan = x.compare(VectorOperators.NE, x);
        VectorMask<Float> over = x.compare(VectorOperators.GT, HI);
        FloatVector xc = x.max(LO).min(HI);
        FloatVector t = xc.fma(LOG2E, MAGIC);
        FloatVector k = t.sub(MAGIC);
        var sp = x.species();
        FloatVector r = k.fma(FloatVector.broadcast(sp, -LN2_HI), xc);
        r = k.fma(FloatVector.broadcast(sp, -LN2_LO), r);
        FloatVector p = FloatVector.broadcast(sp, C7).fma(r, FloatVector.broadcast(sp, C6));
        p = p.fma(r, FloatVector.broadcast(sp, C5));
        p = p.fma(r, FloatVector.broadcast(sp, C4));
        p = p.fma(r, FloatVector.broadcast(sp, C3));
        p = p.fma(r, FloatVector.broadcast(sp, C2));
        FloatVector one = FloatVector.broadcast(sp, 1f);
        p = p.fma(r, one);
        p = p.fma(r, one);
        IntVector kb = t.reinterpretAsInts().sub(MAGIC_BITS - 127).lanewise(VectorOperators.LSHL, 23);
        FloatVector y = p.mul(kb.reinterpretAsFloats());
        y = y.blend(0f, under).blend(Float.POSITIVE_INFINITY, over);
        return y.blend(x, nan);
    }

    /// In place: x[o + i] = exp(x[o + i] − shift) for i in [0, n); returns their sum, added in a fixed order
    /// (vector lanes in index order, then the tail), so the result is the same in every execution mode.
    public static float expShiftSum(float[] x, int o, int n, float shift) {
        int i = 0, bound = S.loopBound(n);
        FloatVector acc = FloatVector.zero(S);
        for (; i < bound; i += S.length()) {
            FloatVector e = exp(FloatVector.fromArray(S, x, o + i).sub(shift));
            e.intoArray(x, o + i);
            acc = acc.add(e);
        }
        float sum = VectorOps.sumLanes(acc);
        for (; i < n; i++) { float e = exp(x[o + i] - shift); x[o + i] = e; sum += e; }
        return sum;
    }

    /// The scalar twin of [#expShiftSum]: the same per-lane partial sums in the same order.
    public static float expShiftSumScalar(float[] x, int o, int n, float shift) {
        int L = S.length(), bound = n - n % L, i = 0;
        float[] acc = new float[L];
        for (; i < bound; i += L)
            for (int j = 0; j < L; j++) { float e = exp(x[o + i + j] - shift); x[o + i + j] = e; acc[j] += e; }
        float sum = 0f;
        for (int j = 0; j < L; j++) sum += acc[j];
        for (; i < n; i++) { float e = exp(x[o + i] - shift); x[o + i] = e; sum += e; }
        return sum;
    }
}
