package org.peft4j.core;

import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicReference;
import java.util.concurrent.locks.LockSupport;
import java.util.function.IntConsumer;

/// One fixed pool for all kernels. Work is split into fixed chunks independent of timing, so any reduction a caller
/// does per chunk is bit-reproducible for a given thread count.
///
/// With t threads the caller runs the first chunk itself and t − 1 workers run the others. A worker that has no work
/// spins for [#SPIN_NANOS] and then parks, so between parallel regions (while OpenBLAS runs a GEMM on its own threads,
/// say) no thread of ours competes for a core: with ForkJoinPool's idle workers scanning, serial phases of a training
/// step were measured up to 2x slower at 2 threads than at 1 on a 2-core machine.
public final class Parallel {
    /// How long an idle worker (and a caller waiting for its workers) spins before it parks: back-to-back regions
    /// hand over without a wake-up, a GEMM in between finds the workers asleep.
    static final long SPIN_NANOS = 20_000;

    private static volatile int threads = Math.max(1, Runtime.getRuntime().availableProcessors());
    private static volatile Pool pool = new Pool(threads - 1);

    /// Bound while a chunk of [#range] runs: code called from inside a task (a GEMM, say) runs serially there.
    private static final ScopedValue<Boolean> IN_TASK = ScopedValue.newInstance();

    private Parallel() {}

    public static int threads() { return threads; }

    /// True inside a chunk run by [#range] or [#chunks] with more than one thread: work started here should run on
    /// the calling thread (nested `range` calls do), and a native library with its own threads should use one.
    public static boolean inTask() { return IN_TASK.isBound(); }

    /// A user's thread count capped at the machine's cores, with a warning when capped: more threads than cores only
    /// make the workers spin for each other (64 threads on 2 cores took 20 times longer, 1000 hung in calibration).
    public static int capToCores(int requested) {
        int cores = Runtime.getRuntime().availableProcessors();
        if (requested <= cores) return requested;
        System.getLogger(Parallel.class.getName()).log(System.Logger.Level.WARNING,
                "threads " + requested + " is more than the " + cores + " cores of this machine; using " + cores);
        return cores;
    }

    /// Sets the number of threads (1 = run on the caller). Call before work starts.
    public static synchronized void setThreads(int n) {
        if (n < 1) throw new IllegalArgumentException("threads must be >= 1, got " + n);
        if (n == threads) return;
        Pool old = pool;
        pool = new Pool(n - 1);
        threads = n;
        old.shutdown();
    }

    /// Runs `body(i)` for i in [0, n), split into at most `threads()` contiguous chunks.
    public static void range(int n, IntConsumer body) {
        int t = threads;
        if (n <= 0) return;
        if (t == 1 || n == 1 || IN_TASK.isBound()) {
            for (int i = 0; i < n; i++) body.accept(i);
            return;
        }
        pool.run(n, Math.min(t, n), body);
    }

    /// Runs `body(chunk, from, to)` over `chunks` fixed contiguous chunks of [0, n).
    public static void chunks(int n, int chunks, ChunkBody body) {
        if (n <= 0) return;
        int c = Math.max(1, Math.min(chunks, n));
        range(c, ci -> body.run(ci, (int) ((long) n * ci / c), (int) ((long) n * (ci + 1) / c)));
    }

    @FunctionalInterface
    public interface ChunkBody { void run(int chunk, int from, int to); }

    /// Chunk `ci` of `chunks` over [0, n): the indices it runs, with IN_TASK bound.
    private static void runChunk(int n, int chunks, int ci, IntConsumer body) {
        int from = (int) ((long) n * ci / chunks), to = (int) ((long) n * (ci + 1) / chunks);
        ScopedValue.where(IN_TASK, Boolean.TRUE).run(() -> {
            for (int i = from; i < to; i++) body.accept(i);
        });
    }

    /// The caller plus `size` workers; one job at a time (callers from several threads take turns).
    private static final class Pool {
        private final Worker[] workers;
        private final AtomicInteger pending = new AtomicInteger();
        private final AtomicReference<Throwable> failure = new AtomicReference<>();
        // the current job, published to a worker by the volatile write of its `posted` counter
        private int n, chunks;
        private IntConsumer body;
        private volatile Thread caller;
        private volatile boolean stopped;

        Pool(int size) {
            workers = new Worker[size];
            for (int w = 0; w < size; w++) {
                workers[w] = new Worker(w + 1);
                Thread th = Thread.ofPlatform().daemon().name("peft4j-parallel-" + (w + 1)).unstarted(workers[w]);
                workers[w].thread = th;
                th.start();
            }
        }

        synchronized void run(int n, int chunks, IntConsumer body) {
            if (stopped) {   // replaced by setThreads meanwhile: run here
                for (int i = 0; i < n; i++) body.accept(i);
                return;
            }
            this.n = n; this.chunks = chunks; this.body = body;
            failure.set(null);
            caller = Thread.currentThread();
            pending.set(chunks - 1);
            for (int ci = 1; ci < chunks; ci++) workers[ci - 1].post();
            try {
                runChunk(n, chunks, 0, body);
            } catch (Throwable e) {
                failure.compareAndSet(null, e);
            }
            long spinUntil = System.nanoTime() + SPIN_NANOS;
            while (pending.get() != 0) {
                if (System.nanoTime() < spinUntil) Thread.onSpinWait();
                else LockSupport.park(this);
            }
            this.body = null;
            Throwable e = failure.getAndSet(null);
            if (e instanceof RuntimeException re) throw re;
            if (e instanceof Error err) throw err;
            if (e != null) throw new IllegalStateException(e);
        }

        void shutdown() {
            stopped = true;
            for (Worker w : workers) LockSupport.unpark(w.thread);
        }

        /// Runs chunk `index` of each job posted to it.
        private final class Worker implements Runnable {
            final int index;
            Thread thread;
            private volatile long posted;
            private long done;

            Worker(int index) { this.index = index; }

            /// Called by the job's caller only (under the pool's lock).
            void post() {
                posted = posted + 1;
                LockSupport.unpark(thread);
            }

            @Override
            public void run() {
                for (;;) {
                    long spinUntil = System.nanoTime() + SPIN_NANOS;
                    while (posted == done) {
                        if (stopped) return;
                        if (System.nanoTime() < spinUntil) Thread.onSpinWait();
                        else LockSupport.park(this);
                    }
                    done = posted;
                    try {
                        runChunk(n, chunks, index, body);
                    } catch (Throwable e) {
                        failure.compareAndSet(null, e);
                    }
                    if (pending.decrementAndGet() == 0) LockSupport.unpark(caller);
                }
            }
        }
    }
}
