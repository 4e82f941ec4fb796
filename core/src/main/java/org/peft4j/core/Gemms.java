package org.peft4j.core;

import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.Properties;
import java.util.random.RandomGenerator;
import org.peft4j.core.kernels.OpenBlasGemm;
import org.peft4j.core.kernels.ScalarGemm;
import org.peft4j.core.kernels.VectorGemm;

/// Picks a [Gemm] by mode name: `"java"` (Vector API), `"openblas"` (native, through FFM), `"scalar"` (reference),
/// or `"auto"`, which at first use times java against openblas on a forward (`NT`) and two backward (`NN`, `TN`)
/// layer shapes (about a second) and routes each kind of call to the faster one. The decision is cached in
/// `$XDG_CACHE_HOME/peft4j/gemm-calibration.properties` (default `~/.cache/…`), keyed by CPU model, vector width and
/// thread count, and logged through `System.Logger`. Small products (few rows, or few multiply-adds) always take the
/// Java GEMM under `auto`.
public final class Gemms {
    private static final System.Logger LOG = System.getLogger(Gemms.class.getName());
    private static final Auto AUTO = new Auto();

    private Gemms() {}

    /// The GEMM for `mode`: one of `auto`, `java`, `openblas`, `scalar`.
    public static Gemm get(String mode) {
        return switch (mode) {
            case "auto" -> AUTO;
            case "java" -> VectorGemm.INSTANCE;
            case "scalar" -> ScalarGemm.INSTANCE;
            case "openblas" -> {
                if (!OpenBlasGemm.available())
                    throw new Peft4jException.ConfigException("gemm mode 'openblas' was asked for, but OpenBLAS did not load: "
                            + OpenBlasGemm.unavailableReason() + "; use 'java' or 'auto'");
                yield OpenBlasGemm.INSTANCE;
            }
            default -> throw new Peft4jException.ConfigException("unknown gemm mode '" + mode
                    + "'; use one of auto, java, openblas, scalar");
        };
    }

    /// One line for logs: the Java kernel, OpenBLAS's state, the thread count, and auto's routing once decided.
    public static String describe() {
        Choice ch = AUTO.choice;
        return VectorGemm.INSTANCE + "; " + OpenBlasGemm.describe() + "; threads=" + Parallel.threads()
                + (ch == null ? "; auto: not yet calibrated"
                              : "; auto: forward=" + ch.forward.name() + " backward=" + ch.backward.name() + " (" + ch.source + ")");
    }

    /// What `auto` routes to, for one thread count.
    private record Choice(Gemm forward, Gemm backward, int threads, String source) {}

    /// Forward (`transA=false, transB=true`) calls go to `forward`, the rest to `backward`.
    private static final class Auto implements Gemm {
        volatile Choice choice;

        @Override
        public void sgemm(boolean transA, boolean transB, int m, int n, int k,
                          float alpha, float[] a, int aOff, int lda, float[] b, int bOff, int ldb,
                          float beta, float[] c, int cOff, int ldc) {
            routed(transA, transB, m, n, k).sgemm(transA, transB, m, n, k, alpha, a, aOff, lda, b, bOff, ldb, beta, c, cOff, ldc);
        }

        @Override
        public Gemm routed(boolean transA, boolean transB, int m, int n, int k) {
            // a native call's hand-off to its own threads costs more than a small product
            if (small(m, n, k)) return VectorGemm.INSTANCE;
            Choice ch = choice;
            if (ch == null || ch.threads != Parallel.threads()) ch = decide();
            return !transA && transB ? ch.forward : ch.backward;
        }

        @Override
        public String name() { return "auto"; }

        private synchronized Choice decide() {
            int threads = Parallel.threads();
            if (choice != null && choice.threads == threads) return choice;
            choice = calibrate(threads);
            LOG.log(System.Logger.Level.INFO, "gemm auto: {0}", describe());
            return choice;
        }
    }

    /// Products `auto` always runs on the Java GEMM: at most [#SMALL_ROWS] rows (decode of a few streams: LoRA's
    /// low-rank products, attention over the cache) or under [#SMALL_MACS] multiply-adds. Through OpenBLAS such calls
    /// stalled the serving engine at 1-8 streams (each call wakes and parks OpenBLAS's threads beside ours).
    static final int SMALL_ROWS = 32;
    static final long SMALL_MACS = 1L << 21;

    static boolean small(int m, int n, int k) { return m <= SMALL_ROWS || (long) m * n * k < SMALL_MACS; }

    private static Choice calibrate(int threads) {
        Gemm java = VectorGemm.INSTANCE;
        if (!OpenBlasGemm.available())
            return new Choice(java, java, threads, "openblas unavailable: " + OpenBlasGemm.unavailableReason());
        Gemm blas = OpenBlasGemm.INSTANCE;
        String key = (cpuModel() + "|" + VectorGemm.INSTANCE + "|threads=" + threads).replaceAll("[^A-Za-z0-9|().=-]", "_");
        Path file = cacheDir().resolve("gemm-calibration.properties");
        Properties props = new Properties();
        try (InputStream in = Files.newInputStream(file)) {
            props.load(in);
        } catch (IOException e) {
            // no cache yet
        }
        String fwd = props.getProperty(key + ".forward"), bwd = props.getProperty(key + ".backward");
        if (("java".equals(fwd) || "openblas".equals(fwd)) && ("java".equals(bwd) || "openblas".equals(bwd)))
            return new Choice("java".equals(fwd) ? java : blas, "java".equals(bwd) ? java : blas, threads, "cached in " + file);

        double[] t = measure(java, blas);   // seconds: java NT, blas NT, java NN+TN, blas NN+TN
        Choice ch = new Choice(t[0] <= t[1] ? java : blas, t[2] <= t[3] ? java : blas, threads,
                String.format("calibrated: NT java %.2f ms, openblas %.2f ms; NN+TN java %.2f ms, openblas %.2f ms",
                        t[0] * 1e3, t[1] * 1e3, t[2] * 1e3, t[3] * 1e3));
        props.setProperty(key + ".forward", ch.forward.name().equals("openblas") ? "openblas" : "java");
        props.setProperty(key + ".backward", ch.backward.name().equals("openblas") ? "openblas" : "java");
        props.setProperty(key + ".detail", ch.source);
        try {
            Files.createDirectories(file.getParent());
            Path tmp = Files.createTempFile(file.getParent(), "gemm-calibration", ".part");
            try (OutputStream out = Files.newOutputStream(tmp)) {
                props.store(out, "peft4j GEMM auto calibration; delete to recalibrate");
            }
            Files.move(tmp, file, StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
        } catch (IOException e) {
            LOG.log(System.Logger.Level.WARNING, "could not save GEMM calibration to " + file + ": " + e);
        }
        return ch;
    }

    /// Best-of-rounds seconds of a SmolLM2-like layer (N=256 rows, K=576, M=1536): java NT, openblas NT, java NN+TN,
    /// openblas NN+TN. Java runs first, with untimed rounds for the JIT, then OpenBLAS: run the other way round,
    /// OpenBLAS's worker threads would still be spinning while Java's pool runs. About a second in all.
    private static double[] measure(Gemm java, Gemm blas) {
        int n = 256, kk = 576, mm = 1536;
        RandomGenerator rnd = RandomGenerator.of("L64X128MixRandom");
        float[] x = new float[n * kk], w = new float[mm * kk], y = new float[n * mm], dx = new float[n * kk], dw = new float[mm * kk];
        for (int i = 0; i < x.length; i++) x[i] = rnd.nextFloat() - 0.5f;
        for (int i = 0; i < w.length; i++) w[i] = rnd.nextFloat() - 0.5f;
        for (int i = 0; i < y.length; i++) y[i] = rnd.nextFloat() - 0.5f;
        double[] best = {Double.MAX_VALUE, Double.MAX_VALUE, Double.MAX_VALUE, Double.MAX_VALUE};
        for (int g = 0; g < 2; g++) {
            Gemm gemm = g == 0 ? java : blas;
            int untimed = g == 0 ? 5 : 1;
            long deadline = System.nanoTime() + (g == 0 ? 700_000_000L : 300_000_000L);
            for (int round = 0; round < 40 && (round < untimed + 3 || System.nanoTime() < deadline); round++) {
                long t0 = System.nanoTime();
                gemm.sgemm(false, true, n, mm, kk, 1f, x, 0, kk, w, 0, kk, 0f, y, 0, mm);     // Y = X·Wᵀ
                long t1 = System.nanoTime();
                gemm.sgemm(false, false, n, kk, mm, 1f, y, 0, mm, w, 0, kk, 0f, dx, 0, kk);   // dX = dY·W
                gemm.sgemm(true, false, mm, kk, n, 1f, y, 0, mm, x, 0, kk, 0f, dw, 0, kk);    // dW = dYᵀ·X
                long t2 = System.nanoTime();
                if (round < untimed) continue;
                best[g] = Math.min(best[g], (t1 - t0) * 1e-9);
                best[2 + g] = Math.min(best[2 + g], (t2 - t1) * 1e-9);
            }
        }
        return best;
    }

    private static String cpuModel() {
        try {
            for (String line : Files.readAllLines(Path.of("/proc/cpuinfo")))
                if (line.startsWith("model name")) return line.substring(line.indexOf(':') + 1).trim();
        } catch (IOException | RuntimeException e) {
            // not Linux: fall through
        }
        return System.getProperty("os.arch");
    }

    private static Path cacheDir() {
        String xdg = System.getenv("XDG_CACHE_HOME");
        Path cache = xdg != null && !xdg.isBlank() ? Path.of(xdg) : Path.of(System.getProperty("user.home"), ".cache");
        return cache.resolve("peft4j");
    }
}
