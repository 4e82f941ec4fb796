package org.peft4j.core.kernels;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;

/// Each [VectorOps] kernel against its scalar twin at lengths that exercise the vector tails.
class VectorOpsTest {
    static final int[] LENGTHS = {1, 7, 31, 33, 4097};
    static final int OFF = 3;

    /// Two float sums of n terms in different orders differ by at most 2γ_n·Σ|terms| (see GemmTest.tolerance).
    static double sumBound(int n, double absSum) { return 2.0 * (n + 1) * 0x1p-24 * absSum + Float.MIN_NORMAL; }

    static float[] random(SplittableRandom r, int n) {
        float[] x = new float[n + 2 * OFF];
        for (int i = 0; i < x.length; i++) x[i] = (float) r.nextDouble(-1, 1);
        return x;
    }

    @Test
    void dotAndSumSquaresMatchScalarTwin() {
        SplittableRandom r = new SplittableRandom(3);
        for (int n : LENGTHS) {
            float[] a = random(r, n), b = random(r, n);
            double abs = 0, sq = 0;
            for (int i = 0; i < n; i++) { abs += Math.abs((double) a[OFF + i] * b[OFF + 1 + i]); sq += (double) a[OFF + i] * a[OFF + i]; }
            float want = VectorOps.dotScalar(a, OFF, b, OFF + 1, n), got = VectorOps.dot(a, OFF, b, OFF + 1, n);
            assertTrue(Math.abs(want - got) <= sumBound(n, abs), "dot n=" + n + " want " + want + " got " + got);
            want = VectorOps.sumSquaresScalar(a, OFF, n);
            got = VectorOps.sumSquares(a, OFF, n);
            assertTrue(Math.abs(want - got) <= sumBound(n, sq), "sumSquares n=" + n + " want " + want + " got " + got);
        }
    }

    /// The fixed-tree lane sum: the vector folds give its scalar twin's bits (values of mixed magnitude, where the
    /// order of the adds shows in the last bits), and the tree is not index order (it differs from [VectorOps#sumLanes]
    /// on some input), nor a constant (a changed lane changes the sum).
    @Test
    void sumHalvesMatchesItsScalarTwinBitForBit() {
        var species = jdk.incubator.vector.FloatVector.SPECIES_PREFERRED;
        int L = species.length();
        SplittableRandom r = new SplittableRandom(9);
        boolean orderShows = false;
        for (int t = 0; t < 2000; t++) {
            float[] lanes = new float[L];
            for (int i = 0; i < L; i++) lanes[i] = (float) (r.nextDouble(-1, 1) * Math.pow(2, r.nextInt(-20, 20)));
            var v = jdk.incubator.vector.FloatVector.fromArray(species, lanes, 0);
            float got = VectorOps.sumHalves(v), want = VectorOps.sumHalves(lanes.clone(), L);
            assertEquals(Float.floatToRawIntBits(want), Float.floatToRawIntBits(got), "trial " + t + ": vector " + got + ", scalar twin " + want);
            if (L >= 8 && got != VectorOps.sumLanes(v)) orderShows = true;
            float[] changed = lanes.clone();
            changed[L - 1] += 1f;
            assertTrue(VectorOps.sumHalves(jdk.incubator.vector.FloatVector.fromArray(species, changed, 0)) != got, "a changed lane must change the sum");
        }
        if (L >= 8) assertTrue(orderShows, "the tree gave index order's bits on every trial: the check cannot see the order");
    }

    /// With small integer values every partial sum is exact, so the twins must agree bit for bit: this catches a
    /// dropped or doubled element that the rounding bound above could hide at n = 4097.
    @Test
    void reductionsExactOnIntegers() {
        SplittableRandom r = new SplittableRandom(4);
        for (int n : LENGTHS) {
            float[] a = new float[n + 2 * OFF], b = new float[n + 2 * OFF];
            for (int i = 0; i < a.length; i++) { a[i] = r.nextInt(-3, 4); b[i] = r.nextInt(-3, 4); }
            assertEquals(VectorOps.dotScalar(a, OFF, b, 1, n), VectorOps.dot(a, OFF, b, 1, n), "dot n=" + n);
            assertEquals(VectorOps.sumSquaresScalar(b, OFF, n), VectorOps.sumSquares(b, OFF, n), "sumSquares n=" + n);
        }
    }

    @Test
    void elementwiseMatchScalarTwin() {
        SplittableRandom r = new SplittableRandom(5);
        for (int n : LENGTHS) {
            float[] x = random(r, n), y = random(r, n);
            float[] want = y.clone(), got = y.clone();
            VectorOps.axpyScalar(0.3f, x, OFF, want, 1, n);
            VectorOps.axpy(0.3f, x, OFF, got, 1, n);
            for (int i = 0; i < want.length; i++) {
                if (i < 1 || i >= 1 + n) {
                    assertEquals(y[i], got[i], "axpy wrote outside at " + i);
                    continue;
                }
                // fused (one rounding) vs multiply then add (two): they differ by at most one rounding of each of
                // |0.3·x| and |y + 0.3·x|, i.e. u·(|0.3·x| + |result|) with u = 2^-24; 2u leaves room for the sum.
                double ax = Math.abs(0.3f * x[OFF + i - 1]), bound = 0x1p-23 * (ax + Math.abs(want[i])) + Float.MIN_NORMAL;
                assertTrue(Math.abs(want[i] - got[i]) <= bound, "axpy n=" + n + " i=" + i + " want " + want[i] + " got " + got[i]);
                assertTrue(Math.abs(want[i] - (y[i] + 0.3 * x[OFF + i - 1])) <= bound, "axpy scalar twin n=" + n + " i=" + i);
            }
            want = x.clone();
            got = x.clone();
            VectorOps.scaleScalar(-1.7f, want, OFF, n);
            VectorOps.scale(-1.7f, got, OFF, n);
            assertArrayEquals(want, got, "scale n=" + n);
            want = new float[n + 2 * OFF];
            got = new float[n + 2 * OFF];
            VectorOps.addScalar(want, 1, x, OFF, y, 2, n);
            VectorOps.add(got, 1, x, OFF, y, 2, n);
            assertArrayEquals(want, got, "add n=" + n);
            float[] whole = new float[x.length];
            VectorOps.add(whole, x, y);
            for (int i = 0; i < x.length; i++) assertEquals(x[i] + y[i], whole[i]);
        }
    }
}
