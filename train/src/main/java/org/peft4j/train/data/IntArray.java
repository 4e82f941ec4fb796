package org.peft4j.train.data;

import java.util.Arrays;

/// A growable int[] for building id sequences without boxing.
final class IntArray {
    private int[] a = new int[16];
    private int n;

    void add(int v) {
        if (n == a.length) a = Arrays.copyOf(a, 2 * n);
        a[n++] = v;
    }

    void addAll(int[] v) { addAll(v, 0, v.length); }

    void addAll(int[] v, int from, int to) {
        int len = to - from;
        if (n + len > a.length) a = Arrays.copyOf(a, Math.max(2 * a.length, n + len));
        System.arraycopy(v, from, a, n, len);
        n += len;
    }

    int size() { return n; }

    int[] toArray() { return Arrays.copyOf(a, n); }
}
