package org.peft4j.model.adapter.lora;

import java.util.SplittableRandom;

/// Random tensors and a double-precision reference for the LoRA tests: the "another way" each number is checked by.
final class Fixtures {
    private Fixtures() {}

    static float[] uniform(SplittableRandom rng, int n, double bound) {
        float[] a = new float[n];
        for (int i = 0; i < n; i++) a[i] = (float) rng.nextDouble(-bound, bound);
        return a;
    }

    /// C(m, n) = A(m, k) · B(n, k)ᵀ in double: the textbook loop, independent of Gemm.
    static double[] matmulT(float[] a, float[] b, int m, int k, int n) {
        double[] c = new double[m * n];
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++) {
                double s = 0;
                for (int p = 0; p < k; p++) s += (double) a[i * k + p] * b[j * k + p];
                c[i * n + j] = s;
            }
        return c;
    }

    /// C(m, n) = A(m, k) · B(n, k)ᵀ in double, inputs already double.
    static double[] matmulT(double[] a, double[] b, int m, int k, int n) {
        double[] c = new double[m * n];
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++) {
                double s = 0;
                for (int p = 0; p < k; p++) s += a[i * k + p] * b[j * k + p];
                c[i * n + j] = s;
            }
        return c;
    }

    static double[] toDouble(float[] a) {
        double[] d = new double[a.length];
        for (int i = 0; i < a.length; i++) d[i] = a[i];
        return d;
    }

    /// The frozen base layer's output x·Wᵀ + b in float, as the caller of LoraLinear computes it.
    static float[] base(float[] x, float[] w, float[] bias, int N, int K, int M) {
        float[] y = new float[N * M];
        org.peft4j.core.kernels.ScalarGemm.INSTANCE.sgemm(false, true, N, M, K, 1f, x, 0, K, w, 0, K, 0f, y, 0, M);
        if (bias != null)
            for (int n = 0; n < N; n++)
                for (int m = 0; m < M; m++) y[n * M + m] += bias[m];
        return y;
    }
}
