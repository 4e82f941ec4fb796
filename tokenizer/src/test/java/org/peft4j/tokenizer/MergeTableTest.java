package org.peft4j.tokenizer;

import org.junit.jupiter.api.Test;

import java.util.HashMap;
import java.util.Map;
import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.*;

/// The merge table against a HashMap fed the same puts: random pairs (many colliding slots at half load), repeated
/// keys (the later value wins), absent keys; and its refusals.
class MergeTableTest {
    @Test
    void agreesWithAHashMap() {
        for (int n : new int[] {0, 1, 7, 1000, 50_000}) {
            var rng = new SplittableRandom(n);
            MergeTable t = new MergeTable(n);
            Map<Long, Long> ref = new HashMap<>();
            for (int i = 0; i < n; i++) {
                int a = rng.nextInt(n / 4 + 1), b = rng.nextInt(60_000);   // repeats when n is large
                long key = BpeModel.pair(a, b), value = ((long) i << 32) | rng.nextInt(1 << 20);
                t.put(key, value);
                ref.put(key, value);
            }
            assertEquals(ref.size(), t.size(), "n=" + n);
            for (var e : ref.entrySet()) assertEquals(e.getValue().longValue(), t.get(e.getKey()), "n=" + n + " key " + e.getKey());
            for (int i = 0; i < 1000; i++) {
                long key = BpeModel.pair(rng.nextInt(1 << 20), rng.nextInt(1 << 20));
                assertEquals(ref.containsKey(key) ? ref.get(key) : MergeTable.ABSENT, t.get(key));
            }
        }
    }

    @Test
    void refusesNegativeEntriesAndOverflow() {
        MergeTable t = new MergeTable(2);
        assertThrows(IllegalArgumentException.class, () -> t.put(-1L, 0L));
        assertThrows(IllegalArgumentException.class, () -> t.put(0L, -1L));
        int slots = 4;   // 2 keys → 4 slots, half of them usable
        for (int i = 0; i < slots / 2; i++) t.put(i, i);
        t.put(0, 9);     // a repeated key takes no new slot
        assertEquals(9, t.get(0));
        assertThrows(IllegalStateException.class, () -> t.put(99, 1));
    }
}
