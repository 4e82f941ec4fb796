package org.peft4j.bench;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.SplittableRandom;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorSpecies;
import org.peft4j.core.Gemm;
import org.peft4j.core.Parallel;
import org.peft4j.core.kernels.OpenBlasGemm;
import org.peft4j.core.kernels.VectorGemm;

/// GEMM throughput of the pure-Java GEMM (java-vector) against OpenBLAS on LLM layer shapes, and the FP32 FMA peak
/// of one core measured here in Java; then the block products of attention and LoRA on one thread ([#blockShapes]),
/// java-panel included. Shapes are (N, K, M) of a linear layer with W stored (M, K): forward NT `Y = X·Wᵀ`, input
/// gradient NN `dX = dY·W`, weight gradient TN `dW += dYᵀ·X`.
///
/// The machine may be shared, so the two backends alternate: each repetition times a run of java calls and then a
/// run of OpenBLAS calls, and a cell reports the median GFLOP/s of each over the repetitions and the median of the
/// per-repetition ratios (java / openblas), pairs measured a few milliseconds apart, so load hits both alike. The
/// geometric mean of the ratios closes each thread count (the decode shape, N = 1, is a matrix-vector product and
/// stays out of it). The best repetition of each backend is printed too: on a loaded machine it comes closest to
/// what each does alone.
///
/// Run: `java --add-modules jdk.incubator.vector --enable-native-access=ALL-UNNAMED -cp … org.peft4j.bench.GemmBench
/// [seconds-per-cell [thread counts, e.g. 1,2]]`. For the AVX2 tile on an AVX-512 machine, run the JVM with
/// `-XX:UseAVX=2` (16 vector registers, 256-bit preferred species) and OpenBLAS with `OPENBLAS_CORETYPE=Haswell`.
public final class GemmBench {
    static final VectorSpecies<Float> S = FloatVector.SPECIES_PREFERRED;
    static final int REPS = 9;

    record Shape(String what, int n, int k, int m) {}

    public static void main(String[] args) {
        double budget = args.length > 0 ? Double.parseDouble(args[0]) : 0.6;
        int[] threadCounts = Arrays.stream((args.length > 1 ? args[1] : "1,2").split(",")).mapToInt(Integer::parseInt).toArray();
        double peak = peakOneCore();
        System.out.printf("species %d-bit (%d lanes), FP32 FMA peak of one core (Java, measured): %.1f GFLOP/s%n",
                S.vectorBitSize(), S.length(), peak);
        System.out.println("java: " + VectorGemm.INSTANCE + "   openblas: " + OpenBlasGemm.describe());
        if (!OpenBlasGemm.available()) {
            System.out.println("OpenBLAS did not load, so there is nothing to compare with: " + OpenBlasGemm.unavailableReason());
            return;
        }
        List<Gemm> gemms = List.of(VectorGemm.INSTANCE, OpenBlasGemm.INSTANCE);
        warmUp(gemms);
        Shape[] shapes = {new Shape("SmolLM2 q,o", 512, 576, 576), new Shape("SmolLM2 gate,up", 512, 576, 1536),
                new Shape("SmolLM2 down", 512, 1536, 576), new Shape("Qwen2.5-0.5B up", 512, 896, 4864),
                new Shape("Llama-7B q", 512, 4096, 4096), new Shape("SmolLM2 lm_head 1 row", 1, 576, 49152)};
        System.out.printf("%d alternating repetitions per cell, medians; ratio = median of java/openblas per repetition%n", REPS);
        System.out.printf("%-7s %-22s %-4s %-16s %10s %10s %8s %8s %10s %10s %8s%n", "threads", "shape", "op", "N,K,M",
                "java GF/s", "blas GF/s", "ratio", "%peak", "java best", "blas best", "ratio");
        for (int threads : threadCounts) {
            Parallel.setThreads(threads);
            double logSum = 0;
            int cells = 0;
            for (Shape s : shapes) {
                for (String op : s.n == 1 ? new String[] {"NT"} : new String[] {"NT", "NN", "TN"}) {
                    double[][] gf = time(gemms, op, s, budget);   // [rep][backend]
                    double[] ratios = new double[REPS], java = new double[REPS], blas = new double[REPS];
                    for (int r = 0; r < REPS; r++) {
                        java[r] = gf[r][0];
                        blas[r] = gf[r][1];
                        ratios[r] = gf[r][0] / gf[r][1];
                    }
                    double ratio = median(ratios);
                    if (s.n > 1) {
                        logSum += Math.log(ratio);
                        cells++;
                    }
                    double javaBest = Arrays.stream(java).max().orElseThrow(), blasBest = Arrays.stream(blas).max().orElseThrow();
                    System.out.printf("%-7d %-22s %-4s %-16s %10.1f %10.1f %7.2fx %7.1f%% %10.1f %10.1f %7.2fx%s%n", threads,
                            s.what, op, s.n + "," + s.k + "," + s.m, median(java), median(blas), ratio,
                            100 * median(java) / (peak * threads), javaBest, blasBest, javaBest / blasBest,
                            s.n == 1 ? "  (decode: not in the mean)" : "");
                }
            }
            System.out.printf("%-7d geometric mean of java/openblas over %d cells: %.2fx%n", threads, cells, Math.exp(logSum / cells));
        }
        blockShapes(peak, budget);
    }

    static double median(double[] x) {
        double[] y = x.clone();
        Arrays.sort(y);
        return y.length % 2 == 1 ? y[y.length / 2] : (y[y.length / 2 - 1] + y[y.length / 2]) / 2;
    }

    /// One (query or key) block's products in a training step of SmolLM2-135M (T 512, 9 heads of 64, 3 key/value
    /// heads; LoRA r16 with K 576, M 1536), with the strides they have there, on one thread: PanelGemm (B read in
    /// place) against OpenBLAS and the packed Java GEMM.
    record Block(String what, boolean transA, int m, int n, int k, int lda, int ldb) {}

    static void blockShapes(double peak, double budget) {
        Block[] blocks = {
                new Block("attention P·v (NN)", false, 64, 64, 512, 512, 192),
                new Block("attention dS·k (NN)", false, 64, 64, 512, 512, 192),
                new Block("attention Pᵀ·dout (TN)", true, 64, 64, 512, 512, 576),
                new Block("LoRA dA = dhᵀ·x (TN)", true, 16, 576, 512, 16, 576),
                new Block("LoRA dB = dyᵀ·h (TN)", true, 1536, 16, 512, 1536, 16),
                new Block("LoRA dh = dy·B (NN)", false, 512, 16, 1536, 1536, 16)};
        Parallel.setThreads(1);
        List<Gemm> gemms = new ArrayList<>(List.of(org.peft4j.core.kernels.PanelGemm.INSTANCE, VectorGemm.INSTANCE));
        if (OpenBlasGemm.available()) gemms.add(OpenBlasGemm.INSTANCE);
        System.out.printf("%nblock products, 1 thread (m,n,k lda ldb as in the step)%n%-24s %-22s %-12s %10s %8s%n", "product", "m,n,k lda ldb", "backend", "GFLOP/s", "%peak");
        SplittableRandom r = new SplittableRandom(3);
        for (Block b : blocks) {
            float[] a = fill(r, (b.transA ? b.k : b.m) * b.lda), x = fill(r, b.k * b.ldb), c = new float[b.m * b.n];
            double[] best = new double[gemms.size()];
            Arrays.fill(best, Double.MAX_VALUE);
            for (int turn = 0; turn < 3; turn++)
                for (int g = 0; g < gemms.size(); g++) {
                    Gemm gemm = gemms.get(g);
                    long end = System.nanoTime() + (long) (budget / 3 * 1e9);
                    for (int rep = 0; rep < 20 || (rep < 20000 && System.nanoTime() < end); rep++) {
                        long t0 = System.nanoTime();
                        gemm.sgemm(b.transA, false, b.m, b.n, b.k, 1f, a, 0, b.lda, x, 0, b.ldb, 0f, c, 0, b.n);
                        best[g] = Math.min(best[g], (System.nanoTime() - t0) * 1e-9);
                    }
                }
            for (int g = 0; g < gemms.size(); g++) {
                double gflops = 2.0 * b.m * b.n * b.k / best[g] * 1e-9;
                System.out.printf("%-24s %-22s %-12s %10.1f %7.1f%%%n", b.what, b.m + "," + b.n + "," + b.k + " " + b.lda + " " + b.ldb,
                        gemms.get(g).name(), gflops, 100 * gflops / peak);
            }
        }
    }

    /// GFLOP/s per repetition and backend, `[rep][backend]`: in each repetition every backend runs calls for its
    /// share of the budget (at least one), after a short pause so that OpenBLAS's spinning worker threads have gone
    /// idle before Java's pool runs.
    static double[][] time(List<Gemm> gemms, String op, Shape s, double budget) {
        SplittableRandom r = new SplittableRandom(1);
        float[] x = fill(r, s.n * s.k), w = fill(r, s.m * s.k), y = fill(r, s.n * s.m);
        float[] dx = new float[s.n * s.k], dw = new float[s.m * s.k];
        double[][] gf = new double[REPS][gemms.size()];
        long share = (long) (budget / REPS / gemms.size() * 1e9);
        for (int rep = 0; rep < REPS; rep++) {
            for (int g = 0; g < gemms.size(); g++) {
                Gemm gemm = gemms.get(g);
                pause();
                int calls = 0;
                long t0 = System.nanoTime(), t;
                do {
                    call(gemm, op, s, x, w, y, dx, dw);
                    calls++;
                } while ((t = System.nanoTime()) - t0 < share);
                gf[rep][g] = 2.0 * s.n * s.k * s.m * calls / (t - t0);
            }
        }
        return gf;
    }

    static void call(Gemm gemm, String op, Shape s, float[] x, float[] w, float[] y, float[] dx, float[] dw) {
        switch (op) {
            case "NT" -> gemm.sgemm(false, true, s.n, s.m, s.k, 1f, x, 0, s.k, w, 0, s.k, 0f, y, 0, s.m);    // Y = X·Wᵀ
            case "NN" -> gemm.sgemm(false, false, s.n, s.k, s.m, 1f, y, 0, s.m, w, 0, s.k, 0f, dx, 0, s.k);  // dX = dY·W
            case "TN" -> gemm.sgemm(true, false, s.m, s.k, s.n, 1f, y, 0, s.m, x, 0, s.k, 1f, dw, 0, s.k);   // dW += dYᵀ·X
            default -> throw new IllegalArgumentException(op);
        }
    }

    /// Runs every backend and op for about two seconds so the JIT has compiled the Java kernels before timing.
    static void warmUp(List<Gemm> gemms) {
        Shape s = new Shape("warm-up", 256, 576, 1536);
        SplittableRandom r = new SplittableRandom(2);
        float[] x = fill(r, s.n * s.k), w = fill(r, s.m * s.k), y = fill(r, s.n * s.m);
        float[] dx = new float[s.n * s.k], dw = new float[s.m * s.k];
        long end = System.nanoTime() + 2_000_000_000L;
        while (System.nanoTime() < end)
            for (Gemm g : gemms) for (String op : new String[] {"NT", "NN", "TN"}) call(g, op, s, x, w, y, dx, dw);
        float[] v = fill(r, 4096 * 576), xv = fill(r, 576), out = new float[4096];
        for (int i = 0; i < 200; i++) VectorGemm.INSTANCE.sgemm(false, true, 1, 4096, 576, 1f, xv, 0, 576, v, 0, 576, 0f, out, 0, 4096);
    }

    static void pause() {
        try {
            Thread.sleep(5);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }

    static float[] fill(SplittableRandom r, int n) {
        float[] a = new float[n];
        for (int i = 0; i < n; i++) a[i] = (float) r.nextDouble(-0.5, 0.5);
        return a;
    }

    /// 12 independent FMA chains in registers (FMA latency 4 × up to 2 pipes needs 8), on an `int` counter: a
    /// `long` counter measured 20-30% lower here. Best of 30 runs, so a quiet time slice on a shared machine counts.
    static double peakOneCore() {
        double best = 0;
        float sink = 0;
        int iters = 2_000_000;
        for (int rep = 0; rep < 30; rep++) {
            long t0 = System.nanoTime();
            sink += fmaLoop(iters);
            double sec = (System.nanoTime() - t0) * 1e-9;
            best = Math.max(best, iters * 12.0 * S.length() * 2 / sec * 1e-9);
        }
        if (sink == 42f) System.out.println();
        return best;
    }

    static float fmaLoop(int iters) {
        FloatVector m = FloatVector.broadcast(S, 0.999999f), a = FloatVector.broadcast(S, 1e-7f);
        FloatVector c0 = m, c1 = c0.add(a), c2 = c1.add(a), c3 = c2.add(a), c4 = c3.add(a), c5 = c4.add(a);
        FloatVector c6 = c5.add(a), c7 = c6.add(a), c8 = c7.add(a), c9 = c8.add(a), c10 = c9.add(a), c11 = c10.add(a);
        for (int i = 0; i < iters; i++) {
            c0 = c0.fma(m, a); c1 = c1.fma(m, a); c2 = c2.fma(m, a); c3 = c3.fma(m, a);
            c4 = c4.fma(m, a); c5 = c5.fma(m, a); c6 = c6.fma(m, a); c7 = c7.fma(m, a);
            c8 = c8.fma(m, a); c9 = c9.fma(m, a); c10 = c10.fma(m, a); c11 = c11.fma(m, a);
        }
        return c0.add(c1).add(c2.add(c3)).add(c4.add(c5).add(c6.add(c7))).add(c8.add(c9).add(c10.add(c11))).lane(0);
    }

    private GemmBench() {}
}
