package org.peft4j.tokenizer;

import java.util.Arrays;

/// A growable `int[]` for token ids, so encoding does not box.
final class IntList {
    private int[] a = new int[16];
    private int n;

    void add(int v) {
        if (n == a.length) a = Arrays.copyOf(a, n * 2);
        a[n++] = v;
    }

    void addAll(int[] vs) {
        for (int v : vs) add(v);
    }

    int size() { return n; }

    int[] toArray() { return Arrays.copyOf(a, n); }
}
