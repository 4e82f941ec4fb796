package org.peft4j.testkit;

import static org.junit.jupiter.api.Assertions.fail;

/// Numeric comparisons that print where and by how much two arrays differ.
public final class Assert {
    private Assert() {}

    /// |expected − actual| ≤ atol + rtol·|expected| elementwise; on failure reports the worst index and the first 5 pairs.
    public static void assertClose(String what, double[] expected, double[] actual, double atol, double rtol) {
        if (expected.length != actual.length) fail(what + ": length " + actual.length + " != expected " + expected.length);
        double worst = -1; int wi = -1; int bad = 0;
        StringBuilder first = new StringBuilder();
        for (int i = 0; i < expected.length; i++) {
            double d = Math.abs(expected[i] - actual[i]);
            boolean ok = d <= atol + rtol * Math.abs(expected[i]) && !Double.isNaN(actual[i]) || expected[i] == actual[i];
            if (!ok) {
                if (bad < 5) first.append(String.format("%n  [%d] expected %.8g actual %.8g (diff %.3g)", i, expected[i], actual[i], d));
                bad++;
            }
            if (d > worst || Double.isNaN(d)) { worst = d; wi = i; }
        }
        if (bad > 0) fail(String.format("%s: %d of %d elements differ (atol %.1g, rtol %.1g); max abs diff %.4g at [%d]%s",
                what, bad, expected.length, atol, rtol, worst, wi, first));
    }

    public static void assertClose(String what, float[] expected, float[] actual, double atol, double rtol) {
        assertClose(what, toDouble(expected), toDouble(actual), atol, rtol);
    }

    public static double maxAbsDiff(float[] a, float[] b) {
        double m = 0;
        for (int i = 0; i < a.length; i++) m = Math.max(m, Math.abs((double) a[i] - b[i]));
        return m;
    }

    public static double[] toDouble(float[] a) {
        double[] d = new double[a.length];
        for (int i = 0; i < a.length; i++) d[i] = a[i];
        return d;
    }
}
