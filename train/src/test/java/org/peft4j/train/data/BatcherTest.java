package org.peft4j.train.data;

import org.junit.jupiter.api.Test;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashSet;
import java.util.List;
import java.util.Set;

import static org.junit.jupiter.api.Assertions.*;
import static org.peft4j.train.data.TokenizedExample.IGNORE_INDEX;

class BatcherTest {
    static List<TokenizedExample> examples(int n) {
        List<TokenizedExample> ex = new ArrayList<>();
        for (int i = 0; i < n; i++) {
            int[] ids = new int[1 + i % 4];
            Arrays.fill(ids, 10 + i);
            int[] labels = ids.clone();
            labels[0] = IGNORE_INDEX;
            ex.add(new TokenizedExample(ids, labels));
        }
        return ex;
    }

    @Test void rightPaddingToTheLongestRow() {
        Batcher b = new Batcher(examples(3), 3, 0, 7, false);
        Batcher.Batch batch = b.next();
        assertEquals(3, batch.B());
        assertEquals(3, batch.T()); // lengths 1, 2, 3
        assertArrayEquals(new int[] {10, 0, 0, 11, 11, 0, 12, 12, 12}, batch.inputIds());
        assertArrayEquals(new int[] {-100, -100, -100, -100, 11, -100, -100, 12, 12}, batch.labels());
        assertArrayEquals(new int[] {1, 2, 3}, batch.lengths());
    }

    /// shift_attn's padding to a multiple of the group layout: the same rows, more pad columns, lengths kept.
    @Test void padToAddsPadColumnsOnTheRight() {
        Batcher.Batch batch = new Batcher(examples(3), 2, 0, 7, false).next();   // lengths 1, 2
        Batcher.Batch p = Batcher.padTo(batch, 4, 5);
        assertEquals(4, p.T());
        assertArrayEquals(new int[] {10, 0, 5, 5, 11, 11, 5, 5}, p.inputIds());
        assertArrayEquals(new int[] {-100, -100, -100, -100, -100, 11, -100, -100}, p.labels());
        assertArrayEquals(batch.lengths(), p.lengths());
        assertSame(batch, Batcher.padTo(batch, 2, 5));
        assertThrows(IllegalArgumentException.class, () -> Batcher.padTo(batch, 1, 5));
    }

    @Test void everyEpochIsAPermutationAndDependsOnSeed() {
        Batcher b = new Batcher(examples(10), 4, 0, 1, true);
        assertEquals(3, b.batchesPerEpoch());
        List<Integer> epoch0 = new ArrayList<>(), epoch1 = new ArrayList<>();
        for (int i = 0; i < 3; i++) for (int id : b.next().exampleIds()) epoch0.add(id);
        assertEquals(new Batcher.Position(0, 10), b.position());
        for (int i = 0; i < 3; i++) for (int id : b.next().exampleIds()) epoch1.add(id);
        Set<Integer> all = new HashSet<>(List.of(0, 1, 2, 3, 4, 5, 6, 7, 8, 9));
        assertEquals(all, new HashSet<>(epoch0));
        assertEquals(10, epoch0.size());
        assertEquals(all, new HashSet<>(epoch1));
        assertNotEquals(epoch0, epoch1);
        assertArrayEquals(b.orderOf(0), new Batcher(examples(10), 4, 0, 1, true).orderOf(0));
        assertFalse(Arrays.equals(b.orderOf(0), new Batcher(examples(10), 4, 0, 2, true).orderOf(0)));
    }

    @Test void resumeFromAPositionReproducesTheStream() {
        Batcher a = new Batcher(examples(10), 3, 0, 5, true);
        for (int i = 0; i < 5; i++) a.next(); // into epoch 1
        Batcher.Position saved = a.position();
        List<int[]> expected = new ArrayList<>();
        for (int i = 0; i < 7; i++) expected.add(a.next().inputIds());
        Batcher resumed = new Batcher(examples(10), 3, 0, 5, true);
        resumed.seek(saved);
        for (int i = 0; i < 7; i++) assertArrayEquals(expected.get(i), resumed.next().inputIds(), "batch " + i);
    }
}
