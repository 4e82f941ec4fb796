package org.peft4j.core.kernels;

import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorShuffle;
import jdk.incubator.vector.VectorSpecies;

/// Vector API helpers for the layers (dot, axpy, scale, sum of squares, add), each beside its scalar twin
/// (`…Scalar`), which the tests compare it with. Reductions keep `ACC` vector accumulators and add their lanes in a
/// fixed order, so a result depends only on the inputs and the species, never on the JIT state or thread timing.
public final class VectorOps {
    static final VectorSpecies<Float> S = FloatVector.SPECIES_PREFERRED;
    static final int L = S.length();

    private VectorOps() {}

    /// Σ a[ao+i]·b[bo+i] for i in [0, n).
    public static float dot(float[] a, int ao, float[] b, int bo, int n) {
        FloatVector s0 = FloatVector.zero(S), s1 = s0, s2 = s0, s3 = s0;
        int i = 0;
        for (int up = n - 4 * L; i <= up; i += 4 * L) {
            s0 = FloatVector.fromArray(S, a, ao + i).fma(FloatVector.fromArray(S, b, bo + i), s0);
            s1 = FloatVector.fromArray(S, a, ao + i + L).fma(FloatVector.fromArray(S, b, bo + i + L), s1);
            s2 = FloatVector.fromArray(S, a, ao + i + 2 * L).fma(FloatVector.fromArray(S, b, bo + i + 2 * L), s2);
            s3 = FloatVector.fromArray(S, a, ao + i + 3 * L).fma(FloatVector.fromArray(S, b, bo + i + 3 * L), s3);
        }
        for (int up = n - L; i <= up; i += L)
            s0 = FloatVector.fromArray(S, a, ao + i).fma(FloatVector.fromArray(S, b, bo + i), s0);
        float tail = 0f;
        for (; i < n; i++) tail = Math.fma(a[ao + i], b[bo + i], tail);
        return sumLanes(s0.add(s1).add(s2.add(s3))) + tail;
    }

    public static float dotScalar(float[] a, int ao, float[] b, int bo, int n) {
        float s = 0f;
        for (int i = 0; i < n; i++) s += a[ao + i] * b[bo + i];
        return s;
    }

    /// y[yo+i] += alpha·x[xo+i] for i in [0, n).
    public static void axpy(float alpha, float[] x, int xo, float[] y, int yo, int n) {
        FloatVector va = FloatVector.broadcast(S, alpha);
        int i = 0;
        for (int up = n - L; i <= up; i += L)
            FloatVector.fromArray(S, x, xo + i).fma(va, FloatVector.fromArray(S, y, yo + i)).intoArray(y, yo + i);
        for (; i < n; i++) y[yo + i] = Math.fma(x[xo + i], alpha, y[yo + i]);
    }

    public static void axpyScalar(float alpha, float[] x, int xo, float[] y, int yo, int n) {
        for (int i = 0; i < n; i++) y[yo + i] += alpha * x[xo + i];
    }

    /// x[xo+i] *= alpha for i in [0, n).
    public static void scale(float alpha, float[] x, int xo, int n) {
        int i = 0;
        for (int up = n - L; i <= up; i += L) FloatVector.fromArray(S, x, xo + i).mul(alpha).intoArray(x, xo + i);
        for (; i < n; i++) x[xo + i] *= alpha;
    }

    public static void scaleScalar(float alpha, float[] x, int xo, int n) {
        for (int i = 0; i < n; i++) x[xo + i] *= alpha;
    }

    /// Σ x[xo+i]² for i in [0, n) (RMSNorm, gradient norms).
    public static float sumSquares(float[] x, int xo, int n) {
        FloatVector s0 = FloatVector.zero(S), s1 = s0;
        int i = 0;
        for (int up = n - 2 * L; i <= up; i += 2 * L) {
            FloatVector v0 = FloatVector.fromArray(S, x, xo + i), v1 = FloatVector.fromArray(S, x, xo + i + L);
            s0 = v0.fma(v0, s0);
            s1 = v1.fma(v1, s1);
        }
        for (int up = n - L; i <= up; i += L) {
            FloatVector v = FloatVector.fromArray(S, x, xo + i);
            s0 = v.fma(v, s0);
        }
        float tail = 0f;
        for (; i < n; i++) tail = Math.fma(x[xo + i], x[xo + i], tail);
        return sumLanes(s0.add(s1)) + tail;
    }

    public static float sumSquaresScalar(float[] x, int xo, int n) {
        float s = 0f;
        for (int i = 0; i < n; i++) s += x[xo + i] * x[xo + i];
        return s;
    }

    /// out[oo+i] = a[ao+i] + b[bo+i] for i in [0, n); out may alias a or b (residual adds).
    public static void add(float[] out, int oo, float[] a, int ao, float[] b, int bo, int n) {
        int i = 0;
        for (int up = n - L; i <= up; i += L)
            FloatVector.fromArray(S, a, ao + i).add(FloatVector.fromArray(S, b, bo + i)).intoArray(out, oo + i);
        for (; i < n; i++) out[oo + i] = a[ao + i] + b[bo + i];
    }

    /// out = a + b over whole arrays of equal length.
    public static void add(float[] out, float[] a, float[] b) {
        if (a.length != out.length || b.length != out.length)
            throw new IllegalArgumentException("add: lengths differ: out " + out.length + ", a " + a.length + ", b " + b.length);
        add(out, 0, a, 0, b, 0, out.length);
    }

    public static void addScalar(float[] out, int oo, float[] a, int ao, float[] b, int bo, int n) {
        for (int i = 0; i < n; i++) out[oo + i] = a[ao + i] + b[bo + i];
    }

    /// The lane permutations of [#sumHalves]: lane j takes lane j + 8, j + 4, j ^ 1 (the upper lanes take any).
    private static final VectorShuffle<Float> FOLD8 = fold(8), FOLD4 = fold(4), SWAP1 = VectorShuffle.fromOp(S, j -> j ^ 1);

    private static VectorShuffle<Float> fold(int w) { return VectorShuffle.fromOp(S, j -> (j + w) % L); }

    /// The lanes' sum as a fixed tree of halves: a 16-lane vector is folded to 8 lanes (lane j + lane j+8), an 8-lane
    /// one to 4 (j + j+4), then (l0 + l1) + (l2 + l3); other widths add in index order. The same bits in every JIT
    /// state (the permutations are exact moves, the adds fixed), at about 2 ns a sum against 5 for [#sumLanes]
    /// (AVX-512). Written with constant shuffles within the species: C2 compiled the earlier halves by
    /// `reinterpretShape` (to 256 and 128 bits) into its Java fallback in some runs (a `slice` through a shuffle, with
    /// allocations), which made decode attention up to 5x slower in those processes.
    /// [#sumHalves(float[], int)] is its scalar twin.
    public static float sumHalves(FloatVector v) {
        if (L == 16) {
            v = v.add(v.rearrange(FOLD8));
            v = v.add(v.rearrange(FOLD4));
            v = v.add(v.rearrange(SWAP1));
            return v.lane(0) + v.lane(2);
        }
        if (L == 8) {
            v = v.add(v.rearrange(FOLD4));
            v = v.add(v.rearrange(SWAP1));
            return v.lane(0) + v.lane(2);
        }
        return sumLanes(v);
    }

    /// The scalar twin of [#sumHalves(FloatVector)]: the same folds over `lanes[0, n)`, n the species' lane count
    /// (overwrites `lanes`).
    public static float sumHalves(float[] lanes, int n) {
        if (n == 16 || n == 8) {
            for (int w = n / 2; w >= 4; w /= 2)
                for (int j = 0; j < w; j++) lanes[j] = lanes[j] + lanes[j + w];
            return (lanes[0] + lanes[1]) + (lanes[2] + lanes[3]);
        }
        float s = 0f;
        for (int i = 0; i < n; i++) s += lanes[i];
        return s;
    }

    /// Adds the lanes in index order: a fixed order, unlike `reduceLanes(ADD)`, whose order is unspecified.
    /// Constant lane indices for the 8- and 16-lane species: C2 extracts those with one instruction each, where
    /// `lane(i)` in a loop costs about twice the time (measured: 5 against 10 ns a sum, AVX-512).
    public static float sumLanes(FloatVector v) {
        if (L == 16)
            return v.lane(0) + v.lane(1) + v.lane(2) + v.lane(3) + v.lane(4) + v.lane(5) + v.lane(6) + v.lane(7)
                    + v.lane(8) + v.lane(9) + v.lane(10) + v.lane(11) + v.lane(12) + v.lane(13) + v.lane(14) + v.lane(15);
        if (L == 8) return v.lane(0) + v.lane(1) + v.lane(2) + v.lane(3) + v.lane(4) + v.lane(5) + v.lane(6) + v.lane(7);
        float s = 0f;
        for (int i = 0; i < L; i++) s += v.lane(i);
        return s;
    }
}
