package org.peft4j.core;

import java.util.concurrent.ForkJoinPool;
import java.util.concurrent.RecursiveAction;
import java.util.function.IntConsumer;

/// One fixed pool for all kernels. Work is split into fixed chunks independent of timing, so any reduction a caller
/// does per chunk is bit-reproducible for a given thread count.
public final class Parallel {
    private static volatile int threads = Math.max(1, Runtime.getRuntime().availableProcessors());
    private static volatile ForkJoinPool pool = new ForkJoinPool(threads);

    /// Bound while a chunk of [#range] runs: code called from inside a task (a GEMM, say) runs serially there.
    private static final ScopedValue<Boolean> IN_TASK = ScopedValue.newInstance();

    private Parallel() {}

    public static int threads() { return threads; }

    /// True inside a chunk run by [#range] or [#chunks] with more than one thread: work started here should run on
    /// the calling thread (nested `range` calls do), and a native library with its own threads should use one.
    public static boolean inTask() { return IN_TASK.isBound(); }

    /// Sets the number of worker threads (1 = run on the caller). Call before work starts.
    public static synchronized void setThreads(int n) {
        if (n < 1) throw new IllegalArgumentException("threads must be >= 1, got " + n);
        if (n == threads) return;
        ForkJoinPool old = pool;
        threads = n;
        pool = new ForkJoinPool(n);
        old.shutdown();
    }

    /// Runs `body(i)` for i in [0, n), split into at most `threads()` contiguous chunks.
    public static void range(int n, IntConsumer body) {
        int t = threads;
        if (n <= 0) return;
        if (t == 1 || n == 1 || IN_TASK.isBound() || (Thread.currentThread() instanceof java.util.concurrent.ForkJoinWorkerThread w && w.getPool() == pool)) {
            for (int i = 0; i < n; i++) body.accept(i);
            return;
        }
        int chunks = Math.min(t, n);
        pool.invoke(new Chunks(n, chunks, 0, chunks, body));
    }

    /// Runs `body(chunk, from, to)` over `chunks` fixed contiguous chunks of [0, n).
    public static void chunks(int n, int chunks, ChunkBody body) {
        if (n <= 0) return;
        int c = Math.max(1, Math.min(chunks, n));
        range(c, ci -> body.run(ci, (int) ((long) n * ci / c), (int) ((long) n * (ci + 1) / c)));
    }

    @FunctionalInterface
    public interface ChunkBody { void run(int chunk, int from, int to); }

    private static final class Chunks extends RecursiveAction {
        final int n, chunks, lo, hi;
        final IntConsumer body;

        Chunks(int n, int chunks, int lo, int hi, IntConsumer body) {
            this.n = n; this.chunks = chunks; this.lo = lo; this.hi = hi; this.body = body;
        }

        @Override
        protected void compute() {
            if (hi - lo == 1) {
                int from = (int) ((long) n * lo / chunks), to = (int) ((long) n * (lo + 1) / chunks);
                ScopedValue.where(IN_TASK, Boolean.TRUE).run(() -> {
                    for (int i = from; i < to; i++) body.accept(i);
                });
                return;
            }
            int mid = (lo + hi) >>> 1;
            invokeAll(new Chunks(n, chunks, lo, mid, body), new Chunks(n, chunks, mid, hi, body));
        }
    }
}
