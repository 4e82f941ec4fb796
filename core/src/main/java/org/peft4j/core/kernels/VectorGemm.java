package org.peft4j.core.kernels;

import java.util.Arrays;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorSpecies;
import org.peft4j.core.Gemm;
import org.peft4j.core.Parallel;

/// Pure-Java SGEMM on the Vector API, twin of [ScalarGemm], and the Java path of [org.peft4j.core.Gemms] (`java`, and
/// `auto` where OpenBLAS does not load). GotoBLAS/BLIS scheme (Goto & van de Geijn, "Anatomy of High-Performance
/// Matrix Multiplication", 2008): a `KC × NC` block of op(B) is packed into a per-thread buffer as micro-panels of
/// `nr` columns (the packing does the transposition `transB` asks for), and a register-tile micro-kernel of `mr` rows
/// by `nr` columns sweeps it, vectors running along the rows of C. op(A) is read in place, `mr` values a step,
/// broadcast (as [PanelGemm] reads it): packing both operands took a quarter of a 240×576×768 product's time, and the
/// `mr` rows a kernel reads stay in L1 over the sweep anyway. `m == 1` or `n == 1` (decode) go to a matrix-vector path
/// without packing, bound by memory bandwidth.
///
/// Determinism: each element is summed by one thread in ascending `k` with fused multiply-adds over k-blocks fixed by
/// `k` alone, so the result is bit-identical on a rerun and for any thread count.
public final class VectorGemm implements Gemm {
    static final VectorSpecies<Float> S = FloatVector.SPECIES_PREFERRED;
    static final int L = S.length();
    /// The tiles' species, constants as the Vector API needs them to compile to vector instructions.
    static final VectorSpecies<Float> SW = Tile.WIDE.species, SN = Tile.NARROW.species;
    static final int LW = SW.length(), LN = SN.length();
    /// Depth of a block: the `mr × KC` values of A a kernel reads (8 KB) stay in L1 while B streams from L2.
    public static final int KC = 256;
    /// Floats of packed B per block (512 KB): a `KC × NC` panel stays in L2.
    static final int B_BLOCK = 1 << 17;
    /// Below this many multiply-adds, forking costs more than it saves.
    static final long SERIAL_FMAS = 1L << 20;
    /// Column block of the matrix-vector path: its accumulators (1 KB) stay in L1.
    static final int GEMV_COLS = 256;

    /// Register tile of the micro-kernel: `mr` rows of C by `nrv` vectors of `species`, all accumulators held in
    /// registers.
    public enum Tile {
        /// 8 rows × 3 vectors of 512 bits = 24 accumulators + 3 B vectors + 1 broadcast: for 32 registers (AVX-512).
        WIDE(8, 3, FloatVector.SPECIES_512),
        /// 6 rows × 2 vectors = 12 accumulators + 2 + 1: for 16 registers (AVX2), BLIS's Haswell tile. Its species is
        /// the preferred one where that is narrower than 512 bits (AVX2, NEON), else 256 bits, so that tests run
        /// this kernel on an AVX-512 machine too.
        NARROW(6, 2, FloatVector.SPECIES_PREFERRED.vectorBitSize() < 512 ? FloatVector.SPECIES_PREFERRED : FloatVector.SPECIES_256);

        final int mr, nrv, nr;
        final VectorSpecies<Float> species;

        Tile(int mr, int nrv, VectorSpecies<Float> species) {
            this.mr = mr; this.nrv = nrv; this.species = species; this.nr = nrv * species.length();
        }

        /// WIDE where the preferred species is 512 bits (which implies 32 registers), otherwise NARROW.
        public static Tile preferred() { return FloatVector.SPECIES_PREFERRED.vectorBitSize() >= 512 ? WIDE : NARROW; }

        /// False where the hardware has no vectors this wide: the Vector API would emulate them, slowly.
        public boolean inHardware() { return species.vectorBitSize() <= FloatVector.SPECIES_PREFERRED.vectorBitSize(); }
    }

    /// The instance with this machine's preferred tile; instances hold no mutable state.
    public static final VectorGemm INSTANCE = new VectorGemm(Tile.preferred());

    private final Tile tile;
    private final int nc;   // columns of B packed per block: a multiple of nr

    /// A GEMM with the given register tile; tests use this to run both tiles on one machine.
    public VectorGemm(Tile tile) {
        this.tile = tile;
        this.nc = Math.max(1, B_BLOCK / KC / tile.nr) * tile.nr;
    }

    /// The register tile this instance's micro-kernel uses.
    public Tile tile() { return tile; }

    @Override
    public String name() { return "java-vector"; }

    @Override
    public String toString() {
        return "java-vector(" + tile.species.vectorBitSize() + "-bit, tile " + tile.mr + "x" + tile.nr + ")";
    }

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
        int am = transA ? 1 : lda, ak = transA ? lda : 1;   // op(A)(i, p) = a[aOff + i·am + p·ak]
        int t = (long) m * n * k < SERIAL_FMAS ? 1 : Parallel.threads();
        int mTiles = ceilDiv(m, mr), nTiles = ceilDiv(n, nr);
        if (t == 1 || (mTiles < 2 && nTiles < 2)) {
            block(transB, 0, m, 0, n, k, alpha, a, aOff, am, ak, b, bOff, ldb, beta, c, cOff, ldc);
        } else if (nTiles >= t || nTiles >= mTiles) {
            // columns: each thread packs only its own part of B, and all read A in place
            Parallel.chunks(nTiles, t, (ci, from, to) -> block(transB, 0, m, from * nr, Math.min(n, to * nr), k,
                    alpha, a, aOff, am, ak, b, bOff, ldb, beta, c, cOff, ldc));
        } else {
            Parallel.chunks(mTiles, t, (ci, from, to) -> block(transB, from * mr, Math.min(m, to * mr), 0, n, k,
                    alpha, a, aOff, am, ak, b, bOff, ldb, beta, c, cOff, ldc));
        }
    }

    /// C[m0:m1, n0:n1] on the calling thread; loops jc → pc → (pack B) → ir → jr → micro-kernel.
    private void block(boolean transB, int m0, int m1, int n0, int n1, int k, float alpha,
                       float[] a, int aOff, int am, int ak, float[] b, int bOff, int ldb,
                       float beta, float[] c, int cOff, int ldc) {
        int mr = tile.mr, nr = tile.nr;
        Scratch s = SCRATCH.get();
        // equal blocks rather than full ones plus a sliver: k=576 runs as 3×192, not 256+256+64
        int kcMax = ceilDiv(k, ceilDiv(k, KC));
        int ncMax = Math.min(nc, ceilDiv(ceilDiv(n1 - n0, ceilDiv(n1 - n0, nc)), nr) * nr);
        if (s.bp.length < ncMax * kcMax) s.bp = new float[ncMax * kcMax];
        if (s.ap.length < mr * kcMax) s.ap = new float[mr * kcMax];
        if (s.tile.length < mr * nr) s.tile = new float[mr * nr];
        float[] bp = s.bp, ap = s.ap, tmp = s.tile;
        for (int jc = n0; jc < n1; jc += ncMax) {
            int ncb = Math.min(ncMax, n1 - jc);
            for (int pc = 0; pc < k; pc += kcMax) {
                int kc = Math.min(kcMax, k - pc);
                float betaBlock = pc == 0 ? beta : 1f;   // later k-blocks add to what the first one wrote
                packB(bp, transB, b, bOff, ldb, pc, kc, jc, ncb, nr);
                for (int ir = m0; ir < m1; ir += mr) {
                    int rows = Math.min(mr, m1 - ir);
                    float[] x = a;
                    int xo = aOff + ir * am + pc * ak, xm = am, xk = ak;
                    if (rows < mr) {   // the last rows: copied, zero-padded, so the kernel reads nothing past A
                        packEdgeA(ap, a, xo, am, ak, rows, kc, mr);
                        x = ap; xo = 0; xm = 1; xk = mr;
                    }
                    for (int jr = 0; jr < ncb; jr += nr)
                        tile(x, xo, xm, xk, bp, jr * kc, kc, tmp,
                                c, cOff + ir * ldc + jc + jr, ldc, rows, Math.min(nr, ncb - jr), alpha, betaBlock);
                }
            }
        }
    }

    private static int ceilDiv(int a, int b) { return (a + b - 1) / b; }

    /// op(B)[pc:pc+kc, jc:jc+ncb] into micro-panels of nr columns: panel q holds, for each p, nr contiguous floats,
    /// zero past the last column.
    private static void packB(float[] bp, boolean transB, float[] b, int bOff, int ldb,
                              int pc, int kc, int jc, int ncb, int nr) {
        for (int jr = 0; jr < ncb; jr += nr) {
            int cols = Math.min(nr, ncb - jr), base = jr * kc;
            if (!transB) {
                for (int p = 0; p < kc; p++)
                    System.arraycopy(b, bOff + (pc + p) * ldb + jc + jr, bp, base + p * nr, cols);
            } else {   // B stored (n, k): four rows of B at a time, each read along p
                int j = 0;
                for (; j + 4 <= cols; j += 4) {
                    int s0 = bOff + (jc + jr + j) * ldb + pc, s1 = s0 + ldb, s2 = s1 + ldb, s3 = s2 + ldb;
                    for (int p = 0, o = base + j; p < kc; p++, o += nr) {
                        bp[o] = b[s0 + p]; bp[o + 1] = b[s1 + p]; bp[o + 2] = b[s2 + p]; bp[o + 3] = b[s3 + p];
                    }
                }
                for (; j < cols; j++) {
                    int src = bOff + (jc + jr + j) * ldb + pc;
                    for (int p = 0; p < kc; p++) bp[base + p * nr + j] = b[src + p];
                }
            }
            if (cols < nr)
                for (int p = 0; p < kc; p++) Arrays.fill(bp, base + p * nr + cols, base + (p + 1) * nr, 0f);
        }
    }

    /// `rows` (< mr) rows of op(A), kc deep, from a[ao + i·am + p·ak] into ap[p·mr + i], the other rows zero.
    private static void packEdgeA(float[] ap, float[] a, int ao, int am, int ak, int rows, int kc, int mr) {
        Arrays.fill(ap, 0, kc * mr, 0f);
        for (int i = 0; i < rows; i++)
            for (int p = 0; p < kc; p++) ap[p * mr + i] = a[ao + i * am + p * ak];
    }

    // ---- micro-kernels: a tile of mr × nr accumulators in registers, over kc ----------------------------------

    /// C[rows × cols] at co (rows ≤ mr, cols ≤ nr) = alpha · A·Bp + beta · C, for the kc-deep A at
    /// a[ao + i·am + p·ak] and the packed micro-panel Bp at bp[bo].
    ///
    /// A kernel writes its accumulators to `t` as they are, and [#flush] scales them into C: with the scaling
    /// inside, the kernel grew past C2's inlining budget (NodeCountInliningCutoff), the vector stores at its end
    /// stayed calls, and every call allocated boxed vectors (gigabytes a second of garbage, GC pauses).
    private void tile(float[] a, int ao, int am, int ak, float[] bp, int bo, int kc, float[] t,
                      float[] c, int co, int ldc, int rows, int cols, float alpha, float beta) {
        switch (tile) {
            case WIDE -> kernel8x3(a, ao, am, ak, bp, bo, kc, t);
            case NARROW -> kernel6x2(a, ao, am, ak, bp, bo, kc, t);
        }
        flush(tile.nr, t, c, co, ldc, rows, cols, alpha, beta);
    }

    /// C[rows × cols] at co = alpha · t + beta · C, t holding rows of nr floats. On the preferred species whatever
    /// the tile's (it only scales rows of floats), a constant wherever this is compiled.
    private static void flush(int nr, float[] t, float[] c, int co, int ldc, int rows, int cols, float alpha, float beta) {
        int full = cols - cols % L;
        FloatVector va = FloatVector.broadcast(S, alpha), vb = FloatVector.broadcast(S, beta);
        for (int r = 0; r < rows; r++) {
            int ti = r * nr, ci = co + r * ldc, j = 0;
            for (; j < full; j += L) {
                FloatVector v = FloatVector.fromArray(S, t, ti + j).mul(va);
                if (beta != 0f) v = FloatVector.fromArray(S, c, ci + j).fma(vb, v);
                v.intoArray(c, ci + j);
            }
            for (; j < cols; j++) c[ci + j] = out(t[ti + j], alpha, beta, c[ci + j]);
        }
    }

    /// 8 rows × 3 vectors: per p, 3 loads of Bp and 8 broadcasts of A feed 24 fused multiply-adds.
    private static void kernel8x3(float[] a, int ao, int am, int ak, float[] bp, int bo, int kc, float[] t) {
        FloatVector z = FloatVector.zero(SW);
        FloatVector c00 = z, c01 = z, c02 = z, c10 = z, c11 = z, c12 = z, c20 = z, c21 = z, c22 = z;
        FloatVector c30 = z, c31 = z, c32 = z, c40 = z, c41 = z, c42 = z, c50 = z, c51 = z, c52 = z;
        FloatVector c60 = z, c61 = z, c62 = z, c70 = z, c71 = z, c72 = z;
        int a1 = ao + am, a2 = a1 + am, a3 = a2 + am, a4 = a3 + am, a5 = a4 + am, a6 = a5 + am, a7 = a6 + am;
        for (int p = 0, q = 0; p < kc; p++, q += ak, bo += 3 * LW) {
            FloatVector b0 = FloatVector.fromArray(SW, bp, bo), b1 = FloatVector.fromArray(SW, bp, bo + LW);
            FloatVector b2 = FloatVector.fromArray(SW, bp, bo + 2 * LW);
            FloatVector x = FloatVector.broadcast(SW, a[ao + q]);
            c00 = b0.fma(x, c00); c01 = b1.fma(x, c01); c02 = b2.fma(x, c02);
            x = FloatVector.broadcast(SW, a[a1 + q]);
            c10 = b0.fma(x, c10); c11 = b1.fma(x, c11); c12 = b2.fma(x, c12);
            x = FloatVector.broadcast(SW, a[a2 + q]);
            c20 = b0.fma(x, c20); c21 = b1.fma(x, c21); c22 = b2.fma(x, c22);
            x = FloatVector.broadcast(SW, a[a3 + q]);
            c30 = b0.fma(x, c30); c31 = b1.fma(x, c31); c32 = b2.fma(x, c32);
            x = FloatVector.broadcast(SW, a[a4 + q]);
            c40 = b0.fma(x, c40); c41 = b1.fma(x, c41); c42 = b2.fma(x, c42);
            x = FloatVector.broadcast(SW, a[a5 + q]);
            c50 = b0.fma(x, c50); c51 = b1.fma(x, c51); c52 = b2.fma(x, c52);
            x = FloatVector.broadcast(SW, a[a6 + q]);
            c60 = b0.fma(x, c60); c61 = b1.fma(x, c61); c62 = b2.fma(x, c62);
            x = FloatVector.broadcast(SW, a[a7 + q]);
            c70 = b0.fma(x, c70); c71 = b1.fma(x, c71); c72 = b2.fma(x, c72);
        }
        c00.intoArray(t, 0); c01.intoArray(t, LW); c02.intoArray(t, 2 * LW);
        c10.intoArray(t, 3 * LW); c11.intoArray(t, 4 * LW); c12.intoArray(t, 5 * LW);
        c20.intoArray(t, 6 * LW); c21.intoArray(t, 7 * LW); c22.intoArray(t, 8 * LW);
        c30.intoArray(t, 9 * LW); c31.intoArray(t, 10 * LW); c32.intoArray(t, 11 * LW);
        c40.intoArray(t, 12 * LW); c41.intoArray(t, 13 * LW); c42.intoArray(t, 14 * LW);
        c50.intoArray(t, 15 * LW); c51.intoArray(t, 16 * LW); c52.intoArray(t, 17 * LW);
        c60.intoArray(t, 18 * LW); c61.intoArray(t, 19 * LW); c62.intoArray(t, 20 * LW);
        c70.intoArray(t, 21 * LW); c71.intoArray(t, 22 * LW); c72.intoArray(t, 23 * LW);
    }

    /// 6 rows × 2 vectors: per p, 2 loads of Bp and 6 broadcasts of A feed 12 fused multiply-adds.
    private static void kernel6x2(float[] a, int ao, int am, int ak, float[] bp, int bo, int kc, float[] t) {
        FloatVector z = FloatVector.zero(SN);
        FloatVector c00 = z, c01 = z, c10 = z, c11 = z, c20 = z, c21 = z, c30 = z, c31 = z, c40 = z, c41 = z, c50 = z, c51 = z;
        int a1 = ao + am, a2 = a1 + am, a3 = a2 + am, a4 = a3 + am, a5 = a4 + am;
        for (int p = 0, q = 0; p < kc; p++, q += ak, bo += 2 * LN) {
            FloatVector b0 = FloatVector.fromArray(SN, bp, bo), b1 = FloatVector.fromArray(SN, bp, bo + LN);
            FloatVector x = FloatVector.broadcast(SN, a[ao + q]);
            c00 = b0.fma(x, c00); c01 = b1.fma(x, c01);
            x = FloatVector.broadcast(SN, a[a1 + q]);
            c10 = b0.fma(x, c10); c11 = b1.fma(x, c11);
            x = FloatVector.broadcast(SN, a[a2 + q]);
            c20 = b0.fma(x, c20); c21 = b1.fma(x, c21);
            x = FloatVector.broadcast(SN, a[a3 + q]);
            c30 = b0.fma(x, c30); c31 = b1.fma(x, c31);
            x = FloatVector.broadcast(SN, a[a4 + q]);
            c40 = b0.fma(x, c40); c41 = b1.fma(x, c41);
            x = FloatVector.broadcast(SN, a[a5 + q]);
            c50 = b0.fma(x, c50); c51 = b1.fma(x, c51);
        }
        c00.intoArray(t, 0); c01.intoArray(t, LN); c10.intoArray(t, 2 * LN); c11.intoArray(t, 3 * LN);
        c20.intoArray(t, 4 * LN); c21.intoArray(t, 5 * LN); c30.intoArray(t, 6 * LN); c31.intoArray(t, 7 * LN);
        c40.intoArray(t, 8 * LN); c41.intoArray(t, 9 * LN); c50.intoArray(t, 10 * LN); c51.intoArray(t, 11 * LN);
    }
}
