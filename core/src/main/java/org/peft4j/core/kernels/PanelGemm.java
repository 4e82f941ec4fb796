package org.peft4j.core.kernels;

import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorSpecies;
import org.peft4j.core.Gemm;
import org.peft4j.core.Parallel;

/// Single-threaded SGEMM for small products whose `op(B)` rows lie in memory as they are used:
/// `C(m,n) = alpha·op(A)·B + beta·C` with B `(k,n)` row-major, read in place (no packing), and A read a float at a
/// time, `(m,k)` row-major or, with `transA`, `(k,m)`. A register tile of 4 rows of C by 4 vectors (8 rows by one
/// vector where C is narrower) accumulates over the whole depth k before it is stored.
///
/// This is the shape of attention's products over a block of 64 query (or key) rows (k at most the sequence length,
/// n the head size or the keys) and of LoRA's rank-r products with a long k (n or m = r): a packed GEMM would spend
/// as long packing as multiplying.
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

    /// As [#sgemm] on [Parallel]'s threads: C is cut into fixed row blocks (or column blocks, when C is wider than
    /// tall), one single-threaded call each. Every element is summed the same way whatever the cut, so the result is
    /// bit-identical for any thread count.
    public void sgemmParallel(boolean transA, int m, int n, int k, float alpha, float[] a, int aOff, int lda,
                              float[] b, int bOff, int ldb, float beta, float[] c, int cOff, int ldc) {
        Gemm.checkArgs(transA, false, m, n, k, a, aOff, lda, b, bOff, ldb, c, cOff, ldc);
        int t = Parallel.inTask() ? 1 : Parallel.threads();
        if (t == 1 || (long) m * n * k < SERIAL_FMAS) {
            sgemm(transA, false, m, n, k, alpha, a, aOff, lda, b, bOff, ldb, beta, c, cOff, ldc);
            return;
        }
        int am = transA ? 1 : lda;
        if (m >= n) {
            int blocks = (m + 7) / 8;       // whole 8-row tiles per chunk
            Parallel.chunks(blocks, t, (ci, from, to) -> {
                int i0 = from * 8, i1 = Math.min(m, to * 8);
                sgemm(transA, false, i1 - i0, n, k, alpha, a, aOff + i0 * am, lda, b, bOff, ldb, beta, c, cOff + i0 * ldc, ldc);
            });
        } else {
            int blocks = (n + NR - 1) / NR;  // whole panels per chunk
            Parallel.chunks(blocks, t, (ci, from, to) -> {
                int j0 = from * NR, j1 = Math.min(n, to * NR);
                sgemm(transA, false, m, j1 - j0, k, alpha, a, aOff, lda, b, bOff + j0, ldb, beta, c, cOff + j0, ldc);
            });
        }
    }

    /// Below this many multiply-adds a product runs on the calling thread.
    static final long SERIAL_FMAS = 1L << 18;

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
        for (; j + L <= n; j += L) {
            int i = 0;
            for (; i + 8 <= m; i += 8) tile8x1(k, alpha, a, aOff + i * am, am, ak, b, bOff + j, ldb, beta, c, cOff + i * ldc + j, ldc);
            for (; i < m; i++) row(1, k, alpha, a, aOff + i * am, ak, b, bOff + j, ldb, beta, c, cOff + i * ldc + j);
        }
        for (; j < n; j++)
            for (int i = 0; i < m; i++) {
                int ao = aOff + i * am, bo = bOff + j;
                float acc = 0f;
                for (int p = 0; p < k; p++) acc = Math.fma(a[ao + p * ak], b[bo + p * ldb], acc);
                int co = cOff + i * ldc + j;
                c[co] = beta == 0f ? alpha * acc : Math.fma(c[co], beta, alpha * acc);   // as store() does
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

    /// C[8 rows, one vector] at co: for narrow products (n = a LoRA rank), 8 accumulators, one B vector per p.
    private static void tile8x1(int k, float alpha, float[] a, int ao, int am, int ak, float[] b, int bo, int ldb,
                                float beta, float[] c, int co, int ldc) {
        FloatVector c0 = FloatVector.zero(S), c1 = c0, c2 = c0, c3 = c0, c4 = c0, c5 = c0, c6 = c0, c7 = c0;
        for (int p = 0; p < k; p++, ao += ak, bo += ldb) {
            FloatVector bv = FloatVector.fromArray(S, b, bo);
            c0 = bv.fma(FloatVector.broadcast(S, a[ao]), c0);
            c1 = bv.fma(FloatVector.broadcast(S, a[ao + am]), c1);
            c2 = bv.fma(FloatVector.broadcast(S, a[ao + 2 * am]), c2);
            c3 = bv.fma(FloatVector.broadcast(S, a[ao + 3 * am]), c3);
            c4 = bv.fma(FloatVector.broadcast(S, a[ao + 4 * am]), c4);
            c5 = bv.fma(FloatVector.broadcast(S, a[ao + 5 * am]), c5);
            c6 = bv.fma(FloatVector.broadcast(S, a[ao + 6 * am]), c6);
            c7 = bv.fma(FloatVector.broadcast(S, a[ao + 7 * am]), c7);
        }
        store(c0, c, co, alpha, beta); store(c1, c, co + ldc, alpha, beta);
        store(c2, c, co + 2 * ldc, alpha, beta); store(c3, c, co + 3 * ldc, alpha, beta);
        store(c4, c, co + 4 * ldc, alpha, beta); store(c5, c, co + 5 * ldc, alpha, beta);
        store(c6, c, co + 6 * ldc, alpha, beta); store(c7, c, co + 7 * ldc, alpha, beta);
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
