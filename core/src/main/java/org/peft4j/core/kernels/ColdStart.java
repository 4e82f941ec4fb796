package org.peft4j.core.kernels;

/// The start of a run, before C2 has compiled the Vector API kernels. Until then a Vector API loop runs in the
/// interpreter or in C1, where every vector operation allocates its result and takes a generic lane-by-lane path: the
/// first forward of SmolLM2-135M (a 4-token prompt) spent about 3 s there and produced 700 MB of garbage, against a few
/// tens of milliseconds once compiled. A kernel guarded by a [Gate] takes its lane-order scalar twin while the gate is
/// cold: the same operations in the same order as the vector code, so the same bits, at the speed of plain compiled
/// loops, which C1 and C2 reach after a few hundred iterations.
///
/// A gate opens (the kernel takes the vector path from then on) at the first of:
/// - [#openAll], which the generator calls once its first step has sampled a token (the prompt's forward ran on the
///   twins; every later token runs the vector code, which the decode's own calls bring to C2 within a few tokens);
/// - a warm-up: after [#WARMUP_DELAY_NANOS] of cold calls (a run that samples nothing, e.g. training or scoring), one
///   daemon thread runs the vector kernel on a problem of real structure and times it, and opens the gate when a call
///   takes no longer than compiled vector code does (its `budgetNanos`), or after [#MAX_WARMUP_NANOS].
///
/// The generator defers the warm-ups ([#deferWarmUps]) during its step, so that its first forward has the machine to
/// itself: a warm-up is one more busy thread, and it loads the JIT with the vector kernels (and with the Vector API's
/// own methods, hot while it runs them uncompiled). On 2 cores, warm-ups started during SmolLM2-135M's first forward
/// made its first token 0.4 s later (1.82-1.93 s against 1.41-1.54 s, alternating runs), and [#openAll] ends them
/// anyway. Opening at [#openAll] without a warm-up was measured too: a 200-token generate took 3.9-4.2 s, against
/// 4.5-4.7 s when the gates waited for warm-ups started there (the decode then ran on the twins meanwhile).
///
/// On by default; `-Dpeft4j.coldStart=off` leaves every gate open (the vector paths from the first call). It was off
/// until the lane sums' JIT cliff was found ([VectorOps#sumHalves]): with it, a 650-token generate on SmolLM2-135M
/// shapes took 10.5-13.6 s gated against 7.2-8.9 s ungated. Without it, gated and ungated take the same time (6.55 and
/// 7.50 s against 6.29 and 7.54 s, alternating runs, the same tokens), and the first token comes in 1.20-1.33 s
/// against 1.67-1.71 s (bundled model: 0.58-0.65 s against 0.75-0.76 s).
public final class ColdStart {
    private ColdStart() {}

    /// The warm-up starts at the first cold call this long after the gate's first one.
    public static final long WARMUP_DELAY_NANOS = 300_000_000L;

    /// A warm-up that never reaches the budget stops after this long, and opens its gate.
    public static final long MAX_WARMUP_NANOS = 20_000_000_000L;

    private static final boolean ON = !"off".equals(System.getProperty("peft4j.coldStart"));

    /// Every gate made so far, for [#openAll].
    private static final java.util.List<Gate> GATES = new java.util.concurrent.CopyOnWriteArrayList<>();

    /// Set by [#openAll]: gates made afterwards start open.
    private static volatile boolean allOpen;

    /// Set by [#deferWarmUps]: no warm-up starts (until [#openAll] opens the gates).
    private static volatile boolean deferred;

    /// No warm-up starts from now on: the caller (the generator, at each step) promises [#openAll] once its forward
    /// is done, which opens every gate.
    public static void deferWarmUps() { deferred = true; }

    /// Back to the state of a new process (tests of this class: the flags are process-wide).
    static void resetForTests() { allOpen = false; deferred = false; }

    /// Opens every gate (the vector paths from now on); cheap once done. The generator calls it after each step.
    public static void openAll() {
        if (allOpen) return;
        allOpen = true;
        for (Gate g : GATES) g.warm = true;
    }

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
            this.name = name; this.kernel = kernel; this.budgetNanos = budgetNanos; this.delayNanos = delayNanos;
            this.warm = warm;
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
            if (deferred || now - firstCold < delayNanos) return;
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

    /// A gate for a vector kernel: `kernel` runs its vector path on a problem of real size (never through the gate)
    /// and takes at most `budgetNanos` per call once C2 has compiled it. Cold from the start unless
    /// `-Dpeft4j.coldStart=off`, and not after [#openAll].
    public static Gate gate(String name, Runnable kernel, long budgetNanos) {
        Gate g = new Gate(name, kernel, budgetNanos, WARMUP_DELAY_NANOS, !ON || allOpen);
        GATES.add(g);
        return g;
    }

    /// A gate that starts cold whatever the property and an earlier [#openAll] say, with another warm-up delay (tests).
    static Gate gate(String name, Runnable kernel, long budgetNanos, long delayNanos) {
        Gate g = new Gate(name, kernel, budgetNanos, delayNanos, false);
        GATES.add(g);
        return g;
    }
}
