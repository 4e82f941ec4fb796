package org.peft4j.core.kernels;

import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorSpecies;
import org.peft4j.core.Gemm;

/// Single-threaded SGEMM for small products whose `op(B)` rows lie in memory as they are used:
/// `C(m,n) = alpha·op(A)·B + beta·C` with B `(k,n)` row-major, read in place (no packing), and A read a float at a
/// time, `(m,k)` row-major or, with `transA`, `(k,m)`. A register tile of 4 rows of C by 4 vectors accumulates over
/// the whole depth k before it is stored.
///
/// This is the shape of attention's products over a block of 64 query (or key) rows: k is at most the sequence
/// length, n is the head size or the keys, and a packed GEMM would spend as long packing as multiplying.
/// `transB` is not supported: pass Bᵀ materialised. Twin: [ScalarGemm] (tests compare the two).
///
/// Determinism: each element of C is summed in ascending k with fused multiply-adds, whatever the shape.
public final class PanelGemm implements Gemm {
    private static final VectorSpecies<Float> S = FloatVector.SPECIES_PREFERRED;
    private static final int L = S.length(), MR = 4, NV = 4, NR = NV * L;

    public static final PanelGemm INSTANCE = new PanelGemm();

    private PanelGemm() {}

    @Override
    public String name() { return "java-panel"; }

    @Override
    public void sgemm(boolean transA, boolean transB, int m, int n, int k, float alpha, float[] a, int aOff, int lda,
                      float[] b, int bOff, int ldb, float beta, float[] c, int cOff, int ldc) {
        if (transB) throw new IllegalArgumentException("PanelGemm reads B in place: transB is not supported, pass Bᵀ");
        Gemm.checkArgs(transA, false, m, n, k, a, aOff, lda, b, bOff, ldb, c, cOff, ldc);
        if (m == 0 || n == 0) return;
        int am = transA ? 1 : lda, ak = transA ? lda : 1;   // a(i, p) = a[aOff + i·am + p·ak]
        int j = 0;
        for (; j + NR <= n; j += NR) {
            int i = 0;
            for (; i + MR <= m; i += MR) tile4x4(k, alpha, a, aOff + i * am, am, ak, b, bOff + j, ldb, beta, c, cOff + i * ldc + j, ldc);
            for (; i < m; i++) row(NV, k, alpha, a, aOff + i * am, ak, b, bOff + j, ldb, beta, c, cOff + i * ldc + j);
        }
        for (; j + L <= n; j += L)
            for (int i = 0; i < m; i++) row(1, k, alpha, a, aOff + i * am, ak, b, bOff + j, ldb, beta, c, cOff + i * ldc + j);
        for (; j < n; j++)
            for (int i = 0; i < m; i++) {
                int ao = aOff + i * am, bo = bOff + j;
                float acc = 0f;
                for (int p = 0; p < k; p++) acc = Math.fma(a[ao + p * ak], b[bo + p * ldb], acc);
                int co = cOff + i * ldc + j;
                c[co] = beta == 0f ? alpha * acc : alpha * acc + beta * c[co];
            }
    }

    /// C[4 rows, NR columns] at co: 16 accumulators, B's four vectors loaded once per p, A's four values broadcast.
    private static void tile4x4(int k, float alpha, float[] a, int ao, int am, int ak, float[] b, int bo, int ldb,
                                float beta, float[] c, int co, int ldc) {
        FloatVector c00 = FloatVector.zero(S), c01 = c00, c02 = c00, c03 = c00;
        FloatVector c10 = c00, c11 = c00, c12 = c00, c13 = c00;
        FloatVector c20 = c00, c21 = c00, c22 = c00, c23 = c00;
        FloatVector c30 = c00, c31 = c00, c32 = c00, c33 = c00;
        for (int p = 0; p < k; p++, ao += ak, bo += ldb) {
            FloatVector b0 = FloatVector.fromArray(S, b, bo), b1 = FloatVector.fromArray(S, b, bo + L);
            FloatVector b2 = FloatVector.fromArray(S, b, bo + 2 * L), b3 = FloatVector.fromArray(S, b, bo + 3 * L);
            FloatVector x = FloatVector.broadcast(S, a[ao]);
            c00 = b0.fma(x, c00); c01 = b1.fma(x, c01); c02 = b2.fma(x, c02); c03 = b3.fma(x, c03);
            x = FloatVector.broadcast(S, a[ao + am]);
            c10 = b0.fma(x, c10); c11 = b1.fma(x, c11); c12 = b2.fma(x, c12); c13 = b3.fma(x, c13);
            x = FloatVector.broadcast(S, a[ao + 2 * am]);
            c20 = b0.fma(x, c20); c21 = b1.fma(x, c21); c22 = b2.fma(x, c22); c23 = b3.fma(x, c23);
            x = FloatVector.broadcast(S, a[ao + 3 * am]);
            c30 = b0.fma(x, c30); c31 = b1.fma(x, c31); c32 = b2.fma(x, c32); c33 = b3.fma(x, c33);
        }
        store(c00, c, co, alpha, beta); store(c01, c, co + L, alpha, beta);
        store(c02, c, co + 2 * L, alpha, beta); store(c03, c, co + 3 * L, alpha, beta);
        co += ldc;
        store(c10, c, co, alpha, beta); store(c11, c, co + L, alpha, beta);
        store(c12, c, co + 2 * L, alpha, beta); store(c13, c, co + 3 * L, alpha, beta);
        co += ldc;
        store(c20, c, co, alpha, beta); store(c21, c, co + L, alpha, beta);
        store(c22, c, co + 2 * L, alpha, beta); store(c23, c, co + 3 * L, alpha, beta);
        co += ldc;
        store(c30, c, co, alpha, beta); store(c31, c, co + L, alpha, beta);
        store(c32, c, co + 2 * L, alpha, beta); store(c33, c, co + 3 * L, alpha, beta);
    }

    /// One row of C, nv (1 or NV) vectors at co.
    private static void row(int nv, int k, float alpha, float[] a, int ao, int ak, float[] b, int bo, int ldb,
                            float beta, float[] c, int co) {
        for (int v = 0; v < nv; v++) {
            FloatVector acc = FloatVector.zero(S);
            for (int p = 0, ap = ao, bp = bo + v * L; p < k; p++, ap += ak, bp += ldb)
                acc = FloatVector.fromArray(S, b, bp).fma(FloatVector.broadcast(S, a[ap]), acc);
            store(acc, c, co + v * L, alpha, beta);
        }
    }

    private static void store(FloatVector acc, float[] c, int i, float alpha, float beta) {
        FloatVector r = acc.mul(alpha);
        if (beta != 0f) r = FloatVector.fromArray(S, c, i).fma(FloatVector.broadcast(S, beta), r);
        r.intoArray(c, i);
    }
}
