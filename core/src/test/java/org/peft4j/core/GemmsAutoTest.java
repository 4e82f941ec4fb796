package org.peft4j.core;

import org.junit.jupiter.api.Test;
import org.peft4j.core.kernels.VectorGemm;

import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.*;

/// `auto` runs small products (few rows, or few multiply-adds) on the Java GEMM whatever the calibration chose:
/// bit for bit its result, for each of the three layouts the layers use.
class GemmsAutoTest {
    @Test
    void smallProductsTakeTheJavaGemm() {
        assertTrue(Gemms.small(1, 49152, 576), "a decode row");
        assertTrue(Gemms.small(Gemms.SMALL_ROWS, 1536, 576));
        assertTrue(Gemms.small(64, 16, 576), "LoRA's A product over 64 rows");
        assertFalse(Gemms.small(512, 1536, 576), "a prefill product");
        Gemm auto = Gemms.get("auto");
        var rng = new SplittableRandom(3);
        int[][] shapes = {{1, 37, 29}, {5, 16, 70}, {32, 64, 33}, {64, 16, 100}};
        for (int[] s : shapes) {
            int m = s[0], n = s[1], k = s[2];
            assertTrue(Gemms.small(m, n, k));
            for (int layout = 0; layout < 3; layout++) {
                boolean tA = layout == 2, tB = layout == 0;
                float[] a = new float[m * k], b = new float[n * k], c0 = new float[m * n];
                for (float[] x : new float[][]{a, b, c0}) for (int i = 0; i < x.length; i++) x[i] = (float) rng.nextGaussian();
                float[] cAuto = c0.clone(), cJava = c0.clone();
                int lda = tA ? m : k, ldb = tB ? k : n;
                auto.sgemm(tA, tB, m, n, k, 0.5f, a, 0, lda, b, 0, ldb, 1f, cAuto, 0, n);
                VectorGemm.INSTANCE.sgemm(tA, tB, m, n, k, 0.5f, a, 0, lda, b, 0, ldb, 1f, cJava, 0, n);
                assertArrayEquals(cJava, cAuto, m + "x" + n + "x" + k + " layout " + layout);
            }
        }
    }
}
