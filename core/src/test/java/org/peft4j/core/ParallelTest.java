package org.peft4j.core;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;

import java.util.concurrent.atomic.AtomicIntegerArray;
import java.util.concurrent.atomic.AtomicReference;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

/// The pool's contract: every index once, fixed chunks, nested calls inline, failures reach the caller, several
/// calling threads take turns, and thousands of back-to-back regions (workers spinning, parking, waking) complete.
class ParallelTest {
    private final int before = Parallel.threads();

    @AfterEach
    void restore() { Parallel.setThreads(before); }

    @Test
    void everyIndexRunsOnceForAnyThreadCount() {
        for (int threads : new int[] {1, 2, 3, 5}) {
            Parallel.setThreads(threads);
            for (int n : new int[] {0, 1, 2, 3, 7, 64, 1001}) {
                AtomicIntegerArray seen = new AtomicIntegerArray(Math.max(n, 1));
                Parallel.range(n, i -> seen.incrementAndGet(i));
                for (int i = 0; i < n; i++) assertEquals(1, seen.get(i), "index " + i + " of " + n + ", threads " + threads);
            }
        }
    }

    @Test
    void chunksAreFixedContiguousRanges() {
        Parallel.setThreads(3);
        int[][] got = new int[4][];
        Parallel.chunks(10, 4, (ci, from, to) -> got[ci] = new int[] {from, to});
        assertEquals("[0, 2] [2, 5] [5, 7] [7, 10]", java.util.Arrays.stream(got).map(java.util.Arrays::toString)
                .reduce((a, b) -> a + " " + b).orElseThrow());
    }

    @Test
    void nestedCallsRunInlineInsideATask() {
        Parallel.setThreads(2);
        assertFalse(Parallel.inTask());
        AtomicReference<String> problem = new AtomicReference<>();
        Parallel.range(4, i -> {
            if (!Parallel.inTask()) problem.set("inTask() false inside a chunk");
            Thread outer = Thread.currentThread();
            Parallel.range(3, j -> { if (Thread.currentThread() != outer) problem.set("nested chunk left its thread"); });
        });
        assertEquals(null, problem.get());
        assertFalse(Parallel.inTask());
    }

    @Test
    void aFailureInAnyChunkReachesTheCallerAndThePoolGoesOn() {
        Parallel.setThreads(2);
        for (int bad : new int[] {0, 9}) {   // chunk 0 runs on the caller, the last on a worker
            var e = assertThrows(IllegalArgumentException.class,
                    () -> Parallel.range(10, i -> { if (i == bad) throw new IllegalArgumentException("bad " + i); }));
            assertEquals("bad " + bad, e.getMessage());
        }
        AtomicIntegerArray seen = new AtomicIntegerArray(10);
        Parallel.range(10, seen::incrementAndGet);
        for (int i = 0; i < 10; i++) assertEquals(1, seen.get(i));
    }

    @Test
    void backToBackRegionsAndConcurrentCallersComplete() throws Exception {
        Parallel.setThreads(2);
        long[] sums = new long[2];
        Thread[] callers = new Thread[2];
        AtomicReference<Throwable> failed = new AtomicReference<>();
        for (int c = 0; c < 2; c++) {
            int me = c;
            callers[c] = Thread.ofPlatform().start(() -> {
                try {
                    for (int round = 0; round < 3000; round++) {
                        long[] part = new long[2];
                        Parallel.chunks(100, 2, (ci, from, to) -> { for (int i = from; i < to; i++) part[ci] += i; });
                        sums[me] += part[0] + part[1];
                        if (round % 500 == 0) Thread.sleep(1);   // let the workers park, then wake them
                    }
                } catch (Throwable e) {
                    failed.set(e);
                }
            });
        }
        for (Thread t : callers) t.join(60_000);
        for (Thread t : callers) assertFalse(t.isAlive(), "a caller is stuck");
        assertEquals(null, failed.get());
        for (long s : sums) assertEquals(3000L * 4950, s);
    }

    /// --threads above the core count is capped to the cores (issue 17, item 6); a count within them is kept.
    @Test
    void threadsAreCappedAtTheCoreCount() {
        int cores = Runtime.getRuntime().availableProcessors();
        assertEquals(cores, Parallel.capToCores(1000));
        assertEquals(cores, Parallel.capToCores(cores + 1));
        assertEquals(1, Parallel.capToCores(1));
    }
}
