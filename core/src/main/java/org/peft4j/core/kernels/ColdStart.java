package org.peft4j.core.kernels;

/// The start of a run, before C2 has compiled the Vector API kernels. Until then a Vector API loop runs in the
/// interpreter or in C1, where every vector operation allocates its result and takes a generic lane-by-lane path: the
/// first forward of SmolLM2-135M (a 4-token prompt) spent about 3 s there and produced 700 MB of garbage, against a few
/// tens of milliseconds once compiled. A kernel guarded by a [Gate] takes its lane-order scalar twin while the gate is
/// cold: the same operations in the same order as the vector code (one chain per lane, lanes added in index order),
/// so the same bits, at the speed of plain compiled loops, which C1 and C2 reach after a few hundred iterations.
/// After [#WARMUP_DELAY_NANOS] of cold calls, one daemon thread runs the vector kernel on a small problem and times
/// it; when one call takes no longer than compiled vector code does (its `budgetNanos`), the gate opens and the kernel
/// takes the vector path from then on. The delay keeps a short command (a prompt and its first token) from sharing
/// its cores with a warm-up it would not live to use, and a command that never computes starts no thread. The
/// warm-up gives up after [#MAX_WARMUP_NANOS] (the gate opens then too, e.g. on a machine too loaded to time it).
/// Off by default: measured on SmolLM2-135M shapes, the gated runs reached their first token sooner (1.4 s against
/// about 3 s) but decoded at half the speed afterwards (650 tokens: 37.9 s against 20.3 s; `bench generate` decode
/// 14 against 55 tokens/s), the row path compiled while the gate was cold or warmed on the small problem staying
/// slow. `-Dpeft4j.coldStart=on` gates the kernels (a short command's time to first token); the default opens every
/// gate at once (always the vector path).
public final class ColdStart {
    private ColdStart() {}

    /// The warm-up starts at the first cold call this long after the gate's first one.
    public static final long WARMUP_DELAY_NANOS = 300_000_000L;

    /// A warm-up that never reaches the budget stops after this long, and opens its gate.
    public static final long MAX_WARMUP_NANOS = 20_000_000_000L;

    private static final boolean ON = "on".equals(System.getProperty("peft4j.coldStart"));

    /// The cold/warm state of one vector kernel.
    public static final class Gate {
        private final String name;
        private final Runnable kernel;
        private final long budgetNanos;
        private final long delayNanos;
        private volatile boolean warm;
        private volatile boolean started;
        private long firstCold;
        private boolean asked;

        private Gate(String name, Runnable kernel, long budgetNanos, long delayNanos, boolean warm) {
            this.name = name; this.kernel = kernel; this.budgetNanos = budgetNanos; this.delayNanos = delayNanos; this.warm = warm;
        }

        /// True while the vector kernel is not yet compiled: the caller takes the scalar twin. A call at least the
        /// delay after the first starts the warm-up thread.
        public boolean cold() {
            if (warm) return false;
            if (!started) start();
            return !warm;
        }

        /// Whether the gate has opened (the vector path is taken).
        public boolean warm() { return warm; }

        private synchronized void start() {
            if (started) return;
            long now = System.nanoTime();
            if (!asked) { asked = true; firstCold = now; }
            if (now - firstCold < delayNanos) return;
            started = true;
            Thread.ofPlatform().daemon().name("peft4j-warmup-" + name).start(this::warmUp);
        }

        /// Runs the kernel until one call fits the budget (the best of 16, so a preempted call does not count).
        private void warmUp() {
            long t0 = System.nanoTime();
            try {
                while (!warm && System.nanoTime() - t0 < MAX_WARMUP_NANOS) {
                    long best = Long.MAX_VALUE;
                    for (int i = 0; i < 16; i++) {
                        long s = System.nanoTime();
                        kernel.run();
                        best = Math.min(best, System.nanoTime() - s);
                    }
                    if (best <= budgetNanos) break;
                }
            } finally {
                warm = true;
            }
        }
    }

    /// A gate for a vector kernel: `kernel` runs its vector path on a small problem (never through the gate) and
    /// takes at most `budgetNanos` per call once C2 has compiled it. Open from the start unless
    /// `-Dpeft4j.coldStart=on`.
    public static Gate gate(String name, Runnable kernel, long budgetNanos) {
        return new Gate(name, kernel, budgetNanos, WARMUP_DELAY_NANOS, !ON);
    }

    /// A gate that starts cold whatever the property says, with another warm-up delay (tests).
    static Gate gate(String name, Runnable kernel, long budgetNanos, long delayNanos) {
        return new Gate(name, kernel, budgetNanos, delayNanos, false);
    }
}
