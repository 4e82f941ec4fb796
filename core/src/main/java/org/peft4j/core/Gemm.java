package org.peft4j.core;

/// Row-major single-precision matrix product, BLAS semantics:
/// `C(m,n) = alpha · op(A) · op(B) + beta · C`, where `op(A)` is `(m,k)` and `op(B)` is `(k,n)`.
/// `A` is stored `(m,k)` with leading dimension `lda` (or `(k,m)` when `transA`), likewise `B`.
/// With `beta == 0`, `C` is overwritten and its old contents (even NaN) are ignored.
///
/// The three shapes a linear layer needs, with `W` stored `(M,K)` as in PyTorch:
/// forward `Y = X·Wᵀ` is `(false, true)`, input gradient `dX = dY·W` is `(false, false)`,
/// weight gradient `dW += dYᵀ·X` is `(true, false)`.
public interface Gemm {
    void sgemm(boolean transA, boolean transB, int m, int n, int k,
               float alpha, float[] a, int aOff, int lda,
               float[] b, int bOff, int ldb,
               float beta, float[] c, int cOff, int ldc);

    /// A short name for logs and benchmarks ("scalar", "java-vector", "openblas").
    String name();

    /// The GEMM that runs this shape's `sgemm` call: a router (`auto`) answers with the one it picks, any other GEMM
    /// with itself. For a caller that must know whose bits a product gets (a cold-start twin of the Java GEMM).
    default Gemm routed(boolean transA, boolean transB, int m, int n, int k) { return this; }

    /// Checks dimensions, leading dimensions and that every element `sgemm` may touch lies inside its array.
    /// Native implementations must call this before handing heap arrays to C; it costs nothing per element.
    static void checkArgs(boolean transA, boolean transB, int m, int n, int k,
                          float[] a, int aOff, int lda, float[] b, int bOff, int ldb,
                          float[] c, int cOff, int ldc) {
        if (m < 0 || n < 0 || k < 0)
            throw new IllegalArgumentException("sgemm dimensions must be >= 0, got m=" + m + " n=" + n + " k=" + k);
        checkMatrix("A", a, aOff, lda, transA ? k : m, transA ? m : k);
        checkMatrix("B", b, bOff, ldb, transB ? n : k, transB ? k : n);
        checkMatrix("C", c, cOff, ldc, m, n);
    }

    private static void checkMatrix(String what, float[] x, int off, int ld, int rows, int cols) {
        if (ld < Math.max(1, cols))
            throw new IllegalArgumentException("sgemm: leading dimension of " + what + " is " + ld
                    + " but a row has " + cols + " elements; pass ld >= " + Math.max(1, cols));
        if (rows == 0 || cols == 0) return;
        long last = (long) off + (long) (rows - 1) * ld + cols - 1;
        if (off < 0 || last >= x.length)
            throw new IndexOutOfBoundsException("sgemm: " + what + " (" + rows + "x" + cols + ", ld " + ld
                    + ", offset " + off + ") needs index " + last + " but the array has length " + x.length);
    }

    /// `Y(N,M) = X(N,K) · W(M,K)ᵀ` — the forward of `nn.Linear` without bias.
    default void linear(float[] y, float[] x, float[] w, int n, int k, int m) {
        sgemm(false, true, n, m, k, 1f, x, 0, k, w, 0, k, 0f, y, 0, m);
    }
}
