package org.peft4j.train.optim;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

import static org.junit.jupiter.api.Assertions.*;

/// Paged optimizers: bit-identical to their heap twins (paging moves bytes, not numerics, specs.md §1.6), the file
/// is deleted on close, and the budget bounds the mapping's resident set as PagedState documents.
class PagedAdamWTest {
    static final List<Integer> SIZES = List.of(4500, 1000, 4096, 70_000);
    static final AdamW.Config CFG = new AdamW.Config(0.9, 0.999, 1e-8, 0.01);

    static List<float[]> init() {
        List<float[]> p = new ArrayList<>();
        for (int t = 0; t < SIZES.size(); t++) p.add(AdamW8bitTest.hashValues(1 + t, 0, SIZES.get(t)));
        return p;
    }

    static List<float[]> zeros() {
        List<float[]> g = new ArrayList<>();
        for (int n : SIZES) g.add(new float[n]);
        return g;
    }

    static void grads(List<float[]> g, int step) { for (int t = 0; t < g.size(); t++) AdamW8bitTest.grad(g.get(t), t, step); }

    @Test
    void paged32bitEqualsAdamWBitForBit(@TempDir Path dir) {
        for (long budget : new long[]{0, 100_000, Long.MAX_VALUE}) {
            List<float[]> pa = init(), ga = zeros(), pb = init(), gb = zeros();
            AdamW heap = new AdamW(pa, ga, CFG);
            try (PagedAdamW paged = new PagedAdamW(pb, gb, CFG, dir, budget)) {
                for (int step = 1; step <= 10; step++) {
                    grads(ga, step); grads(gb, step);
                    heap.step(AdamW8bitTest.lr(step)); paged.step(AdamW8bitTest.lr(step));
                }
                for (int t = 0; t < SIZES.size(); t++) {
                    AdamW8bitTest.assertBits("budget " + budget + " param " + t, pa.get(t), pb.get(t));
                    AdamW8bitTest.assertBits("m " + t, heap.state().m().get(t), paged.state().m().get(t));
                    AdamW8bitTest.assertBits("v " + t, heap.state().v().get(t), paged.state().v().get(t));
                }
                assertTrue(Files.exists(paged.pagedState().file()));
            }
        }
    }

    @Test
    void paged8bitEqualsAdamW8bitBitForBit(@TempDir Path dir) {
        List<float[]> pa = init(), ga = zeros(), pb = init(), gb = zeros();
        try (AdamW8bit heap = new AdamW8bit(pa, ga, CFG); AdamW8bit paged = AdamW8bit.paged(pb, gb, CFG, dir, 0)) {
            for (int step = 1; step <= 10; step++) {
                grads(ga, step); grads(gb, step);
                heap.step(AdamW8bitTest.lr(step)); paged.step(AdamW8bitTest.lr(step));
            }
            for (int t = 0; t < SIZES.size(); t++) AdamW8bitTest.assertBits("param " + t, pa.get(t), pb.get(t));
            for (int t = 0; t < SIZES.size(); t++)
                switch (heap.state().moments().get(t)) {
                    case AdamW8bit.Moments.Quantized q -> {
                        var r = (AdamW8bit.Moments.Quantized) paged.state().moments().get(t);
                        assertArrayEquals(q.state1(), r.state1(), "state1 " + t);
                        assertArrayEquals(q.state2(), r.state2(), "state2 " + t);
                        AdamW8bitTest.assertBits("absmax1 " + t, q.absmax1(), r.absmax1());
                    }
                    case AdamW8bit.Moments.Full f -> AdamW8bitTest.assertBits("m " + t, f.m(), ((AdamW8bit.Moments.Full) paged.state().moments().get(t)).m());
                }
        }
    }

    @Test
    void closeDeletesTheStateFile(@TempDir Path dir) {
        Path file;
        try (PagedAdamW paged = new PagedAdamW(init(), zeros(), CFG, dir, Long.MAX_VALUE)) {
            file = paged.pagedState().file();
            assertEquals(dir, file.getParent());
            assertTrue(Files.exists(file));
        }
        assertFalse(Files.exists(file), file + " should be deleted on close");
    }

    /// 8 tensors of 1 MiB of moments each. Budget 0: after a step at most the page-cache-backed pages of the last
    /// update remain mapped in (0 after its release). Budget 3 MiB: at most 3 regions. Unlimited: all 8 MiB.
    /// Read from /proc/self/smaps; skipped loudly where that does not exist.
    @Test
    void budgetBoundsTheResidentMapping(@TempDir Path dir) {
        if (!Files.isReadable(Path.of("/proc/self/smaps"))) {
            System.out.println("SKIP budgetBoundsTheResidentMapping: /proc/self/smaps is unavailable on this OS");
            return;
        }
        int n = 1 << 17;   // 8n bytes = 1 MiB of m and v per tensor
        for (long budget : new long[]{0, 3L << 20, Long.MAX_VALUE}) {
            List<float[]> p = new ArrayList<>(), g = new ArrayList<>();
            for (int t = 0; t < 8; t++) { p.add(AdamW8bitTest.hashValues(t, 0, n)); g.add(AdamW8bitTest.hashValues(t, 1, n)); }
            try (PagedAdamW paged = new PagedAdamW(p, g, CFG, dir, budget)) {
                paged.step(1e-3);
                long rss = paged.pagedState().residentBytes();
                assertTrue(paged.pagedState().windowBytes() <= budget, "window " + paged.pagedState().windowBytes());
                long expectedMax = Math.min(budget, 8L << 20);
                System.out.printf("budget %d: mapped-resident %d bytes after a step%n", budget, rss);
                assertTrue(rss <= expectedMax, "budget " + budget + ": " + rss + " bytes of state resident");
                if (budget == Long.MAX_VALUE) assertEquals(8L << 20, rss, "without a budget every touched page stays mapped");
            }
        }
    }
}
