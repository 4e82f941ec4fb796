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

    /// `Y(N,M) = X(N,K) · W(M,K)ᵀ` — the forward of `nn.Linear` without bias.
    default void linear(float[] y, float[] x, float[] w, int n, int k, int m) {
        sgemm(false, true, n, m, k, 1f, x, 0, k, w, 0, k, 0f, y, 0, m);
    }
}
