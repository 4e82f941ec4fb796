package org.peft4j.core.kernels;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;
import org.peft4j.core.Gemm;
import org.peft4j.core.Gemms;
import org.peft4j.core.Parallel;

/// Every fast GEMM against its scalar twin, [ScalarGemm], for all four transpose pairs, with offsets, padded leading
/// dimensions, alpha != 1, beta in {0, 1, 0.5} and NaN in C under beta = 0.
class GemmTest {
    /// Two float sums of the same k products, in different orders, each lie within γ_k·Σ|a||b| of the exact sum
    /// (γ_k = k·u/(1-k·u), u = 2^-24; Higham, Accuracy and Stability, §3.1), so they differ by at most 2γ_k·Σ|a||b|.
    /// The scaling by alpha and beta adds a few more roundings, covered by the +4.
    static double tolerance(int k) { return 2.0 * (k + 4) * 0x1p-24; }

    static final int[] SMALL = {1, 7, 31, 33};

    static List<Gemm> fast() {
        List<Gemm> g = new ArrayList<>(tiles());
        if (OpenBlasGemm.available()) g.add(OpenBlasGemm.INSTANCE);
        else System.err.println("GemmTest: OpenBLAS NOT tested, it did not load: " + OpenBlasGemm.unavailableReason());
        return g;
    }

    /// The packed GEMM with each register tile this machine runs in hardware: both on AVX-512 (the narrow one on
    /// 256-bit vectors there), the narrow one elsewhere (the wide one would run emulated, slowly).
    static List<VectorGemm> tiles() {
        List<VectorGemm> g = new ArrayList<>();
        for (VectorGemm.Tile t : VectorGemm.Tile.values())
            if (t.inHardware()) g.add(new VectorGemm(t));
            else System.err.println("GemmTest: tile " + t + " NOT tested, this machine's vectors are narrower");
        return g;
    }

    /// One call's operands, laid out with offsets and padded leading dimensions; `ints` makes every value a small
    /// integer, so that every sum is exact in float and any correct GEMM must match the reference bit for bit.
    record Case(boolean ta, boolean tb, int m, int n, int k, float alpha, float beta,
                float[] a, int aOff, int lda, float[] b, int bOff, int ldb, float[] c, int cOff, int ldc) {

        static Case of(boolean ta, boolean tb, int m, int n, int k, float alpha, float beta, boolean ints, long seed) {
            SplittableRandom r = new SplittableRandom(seed);
            int lda = (ta ? m : k) + 3, ldb = (tb ? k : n) + 2, ldc = n + 5;
            int aOff = 3, bOff = 5, cOff = 2;
            float[] a = fill(r, aOff + (ta ? k : m) * lda, ints), b = fill(r, bOff + (tb ? n : k) * ldb, ints);
            float[] c = fill(r, cOff + m * ldc, ints);
            if (beta == 0f) for (int i = 0; i < m; i++) for (int j = 0; j < n; j++) c[cOff + i * ldc + j] = Float.NaN;
            return new Case(ta, tb, m, n, k, alpha, beta, a, aOff, lda, b, bOff, ldb, c, cOff, ldc);
        }

        static float[] fill(SplittableRandom r, int len, boolean ints) {
            float[] x = new float[len];
            for (int i = 0; i < len; i++) x[i] = ints ? r.nextInt(-3, 4) : (float) r.nextDouble(-1, 1);
            return x;
        }

        float[] run(Gemm g) {
            float[] out = c.clone();
            g.sgemm(ta, tb, m, n, k, alpha, a, aOff, lda, b, bOff, ldb, beta, out, cOff, ldc);
            return out;
        }

        /// Σp |op(A)[i][p]·op(B)[p][j]|: the scale of the rounding error of element (i, j).
        double absSum(int i, int j) {
            double s = 0;
            for (int p = 0; p < k; p++)
                s += Math.abs((double) (ta ? a[aOff + p * lda + i] : a[aOff + i * lda + p])
                        * (tb ? b[bOff + j * ldb + p] : b[bOff + p * ldb + j]));
            return s;
        }

        String label(Gemm g) {
            return g + " " + (ta ? "T" : "N") + (tb ? "T" : "N") + " m=" + m + " n=" + n + " k=" + k
                    + " alpha=" + alpha + " beta=" + beta;
        }
    }

    /// Compares got with the reference: exact for integer cases, else within [#tolerance]; cells of C outside the
    /// m×n block (offset, ldc padding) must be untouched.
    static void check(Case cs, Gemm g, float[] want, float[] got, boolean exact) {
        for (int idx = 0; idx < got.length; idx++) {
            int rel = idx - cs.cOff, i = Math.floorDiv(rel, cs.ldc), j = rel - i * cs.ldc;
            boolean inside = rel >= 0 && i < cs.m && j < cs.n;
            if (!inside) {
                if (Float.floatToRawIntBits(got[idx]) != Float.floatToRawIntBits(cs.c[idx]))
                    fail(cs.label(g) + ": wrote outside C at index " + idx);
                continue;
            }
            float w = want[idx], v = got[idx];
            if (Float.isNaN(v) || Float.isNaN(w)) fail(cs.label(g) + ": NaN at (" + i + "," + j + "), want " + w + " got " + v);
            double bound = exact ? 0 : tolerance(cs.k) * (Math.abs(cs.alpha) * cs.absSum(i, j)
                    + Math.abs(cs.beta * cs.c[idx])) + Float.MIN_NORMAL;
            if (Math.abs((double) v - w) > bound)
                fail(cs.label(g) + ": at (" + i + "," + j + ") want " + w + " got " + v + " diff " + Math.abs((double) v - w)
                        + " > bound " + bound);
        }
    }

    static void compareAll(int m, int n, int k, float beta, boolean ints, long seed) {
        for (int t = 0; t < 4; t++) {
            Case cs = Case.of((t & 2) != 0, (t & 1) != 0, m, n, k, 0.75f, beta, ints, seed + t);
            float[] want = cs.run(ScalarGemm.INSTANCE);
            for (Gemm g : fast()) check(cs, g, want, cs.run(g), ints);
        }
    }

    @Test
    void smallShapesExactWithIntegerValues() {
        long seed = 1;
        for (int m : SMALL) for (int n : SMALL) for (int k : SMALL)
            for (float beta : new float[] {0f, 1f, 0.5f}) compareAll(m, n, k, beta, true, seed++);
    }

    @Test
    void smallShapesRealValues() {
        long seed = 1000;
        for (int m : SMALL) for (int n : SMALL) for (int k : SMALL) compareAll(m, n, k, 0.5f, false, seed++);
    }

    /// 4097 in each dimension (vector tails, several KC/NC/MC blocks, the matrix-vector paths), and one shape large
    /// enough to run on several threads.
    @Test
    void largeDimensions() {
        int[][] shapes = {{4097, 33, 7}, {31, 4097, 33}, {33, 31, 4097}, {1, 4097, 31}, {4097, 1, 33}, {1, 33, 4097},
                {200, 530, 300}};
        long seed = 5000;
        for (int[] s : shapes) {
            compareAll(s[0], s[1], s[2], 0f, true, seed++);
            compareAll(s[0], s[1], s[2], 0.5f, false, seed++);
        }
    }

    /// The packed path at the edges of each tile: m and n one below, at and one above a multiple of the register
    /// tile (rows mr, columns nr), primes, k across the KC blocking (one block, equal blocks, a last short one), for
    /// the four transpose pairs and beta 0, 1, 0.5; exact with integers, within the rounding bound otherwise.
    @Test
    void packedTileEdges() {
        long seed = 9000;
        for (VectorGemm g : tiles()) {
            int mr = g.tile().mr, nr = g.tile().nr;
            for (int m : new int[] {2, mr - 1, mr, mr + 1, 2 * mr + 3, 23})
                for (int n : new int[] {2, nr - 1, nr, nr + 1, 2 * nr + 5, 97})
                    for (int k : new int[] {1, 5, VectorGemm.KC + 1, 2 * VectorGemm.KC + 3})
                        for (int t = 0; t < 4; t++) {
                            float beta = new float[] {0f, 1f, 0.5f}[(int) (seed % 3)];
                            Case cs = Case.of((t & 2) != 0, (t & 1) != 0, m, n, k, 0.75f, beta, seed % 2 == 0, seed++);
                            check(cs, g, cs.run(ScalarGemm.INSTANCE), cs.run(g), seed % 2 == 1);
                        }
        }
    }

    /// Split over 2 and 3 threads by columns (n wide) and by rows (n within one tile): the same bits as one thread,
    /// since every element is summed over the same k-blocks in the same order whatever the split.
    @Test
    void threadSplitsGiveTheSameBits() {
        int before = Parallel.threads();
        try {
            for (VectorGemm g : tiles())
                for (int[] s : new int[][] {{70, 1000, 300}, {300, g.tile().nr - 3, 400}})
                    for (int t = 0; t < 4; t++) {
                        Case cs = Case.of((t & 2) != 0, (t & 1) != 0, s[0], s[1], s[2], 1.25f, 0.5f, false, 31 + t);
                        Parallel.setThreads(1);
                        float[] one = cs.run(g);
                        check(cs, g, cs.run(ScalarGemm.INSTANCE), one, false);
                        for (int threads : new int[] {2, 3}) {
                            Parallel.setThreads(threads);
                            assertArrayEquals(one, cs.run(g), cs.label(g) + " threads=" + threads + " vs 1");
                        }
                    }
        } finally {
            Parallel.setThreads(before);
        }
    }

    /// Once compiled, a call allocates nothing: the packing buffers are per thread and reused, and no vector is boxed
    /// (as happened when the kernel outgrew C2's inlining budget). Calls repeat until C2 has compiled the kernel; a
    /// GEMM that allocates per call never gets to zero.
    @Test
    void noAllocationOnceCompiled() {
        int before = Parallel.threads();
        var mx = (com.sun.management.ThreadMXBean) java.lang.management.ManagementFactory.getThreadMXBean();
        try {
            Parallel.setThreads(1);
            for (int t = 0; t < 4; t++) {
                Case cs = Case.of((t & 2) != 0, (t & 1) != 0, 61, 100, 300, 1f, 1f, false, 5 + t);
                Gemm g = VectorGemm.INSTANCE;
                float[] c = cs.c.clone();
                long bytes = -1, deadline = System.nanoTime() + 60_000_000_000L;
                while (bytes != 0 && System.nanoTime() < deadline) {
                    long b0 = mx.getCurrentThreadAllocatedBytes();
                    g.sgemm(cs.ta, cs.tb, cs.m, cs.n, cs.k, 1f, cs.a, cs.aOff, cs.lda, cs.b, cs.bOff, cs.ldb, 0f, c, cs.cOff, cs.ldc);
                    bytes = mx.getCurrentThreadAllocatedBytes() - b0;
                }
                assertEquals(0, bytes, cs.label(g) + ": bytes allocated by one call after a minute of calls");
            }
        } finally {
            Parallel.setThreads(before);
        }
    }

    /// PanelGemm (B in place, no transB) on the shapes of its tile (4 rows × 4 vectors), of its row and vector tails,
    /// and of attention's blocks; exact with integers, within the rounding bound otherwise.
    @Test
    void panelGemmAgainstScalar() {
        int[] dims = {1, 3, 4, 5, 15, 16, 17, 31, 33, 64, 65, 70};
        long seed = 7000;
        for (int m : dims) for (int n : dims) for (int k : new int[] {0, 1, 7, 64, 130})
            for (boolean ta : new boolean[] {false, true})
                for (float beta : new float[] {0f, 1f, 0.5f}) {
                    Case exact = Case.of(ta, false, m, n, k, 0.75f, beta, true, seed++);
                    check(exact, PanelGemm.INSTANCE, exact.run(ScalarGemm.INSTANCE), exact.run(PanelGemm.INSTANCE), true);
                    Case real = Case.of(ta, false, m, n, k, 1.25f, beta, false, seed++);
                    check(real, PanelGemm.INSTANCE, real.run(ScalarGemm.INSTANCE), real.run(PanelGemm.INSTANCE), false);
                }
        try {
            PanelGemm.INSTANCE.sgemm(false, true, 2, 2, 2, 1f, new float[4], 0, 2, new float[4], 0, 2, 0f, new float[4], 0, 2);
            fail("PanelGemm accepted transB");
        } catch (IllegalArgumentException expected) {
            assertTrue(expected.getMessage().contains("transB"), expected.getMessage());
        }
    }

    @Test
    void bitIdenticalOnRerunWithSameThreads() {
        int before = Parallel.threads();
        try {
            for (int threads : new int[] {1, 2, 3}) {
                Parallel.setThreads(threads);
                for (int[] s : new int[][] {{150, 700, 300}, {1, 3000, 600}, {600, 1, 3000}})
                    for (int t = 0; t < 4; t++) {
                        Case cs = Case.of((t & 2) != 0, (t & 1) != 0, s[0], s[1], s[2], 1f, 0f, false, 77 + t);
                        Gemm g = VectorGemm.INSTANCE;
                        assertArrayEquals(cs.run(g), cs.run(g), cs.label(g) + " threads=" + threads);
                    }
            }
        } finally {
            Parallel.setThreads(before);
        }
    }

    @Test
    void kZeroOrAlphaZeroScalesC() {
        for (Gemm g : fast()) {
            float[] c = {1f, Float.NaN, 3f, 4f};
            g.sgemm(false, false, 2, 2, 0, 1f, new float[1], 0, 1, new float[2], 0, 2, 0f, c, 0, 2);
            assertArrayEquals(new float[] {0f, 0f, 0f, 0f}, c, g.name());
            float[] d = {1f, 2f, 3f, 4f};
            g.sgemm(false, false, 2, 2, 2, 0f, new float[4], 0, 2, new float[4], 0, 2, 0.5f, d, 0, 2);
            assertArrayEquals(new float[] {0.5f, 1f, 1.5f, 2f}, d, g.name());
        }
    }

    @Test
    void badArgumentsAreRejectedBeforeTouchingMemory() {
        for (Gemm g : fast()) {
            float[] small = new float[10];
            try {
                g.sgemm(false, false, 4, 4, 4, 1f, small, 0, 4, small, 0, 4, 0f, small, 0, 4);
                fail(g.name() + " accepted arrays too short");
            } catch (IndexOutOfBoundsException expected) {
                assertTrue(expected.getMessage().contains("needs index"), expected.getMessage());
            }
            try {
                g.sgemm(false, false, 2, 2, 2, 1f, new float[4], 0, 1, new float[4], 0, 2, 0f, new float[4], 0, 2);
                fail(g.name() + " accepted lda < k");
            } catch (IllegalArgumentException expected) {
                assertTrue(expected.getMessage().contains("leading dimension"), expected.getMessage());
            }
        }
    }

    @Test
    void gemmsModes() {
        assertEquals("java-vector", Gemms.get("java").name());
        assertEquals("scalar", Gemms.get("scalar").name());
        assertEquals(OpenBlasGemm.available(), OpenBlasGemm.unavailableReason() == null);
        Gemm auto = Gemms.get("auto");   // calibrates (about a second) or reads the cached decision
        for (int t = 0; t < 4; t++) {
            Case cs = Case.of((t & 2) != 0, (t & 1) != 0, 33, 70, 31, 0.75f, 0.5f, true, 900 + t);
            check(cs, auto, cs.run(ScalarGemm.INSTANCE), cs.run(auto), true);
        }
        // those are small products, which auto runs on the Java GEMM without calibrating; a large one calibrates
        Case large = Case.of(false, true, 64, 160, 256, 1f, 0f, true, 905);
        check(large, auto, large.run(ScalarGemm.INSTANCE), large.run(auto), true);
        assertTrue(Gemms.describe().contains("auto: forward="), Gemms.describe());
        try {
            Gemms.get("cuda");
            fail("unknown mode accepted");
        } catch (RuntimeException expected) {
            assertTrue(expected.getMessage().contains("auto, java, openblas, scalar"));
        }
    }
}
