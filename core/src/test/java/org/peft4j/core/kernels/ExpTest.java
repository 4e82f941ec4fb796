package org.peft4j.core.kernels;

import jdk.incubator.vector.FloatVector;
import org.junit.jupiter.api.Test;

import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.*;

/// The deterministic exp against StrictMath.exp (fdlibm, correctly rounded within 1 ulp, computed in double) and
/// its vector path against the scalar twin, bit for bit.
class ExpTest {
    @Test
    void accurateWithinTwoUlp() {
        SplittableRandom r = new SplittableRandom(1);
        double worst = 0;
        for (int i = 0; i < 200_000; i++) {
            float x = (float) (r.nextDouble() * 175.2 - 87.2);   // [−87.2, 88.0]: normal, finite results
            double ref = StrictMath.exp(x);
            float got = Exp.exp(x);
            double ulps = Math.abs(got - ref) / Math.ulp((float) ref);
            worst = Math.max(worst, ulps);
        }
        assertTrue(worst <= 2.0, "worst error " + worst + " ulp");
    }

    @Test
    void edgeCases() {
        assertEquals(1f, Exp.exp(0f));
        assertEquals(0f, Exp.exp(Float.NEGATIVE_INFINITY));
        assertEquals(0f, Exp.exp(-100f));
        assertEquals(Float.POSITIVE_INFINITY, Exp.exp(100f));
        assertTrue(Float.isNaN(Exp.exp(Float.NaN)));
    }

    @Test
    void vectorEqualsScalarBitForBit() {
        SplittableRandom r = new SplittableRandom(2);
        var S = FloatVector.SPECIES_PREFERRED;
        float[] xs = new float[S.length() * 64];
        for (int i = 0; i < xs.length; i++) xs[i] = (float) (r.nextDouble() * 240 - 120);
        xs[0] = Float.NEGATIVE_INFINITY; xs[1] = Float.NaN; xs[2] = 0f; xs[3] = -87.3f;
        for (int i = 0; i < xs.length; i += S.length()) {
            float[] out = new float[S.length()];
            Exp.exp(FloatVector.fromArray(S, xs, i)).intoArray(out, 0);
            for (int j = 0; j < S.length(); j++)
                assertEquals(Float.floatToIntBits(Exp.exp(xs[i + j])), Float.floatToIntBits(out[j]), "x = " + xs[i + j]);
        }
        for (int n : new int[]{1, 7, 31, 33, 4097}) {
            float[] a = new float[n];
            for (int i = 0; i < n; i++) a[i] = (float) (r.nextDouble() * -20);
            float[] b = a.clone();
            float sa = Exp.expShiftSum(a, 0, n, -1f), sb = Exp.expShiftSumScalar(b, 0, n, -1f);
            assertArrayEquals(b, a);
            assertEquals(Float.floatToIntBits(sb), Float.floatToIntBits(sa), "n = " + n);
        }
    }
}
