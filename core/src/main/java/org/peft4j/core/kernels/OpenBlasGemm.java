package org.peft4j.core.kernels;

import java.io.IOException;
import java.io.InputStream;
import java.lang.foreign.Arena;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.Linker;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.SymbolLookup;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.MethodHandle;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import org.peft4j.core.Gemm;
import org.peft4j.core.Parallel;
import org.peft4j.core.Peft4jException;

/// OpenBLAS `cblas_sgemm` called through FFM (java.lang.foreign), not JNI. The shared libraries come from the
/// `org.bytedeco:openblas` jar on the class path, are extracted once into
/// `$XDG_CACHE_HOME/peft4j/native/openblas-<version>/` (default `~/.cache/…`), and loaded dependencies first.
/// Java `float[]` arrays are passed in place through critical downcalls (`Linker.Option.critical(true)`): no copy.
/// Loading happens on first use; if it fails, [#available()] is false and [#unavailableReason()] says why.
///
/// OpenBLAS reads `OPENBLAS_CORETYPE` (and `OPENBLAS_L2_SIZE`) at load time; when set they can force slower kernels
/// (about half speed with AVX2 kernels on an AVX-512 machine), so [#describe()] reports them. Its idle threads'
/// spin time is shortened before it loads (see [#THREAD_TIMEOUT]). OpenBLAS keeps its own
/// thread pool; its size follows [Parallel#threads()], and calls made inside a [Parallel] task run on one thread
/// (so that independent products, e.g. attention heads, can run side by side without the two pools fighting).
public final class OpenBlasGemm implements Gemm {
    /// The bytedeco artifact version whose libraries are extracted.
    public static final String VERSION = "0.3.31-1.5.13";
    private static final String RESOURCE_DIR = "org/bytedeco/openblas/linux-x86_64/";
    /// In dependency order: each library's NEEDED entries are loaded before it.
    private static final String[] LIBRARIES = {"libgcc_s.so.1", "libquadmath.so.0", "libgfortran.so.5", "libopenblas.so.0"};
    private static final int ROW_MAJOR = 101, NO_TRANS = 111, TRANS = 112;

    /// The one instance; constructing it loads nothing, the first `sgemm` or [#available()] does.
    public static final OpenBlasGemm INSTANCE = new OpenBlasGemm();

    private OpenBlasGemm() {}

    /// The bound functions, or why there are none. Built once, on first use (holder idiom); never throws.
    private record Binding(MethodHandle sgemm, MethodHandle setThreads, String config, String error) {
        static final Binding INSTANCE = load();
    }

    private static volatile int threadsSet = -1;

    /// True when libopenblas loaded and `cblas_sgemm` was found.
    public static boolean available() { return Binding.INSTANCE.error == null; }

    /// Why OpenBLAS could not be loaded, or null when it is available.
    public static String unavailableReason() { return Binding.INSTANCE.error; }

    /// OpenBLAS's build configuration and core (e.g. "OpenBLAS 0.3.31 … Zen"), plus any CORETYPE override.
    public static String describe() {
        Binding bi = Binding.INSTANCE;
        if (bi.error != null) return "openblas unavailable: " + bi.error;
        String env = System.getenv("OPENBLAS_CORETYPE"), timeout = System.getenv("OPENBLAS_THREAD_TIMEOUT");
        return bi.config + (env == null ? "" : " [OPENBLAS_CORETYPE=" + env + " is set: may force slower kernels]")
                + " thread_timeout=2^" + (timeout == null ? THREAD_TIMEOUT : timeout + " (set by the user)");
    }

    @Override
    public String name() { return "openblas"; }

    @Override
    public void sgemm(boolean transA, boolean transB, int m, int n, int k,
                      float alpha, float[] a, int aOff, int lda,
                      float[] b, int bOff, int ldb,
                      float beta, float[] c, int cOff, int ldc) {
        Gemm.checkArgs(transA, transB, m, n, k, a, aOff, lda, b, bOff, ldb, c, cOff, ldc);
        Binding bi = Binding.INSTANCE;
        if (bi.error != null)
            throw new Peft4jException("OpenBLAS is not available (" + bi.error + "); use gemm mode 'java' or 'auto'");
        if (m == 0 || n == 0) return;
        int t = Parallel.inTask() ? 1 : Parallel.threads();
        try {
            if (t != threadsSet) {
                bi.setThreads.invokeExact(t);
                threadsSet = t;
            }
            bi.sgemm.invokeExact(ROW_MAJOR, transA ? TRANS : NO_TRANS, transB ? TRANS : NO_TRANS, m, n, k,
                    alpha, slice(a, aOff), lda, slice(b, bOff), ldb, beta, slice(c, cOff), ldc);
        } catch (Throwable e) {
            throw new Peft4jException("cblas_sgemm failed for m=" + m + " n=" + n + " k=" + k + ": " + e, e);
        }
    }

    private static MemorySegment slice(float[] x, int off) {
        MemorySegment s = MemorySegment.ofArray(x);
        return off == 0 ? s : s.asSlice(off * 4L);
    }

    private static Binding load() {
        try {
            if (!System.getProperty("os.name", "").toLowerCase().contains("linux") || !"amd64".equals(System.getProperty("os.arch")))
                return failed("only linux-x86_64 is packaged, this is " + System.getProperty("os.name") + "/" + System.getProperty("os.arch"));
            Path dir = extract();
            shortenThreadTimeout();
            SymbolLookup lookup = null;
            for (String lib : LIBRARIES) lookup = SymbolLookup.libraryLookup(dir.resolve(lib), Arena.global());
            Linker linker = Linker.nativeLinker();
            var I = ValueLayout.JAVA_INT;
            var F = ValueLayout.JAVA_FLOAT;
            var P = ValueLayout.ADDRESS;
            MethodHandle sgemm = linker.downcallHandle(lookup.findOrThrow("cblas_sgemm"),
                    FunctionDescriptor.ofVoid(I, I, I, I, I, I, F, P, I, P, I, F, P, I), Linker.Option.critical(true));
            MethodHandle setThreads = linker.downcallHandle(lookup.findOrThrow("openblas_set_num_threads"),
                    FunctionDescriptor.ofVoid(I));
            MethodHandle getConfig = linker.downcallHandle(lookup.findOrThrow("openblas_get_config"),
                    FunctionDescriptor.of(P));
            MethodHandle getCore = linker.downcallHandle(lookup.findOrThrow("openblas_get_corename"),
                    FunctionDescriptor.of(P));
            String config = ((MemorySegment) getConfig.invokeExact()).reinterpret(256).getString(0).trim()
                    + " core=" + ((MemorySegment) getCore.invokeExact()).reinterpret(64).getString(0);
            return new Binding(sgemm, setThreads, config, null);
        } catch (Throwable e) {
            return failed(e.toString());
        }
    }

    private static Binding failed(String why) { return new Binding(null, null, null, why); }

    /// OpenBLAS's idle worker threads spin for 2^THREAD_TIMEOUT cycles after each threaded call before they sleep:
    /// 2^28 (about 80 ms) by default, which on a small machine takes a core away from the [Parallel] tasks that run
    /// between two GEMMs (attention, norms, the loss): with the default, those phases ran twice as long on 2 cores.
    /// 2^16 cycles (about 20 µs) keeps the workers awake across back-to-back GEMMs only. OpenBLAS reads the variable
    /// when it loads, so it is set in this process's environment first, unless the user set it.
    static final String THREAD_TIMEOUT = "16";

    private static void shortenThreadTimeout() throws Throwable {
        Linker linker = Linker.nativeLinker();
        MethodHandle setenv = linker.downcallHandle(linker.defaultLookup().findOrThrow("setenv"),
                FunctionDescriptor.of(ValueLayout.JAVA_INT, ValueLayout.ADDRESS, ValueLayout.ADDRESS, ValueLayout.JAVA_INT));
        try (Arena arena = Arena.ofConfined()) {
            int rc = (int) setenv.invokeExact(arena.allocateFrom("OPENBLAS_THREAD_TIMEOUT"), arena.allocateFrom(THREAD_TIMEOUT), 0);
            if (rc != 0) System.getLogger(OpenBlasGemm.class.getName()).log(System.Logger.Level.WARNING,
                    "could not set OPENBLAS_THREAD_TIMEOUT; idle OpenBLAS threads may slow the Java kernels down");
        }
    }

    /// Copies the libraries out of the jar once; each file appears under its final name only when complete.
    private static Path extract() throws IOException {
        String xdg = System.getenv("XDG_CACHE_HOME");
        Path cache = xdg != null && !xdg.isBlank() ? Path.of(xdg) : Path.of(System.getProperty("user.home"), ".cache");
        Path dir = cache.resolve("peft4j").resolve("native").resolve("openblas-" + VERSION);
        Files.createDirectories(dir);
        ClassLoader cl = OpenBlasGemm.class.getClassLoader();
        for (String lib : LIBRARIES) {
            Path target = dir.resolve(lib);
            if (Files.isRegularFile(target)) continue;
            try (InputStream in = cl.getResourceAsStream(RESOURCE_DIR + lib)) {
                if (in == null)
                    throw new IOException(RESOURCE_DIR + lib + " is not on the class path; add org.bytedeco:openblas:"
                            + VERSION + " with classifier linux-x86_64");
                Path tmp = Files.createTempFile(dir, lib, ".part");
                try {
                    Files.copy(in, tmp, StandardCopyOption.REPLACE_EXISTING);
                    Files.move(tmp, target, StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
                } finally {
                    Files.deleteIfExists(tmp);
                }
            }
        }
        return dir;
    }
}
