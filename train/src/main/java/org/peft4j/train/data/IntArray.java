package org.peft4j.train.data;

import java.util.Arrays;

/// A growable int[] for building id sequences without boxing.
public final class IntArray {
    private int[] a = new int[16];
    private int n;

    public void add(int v) {
        if (n == a.length) a = Arrays.copyOf(a, 2 * n);
        a[n++] = v;
    }

    public void addAll(int[] v) { addAll(v, 0, v.length); }

    public void addAll(int[] v, int from, int to) {
        int len = to - from;
        if (n + len > a.length) a = Arrays.copyOf(a, Math.max(2 * a.length, n + len));
        System.arraycopy(v, from, a, n, len);
        n += len;
    }

    public int size() { return n; }

    public int[] toArray() { return Arrays.copyOf(a, n); }
}
