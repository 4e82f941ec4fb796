package org.peft4j.core.kernels;

import java.util.Arrays;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorSpecies;
import org.peft4j.core.Gemm;
import org.peft4j.core.Parallel;

/// Pure-Java SGEMM on the Vector API, twin of [ScalarGemm]. GotoBLAS/BLIS scheme (Goto & van de Geijn, "Anatomy
/// of High-Performance Matrix Multiplication", 2008): a `KC × NC` panel of op(B) and an `MC × KC` block of op(A) are
/// packed into per-thread buffers, then a register-tile micro-kernel sweeps them, vectors running along the rows of C.
/// `m == 1` or `n == 1` (decode) go to a matrix-vector path without packing, bound by memory bandwidth.
///
/// Determinism: C is cut into fixed tile ranges, one per thread, chosen from the shape and thread count only; each
/// element is summed by one thread in ascending `k` with fused multiply-adds, so a rerun is bit-identical.
public final class VectorGemm implements Gemm {
    static final VectorSpecies<Float> S = FloatVector.SPECIES_PREFERRED;
    static final int L = S.length();
    /// Depth of a packed panel: a `MR × KC` micro-panel of A (6 KB) stays in L1 while B streams from L2.
    static final int KC = 256;
    /// Below this many multiply-adds, forking costs more than it saves.
    static final long SERIAL_FMAS = 1L << 20;
    /// Column block of the matrix-vector path: its accumulators (1 KB) stay in L1.
    static final int GEMV_COLS = 256;

    /// Register tile of the micro-kernel: `mr` rows of C by `nrv` vectors, all accumulators held in registers.
    public enum Tile {
        /// 6 rows × 4 vectors = 24 accumulators + 4 B vectors + 1 broadcast: for 32 registers (AVX-512).
        WIDE(6, 4),
        /// 4 rows × 2 vectors = 8 accumulators: for 16 registers (AVX2); 6 × 2 spills in C2's code there.
        NARROW(4, 2);

        final int mr, nrv, nr;

        Tile(int mr, int nrv) { this.mr = mr; this.nrv = nrv; this.nr = nrv * L; }

        /// WIDE where the preferred species is 512 bits (which implies 32 registers), otherwise NARROW.
        public static Tile preferred() { return S.vectorBitSize() >= 512 ? WIDE : NARROW; }
    }

    /// The instance with this machine's preferred tile; instances hold no mutable state.
    public static final VectorGemm INSTANCE = new VectorGemm(Tile.preferred());

    private final Tile tile;
    private final int mc, nc;   // rows of A and columns of B packed per block: multiples of mr and nr

    /// A GEMM with the given register tile; tests use this to run both tiles on one machine.
    public VectorGemm(Tile tile) {
        this.tile = tile;
        this.mc = tile.mr * 16;
        this.nc = Math.max(1, 512 / tile.nr) * tile.nr;
    }

    /// The register tile this instance's micro-kernel uses.
    public Tile tile() { return tile; }

    @Override
    public String name() { return "java-vector"; }

    @Override
    public String toString() { return "java-vector(" + S.vectorBitSize() + "-bit, tile " + tile.mr + "x" + tile.nr + ")"; }

    /// Per-thread packing buffers, grown on first use and then reused: no allocation per call after warm-up.
    private static final class Scratch {
        float[] ap = new float[0], bp = new float[0], tile = new float[0], x = new float[0], acc = new float[0];
    }

    private static final ThreadLocal<Scratch> SCRATCH = ThreadLocal.withInitial(Scratch::new);

    @Override
    public void sgemm(boolean transA, boolean transB, int m, int n, int k,
                      float alpha, float[] a, int aOff, int lda,
                      float[] b, int bOff, int ldb,
                      float beta, float[] c, int cOff, int ldc) {
        Gemm.checkArgs(transA, transB, m, n, k, a, aOff, lda, b, bOff, ldb, c, cOff, ldc);
        if (m == 0 || n == 0) return;
        if (k == 0 || alpha == 0f) { scaleC(m, n, beta, c, cOff, ldc); return; }
        if (m == 1) {        // one row of C: x = op(A) row 0, matrix = op(B)
            gemv(transB, n, k, alpha, a, aOff, transA ? lda : 1, b, bOff, ldb, beta, c, cOff, 1);
        } else if (n == 1) { // one column of C, as its transpose: x = op(B) column 0, matrix = op(A)ᵀ
            gemv(!transA, m, k, alpha, b, bOff, transB ? 1 : ldb, a, aOff, lda, beta, c, cOff, ldc);
        } else {
            packed(transA, transB, m, n, k, alpha, a, aOff, lda, b, bOff, ldb, beta, c, cOff, ldc);
        }
    }

    private static void scaleC(int m, int n, float beta, float[] c, int cOff, int ldc) {
        for (int i = 0; i < m; i++) {
            int r = cOff + i * ldc;
            if (beta == 0f) Arrays.fill(c, r, r + n, 0f);
            else if (beta != 1f) VectorOps.scale(beta, c, r, n);
        }
    }

    private static float out(float acc, float alpha, float beta, float old) {
        return beta == 0f ? alpha * acc : Math.fma(old, beta, alpha * acc);
    }

    // ---- matrix-vector: c[j] = alpha · Σp x[p]·M[p][j] + beta · c[j] -------------------------------------------

    /// `rowsOverJ`: M[p][j] = mat[mo + j·ld + p] (dot products along rows), else mat[mo + p·ld + j] (axpy rows).
    private static void gemv(boolean rowsOverJ, int n, int k, float alpha, float[] x, int xo, int xs,
                             float[] mat, int mo, int ld, float beta, float[] c, int co, int cs) {
        if (xs != 1) {
            Scratch s = SCRATCH.get();
            if (s.x.length < k) s.x = new float[k];
            for (int p = 0; p < k; p++) s.x[p] = x[xo + p * xs];
            x = s.x;
            xo = 0;
        }
        float[] xv = x;
        int xvo = xo;
        int chunks = (long) n * k < SERIAL_FMAS ? 1 : Parallel.threads();
        if (rowsOverJ) {
            Parallel.chunks((n + 3) / 4, chunks, (ci, from, to) ->
                    dotRows(4 * from, Math.min(n, 4 * to), k, alpha, xv, xvo, mat, mo, ld, beta, c, co, cs));
        } else {
            Parallel.chunks((n + L - 1) / L, chunks, (ci, from, to) ->
                    axpyRows(L * from, Math.min(n, L * to), k, alpha, xv, xvo, mat, mo, ld, beta, c, co, cs));
        }
    }

    /// Four rows at a time, so each x vector is loaded once per four rows of M.
    private static void dotRows(int j0, int j1, int k, float alpha, float[] x, int xo,
                                float[] mat, int mo, int ld, float beta, float[] c, int co, int cs) {
        int j = j0;
        for (; j + 4 <= j1; j += 4) {
            int r0 = mo + j * ld, r1 = r0 + ld, r2 = r1 + ld, r3 = r2 + ld;
            FloatVector s0 = FloatVector.zero(S), s1 = s0, s2 = s0, s3 = s0;
            int p = 0;
            for (int up = k - L; p <= up; p += L) {
                FloatVector xp = FloatVector.fromArray(S, x, xo + p);
                s0 = FloatVector.fromArray(S, mat, r0 + p).fma(xp, s0);
                s1 = FloatVector.fromArray(S, mat, r1 + p).fma(xp, s1);
                s2 = FloatVector.fromArray(S, mat, r2 + p).fma(xp, s2);
                s3 = FloatVector.fromArray(S, mat, r3 + p).fma(xp, s3);
            }
            float t0 = 0f, t1 = 0f, t2 = 0f, t3 = 0f;
            for (; p < k; p++) {
                float xp = x[xo + p];
                t0 = Math.fma(mat[r0 + p], xp, t0);
                t1 = Math.fma(mat[r1 + p], xp, t1);
                t2 = Math.fma(mat[r2 + p], xp, t2);
                t3 = Math.fma(mat[r3 + p], xp, t3);
            }
            int o = co + j * cs;
            c[o] = out(VectorOps.sumLanes(s0) + t0, alpha, beta, c[o]);
            c[o + cs] = out(VectorOps.sumLanes(s1) + t1, alpha, beta, c[o + cs]);
            c[o + 2 * cs] = out(VectorOps.sumLanes(s2) + t2, alpha, beta, c[o + 2 * cs]);
            c[o + 3 * cs] = out(VectorOps.sumLanes(s3) + t3, alpha, beta, c[o + 3 * cs]);
        }
        for (; j < j1; j++) {
            int o = co + j * cs;
            c[o] = out(VectorOps.dot(mat, mo + j * ld, x, xo, k), alpha, beta, c[o]);
        }
    }

    /// Accumulates `GEMV_COLS` columns over all of k in an L1-resident buffer, streaming rows of M once.
    private static void axpyRows(int j0, int j1, int k, float alpha, float[] x, int xo,
                                 float[] mat, int mo, int ld, float beta, float[] c, int co, int cs) {
        Scratch s = SCRATCH.get();
        if (s.acc.length < GEMV_COLS) s.acc = new float[GEMV_COLS];
        float[] acc = s.acc;
        for (int jb = j0; jb < j1; jb += GEMV_COLS) {
            int w = Math.min(GEMV_COLS, j1 - jb);
            Arrays.fill(acc, 0, w, 0f);
            for (int p = 0; p < k; p++) {
                float xp = x[xo + p];
                FloatVector xb = FloatVector.broadcast(S, xp);
                int r = mo + p * ld + jb;
                int j = 0;
                for (int up = w - L; j <= up; j += L)
                    FloatVector.fromArray(S, mat, r + j).fma(xb, FloatVector.fromArray(S, acc, j)).intoArray(acc, j);
                for (; j < w; j++) acc[j] = Math.fma(mat[r + j], xp, acc[j]);
            }
            for (int j = 0; j < w; j++) {
                int o = co + (jb + j) * cs;
                c[o] = out(acc[j], alpha, beta, c[o]);
            }
        }
    }

    // ---- packed path ------------------------------------------------------------------------------------------

    private void packed(boolean transA, boolean transB, int m, int n, int k,
                        float alpha, float[] a, int aOff, int lda, float[] b, int bOff, int ldb,
                        float beta, float[] c, int cOff, int ldc) {
        int mr = tile.mr, nr = tile.nr;
        int t = (long) m * n * k < SERIAL_FMAS ? 1 : Parallel.threads();
        if (t == 1) {
            block(transA, transB, 0, m, 0, n, k, alpha, a, aOff, lda, b, bOff, ldb, beta, c, cOff, ldc);
            return;
        }
        // split the dimension whose largest per-thread share is smaller; ties go to m
        int mTiles = (m + mr - 1) / mr, nTiles = (n + nr - 1) / nr;
        long mShare = (long) ((mTiles + t - 1) / t) * mr * n, nShare = (long) ((nTiles + t - 1) / t) * nr * m;
        if (mShare <= nShare) {
            Parallel.chunks(mTiles, t, (ci, from, to) -> block(transA, transB, from * mr, Math.min(m, to * mr), 0, n,
                    k, alpha, a, aOff, lda, b, bOff, ldb, beta, c, cOff, ldc));
        } else {
            Parallel.chunks(nTiles, t, (ci, from, to) -> block(transA, transB, 0, m, from * nr, Math.min(n, to * nr),
                    k, alpha, a, aOff, lda, b, bOff, ldb, beta, c, cOff, ldc));
        }
    }

    /// C[m0:m1, n0:n1] on the calling thread; loops jc → pc → (pack B) → ic → (pack A) → ir → jr → micro-kernel.
    private void block(boolean transA, boolean transB, int m0, int m1, int n0, int n1, int k,
                       float alpha, float[] a, int aOff, int lda, float[] b, int bOff, int ldb,
                       float beta, float[] c, int cOff, int ldc) {
        int mr = tile.mr, nr = tile.nr;
        Scratch s = SCRATCH.get();
        if (s.ap.length < mc * KC) s.ap = new float[mc * KC];
        if (s.bp.length < nc * KC) s.bp = new float[nc * KC];
        if (s.tile.length < mr * nr) s.tile = new float[mr * nr];
        float[] ap = s.ap, bp = s.bp, tmp = s.tile;
        // equal blocks rather than full ones plus a sliver: k=576 runs as 3×192, not 256+256+64
        int kcMax = ceilDiv(k, ceilDiv(k, KC));
        int ncMax = Math.min(nc, ceilDiv(ceilDiv(n1 - n0, ceilDiv(n1 - n0, nc)), nr) * nr);
        for (int jc = n0; jc < n1; jc += ncMax) {
            int ncb = Math.min(ncMax, n1 - jc);
            for (int pc = 0; pc < k; pc += kcMax) {
                int kc = Math.min(kcMax, k - pc);
                float betaBlock = pc == 0 ? beta : 1f;   // later k-blocks add to what the first one wrote
                packB(bp, transB, b, bOff, ldb, pc, kc, jc, ncb, nr);
                for (int ic = m0; ic < m1; ic += mc) {
                    int mcb = Math.min(mc, m1 - ic);
                    packA(ap, transA, a, aOff, lda, ic, mcb, pc, kc, mr);
                    for (int ir = 0; ir < mcb; ir += mr) {
                        int rows = Math.min(mr, mcb - ir);
                        for (int jr = 0; jr < ncb; jr += nr) {
                            int cols = Math.min(nr, ncb - jr);
                            int ci = cOff + (ic + ir) * ldc + jc + jr;
                            if (rows == mr && cols == nr) {
                                kernel(ap, ir * kc, bp, jr * kc, kc, c, ci, ldc, alpha, betaBlock);
                            } else {   // edge tile: compute it whole into tmp, then write the part inside C
                                kernel(ap, ir * kc, bp, jr * kc, kc, tmp, 0, nr, 1f, 0f);
                                for (int r = 0; r < rows; r++)
                                    for (int j = 0; j < cols; j++) {
                                        int o = ci + r * ldc + j;
                                        c[o] = out(tmp[r * nr + j], alpha, betaBlock, c[o]);
                                    }
                            }
                        }
                    }
                }
            }
        }
    }

    private static int ceilDiv(int a, int b) { return (a + b - 1) / b; }

    /// op(B)[pc:pc+kc, jc:jc+ncb] into micro-panels of nr columns: panel q holds, for each p, nr contiguous floats.
    private static void packB(float[] bp, boolean transB, float[] b, int bOff, int ldb,
                              int pc, int kc, int jc, int ncb, int nr) {
        for (int jr = 0; jr < ncb; jr += nr) {
            int cols = Math.min(nr, ncb - jr), base = jr * kc;
            if (!transB) {
                for (int p = 0; p < kc; p++)
                    System.arraycopy(b, bOff + (pc + p) * ldb + jc + jr, bp, base + p * nr, cols);
            } else {
                for (int j = 0; j < cols; j++) {
                    int src = bOff + (jc + jr + j) * ldb + pc;
                    for (int p = 0; p < kc; p++) bp[base + p * nr + j] = b[src + p];
                }
            }
            if (cols < nr)
                for (int p = 0; p < kc; p++) Arrays.fill(bp, base + p * nr + cols, base + (p + 1) * nr, 0f);
        }
    }

    /// op(A)[ic:ic+mcb, pc:pc+kc] into micro-panels of mr rows: panel q holds, for each p, mr contiguous floats.
    private static void packA(float[] ap, boolean transA, float[] a, int aOff, int lda,
                              int ic, int mcb, int pc, int kc, int mr) {
        for (int ir = 0; ir < mcb; ir += mr) {
            int rows = Math.min(mr, mcb - ir), base = ir * kc;
            if (!transA) {
                for (int r = 0; r < rows; r++) {
                    int src = aOff + (ic + ir + r) * lda + pc;
                    for (int p = 0; p < kc; p++) ap[base + p * mr + r] = a[src + p];
                }
            } else {
                for (int p = 0; p < kc; p++)
                    System.arraycopy(a, aOff + (pc + p) * lda + ic + ir, ap, base + p * mr, rows);
            }
            if (rows < mr)
                for (int p = 0; p < kc; p++) Arrays.fill(ap, base + p * mr + rows, base + (p + 1) * mr, 0f);
        }
    }

    // ---- micro-kernels: C[mr × nr] = alpha · Ap·Bp + beta · C, accumulators in registers ----------------------

    private void kernel(float[] ap, int ao, float[] bp, int bo, int kc,
                        float[] c, int co, int ldc, float alpha, float beta) {
        switch (tile) {
            case WIDE -> kernel6x4(ap, ao, bp, bo, kc, c, co, ldc, alpha, beta);
            case NARROW -> kernel4x2(ap, ao, bp, bo, kc, c, co, ldc, alpha, beta);
        }
    }

    private static void store(FloatVector acc, float[] c, int i, float alpha, float beta) {
        FloatVector r = acc.mul(alpha);
        if (beta != 0f) r = FloatVector.fromArray(S, c, i).fma(FloatVector.broadcast(S, beta), r);
        r.intoArray(c, i);
    }

    private static void kernel6x4(float[] ap, int ao, float[] bp, int bo, int kc,
                                  float[] c, int co, int ldc, float alpha, float beta) {
        FloatVector z = FloatVector.zero(S);
        FloatVector c00 = z, c01 = z, c02 = z, c03 = z, c10 = z, c11 = z, c12 = z, c13 = z;
        FloatVector c20 = z, c21 = z, c22 = z, c23 = z, c30 = z, c31 = z, c32 = z, c33 = z;
        FloatVector c40 = z, c41 = z, c42 = z, c43 = z, c50 = z, c51 = z, c52 = z, c53 = z;
        for (int p = 0; p < kc; p++) {
            int bi = bo + p * 4 * L, ai = ao + p * 6;
            FloatVector b0 = FloatVector.fromArray(S, bp, bi), b1 = FloatVector.fromArray(S, bp, bi + L);
            FloatVector b2 = FloatVector.fromArray(S, bp, bi + 2 * L), b3 = FloatVector.fromArray(S, bp, bi + 3 * L);
            FloatVector x = FloatVector.broadcast(S, ap[ai]);
            c00 = x.fma(b0, c00); c01 = x.fma(b1, c01); c02 = x.fma(b2, c02); c03 = x.fma(b3, c03);
            x = FloatVector.broadcast(S, ap[ai + 1]);
            c10 = x.fma(b0, c10); c11 = x.fma(b1, c11); c12 = x.fma(b2, c12); c13 = x.fma(b3, c13);
            x = FloatVector.broadcast(S, ap[ai + 2]);
            c20 = x.fma(b0, c20); c21 = x.fma(b1, c21); c22 = x.fma(b2, c22); c23 = x.fma(b3, c23);
            x = FloatVector.broadcast(S, ap[ai + 3]);
            c30 = x.fma(b0, c30); c31 = x.fma(b1, c31); c32 = x.fma(b2, c32); c33 = x.fma(b3, c33);
            x = FloatVector.broadcast(S, ap[ai + 4]);
            c40 = x.fma(b0, c40); c41 = x.fma(b1, c41); c42 = x.fma(b2, c42); c43 = x.fma(b3, c43);
            x = FloatVector.broadcast(S, ap[ai + 5]);
            c50 = x.fma(b0, c50); c51 = x.fma(b1, c51); c52 = x.fma(b2, c52); c53 = x.fma(b3, c53);
        }
        int r = co;
        store(c00, c, r, alpha, beta); store(c01, c, r + L, alpha, beta);
        store(c02, c, r + 2 * L, alpha, beta); store(c03, c, r + 3 * L, alpha, beta);
        r += ldc;
        store(c10, c, r, alpha, beta); store(c11, c, r + L, alpha, beta);
        store(c12, c, r + 2 * L, alpha, beta); store(c13, c, r + 3 * L, alpha, beta);
        r += ldc;
        store(c20, c, r, alpha, beta); store(c21, c, r + L, alpha, beta);
        store(c22, c, r + 2 * L, alpha, beta); store(c23, c, r + 3 * L, alpha, beta);
        r += ldc;
        store(c30, c, r, alpha, beta); store(c31, c, r + L, alpha, beta);
        store(c32, c, r + 2 * L, alpha, beta); store(c33, c, r + 3 * L, alpha, beta);
        r += ldc;
        store(c40, c, r, alpha, beta); store(c41, c, r + L, alpha, beta);
        store(c42, c, r + 2 * L, alpha, beta); store(c43, c, r + 3 * L, alpha, beta);
        r += ldc;
        store(c50, c, r, alpha, beta); store(c51, c, r + L, alpha, beta);
        store(c52, c, r + 2 * L, alpha, beta); store(c53, c, r + 3 * L, alpha, beta);
    }

    private static void kernel4x2(float[] ap, int ao, float[] bp, int bo, int kc,
                                  float[] c, int co, int ldc, float alpha, float beta) {
        FloatVector z = FloatVector.zero(S);
        FloatVector c00 = z, c01 = z, c10 = z, c11 = z, c20 = z, c21 = z, c30 = z, c31 = z;
        for (int p = 0; p < kc; p++) {
            int bi = bo + p * 2 * L, ai = ao + p * 4;
            FloatVector b0 = FloatVector.fromArray(S, bp, bi), b1 = FloatVector.fromArray(S, bp, bi + L);
            FloatVector x = FloatVector.broadcast(S, ap[ai]);
            c00 = x.fma(b0, c00); c01 = x.fma(b1, c01);
            x = FloatVector.broadcast(S, ap[ai + 1]);
            c10 = x.fma(b0, c10); c11 = x.fma(b1, c11);
            x = FloatVector.broadcast(S, ap[ai + 2]);
            c20 = x.fma(b0, c20); c21 = x.fma(b1, c21);
            x = FloatVector.broadcast(S, ap[ai + 3]);
            c30 = x.fma(b0, c30); c31 = x.fma(b1, c31);
        }
        store(c00, c, co, alpha, beta); store(c01, c, co + L, alpha, beta);
        store(c10, c, co + ldc, alpha, beta); store(c11, c, co + ldc + L, alpha, beta);
        store(c20, c, co + 2 * ldc, alpha, beta); store(c21, c, co + 2 * ldc + L, alpha, beta);
        store(c30, c, co + 3 * ldc, alpha, beta); store(c31, c, co + 3 * ldc + L, alpha, beta);
    }
}
