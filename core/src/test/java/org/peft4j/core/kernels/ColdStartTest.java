package org.peft4j.core.kernels;

import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

import java.util.concurrent.atomic.AtomicInteger;

import static org.junit.jupiter.api.Assertions.*;

/// A gate stays cold while its kernel is slower than the budget, opens once the kernel fits it, and starts its
/// warm-up only when asked again after its delay, and not at all after [ColdStart#deferWarmUps]; [ColdStart#openAll]
/// opens a gate at once.
class ColdStartTest {
    @BeforeEach @AfterEach
    void newProcess() { ColdStart.resetForTests(); }

    @Test
    void aGateOpensWhenTheKernelFitsTheBudget() throws InterruptedException {
        AtomicInteger calls = new AtomicInteger();
        // slow (1 ms) for the first 64 calls, then instant: stands for the interpreter, then compiled code
        ColdStart.Gate gate = ColdStart.gate("test-opens", () -> {
            if (calls.incrementAndGet() <= 64) {
                try { Thread.sleep(1); } catch (InterruptedException e) { Thread.currentThread().interrupt(); }
            }
        }, 200_000, 200_000_000L);
        assertTrue(gate.cold(), "a gate starts cold");
        Thread.sleep(20);
        assertTrue(gate.cold());
        assertEquals(0, calls.get(), "no warm-up within the delay");
        Thread.sleep(200);
        assertTrue(gate.cold(), "still cold when the warm-up starts");
        long t0 = System.nanoTime();
        while (gate.cold() && System.nanoTime() - t0 < 10_000_000_000L) Thread.sleep(5);
        assertTrue(gate.warm(), "the gate opens once a call fits the budget");
        assertTrue(calls.get() > 64, "it opened only after the slow calls, after " + calls.get() + " calls");
    }

    @Test
    void aGateStaysColdWhileTheKernelIsSlow() throws InterruptedException {
        AtomicInteger calls = new AtomicInteger();
        ColdStart.Gate gate = ColdStart.gate("test-stays-cold", () -> {
            calls.incrementAndGet();
            try { Thread.sleep(2); } catch (InterruptedException e) { Thread.currentThread().interrupt(); }
        }, 100_000, 0L);
        assertTrue(gate.cold());
        Thread.sleep(300);
        assertTrue(gate.cold(), "a kernel slower than its budget keeps the gate cold (within MAX_WARMUP_NANOS)");
        assertTrue(calls.get() > 16, "the warm-up kept running: " + calls.get() + " calls");
    }

    /// [ColdStart#openAll] (the generator's call after its first step) opens a cold gate at once, without a warm-up.
    @Test
    void openAllOpensAColdGateWithoutItsWarmUp() {
        AtomicInteger calls = new AtomicInteger();
        ColdStart.Gate gate = ColdStart.gate("test-open-all", calls::incrementAndGet, 1, 60_000_000_000L);
        assertTrue(gate.cold(), "a gate starts cold");
        ColdStart.openAll();
        assertFalse(gate.cold(), "openAll opens it");
        assertTrue(gate.warm());
        assertEquals(0, calls.get(), "no warm-up ran");
    }

    /// [ColdStart#deferWarmUps] (the generator, during its step): cold calls past the delay start no warm-up; the
    /// gate opens at [ColdStart#openAll], still without one.
    @Test
    void deferredWarmUpsNeverStart() throws InterruptedException {
        ColdStart.deferWarmUps();
        AtomicInteger calls = new AtomicInteger();
        ColdStart.Gate gate = ColdStart.gate("test-deferred", calls::incrementAndGet, 60_000_000_000L, 0L);
        for (int i = 0; i < 20; i++) { assertTrue(gate.cold()); Thread.sleep(5); }
        assertEquals(0, calls.get(), "no warm-up while deferred, though the delay (0) has passed");
        ColdStart.openAll();
        assertTrue(gate.warm(), "openAll opens it");
        Thread.sleep(20);
        assertEquals(0, calls.get(), "and no warm-up ran");
    }
}
