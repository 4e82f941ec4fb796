package org.peft4j.train.dist;

import java.nio.ByteBuffer;
import java.nio.DoubleBuffer;
import java.nio.FloatBuffer;
import java.nio.LongBuffer;

/// An array as [TcpCollective] moves it: chunks copied into and out of the (little-endian) message buffers, and the
/// rank-order sum `x[off + j] = received[j] + x[off + j]`. One instance per element type and collective, rebound to
/// each call's array by `of`, so that no call allocates.
abstract sealed class Elements {
    abstract int length();

    abstract int bytes();

    /// buffer[0, n) ← x[off, off + n)
    abstract void putInto(ByteBuffer b, int off, int n);

    /// x[off, off + n) ← buffer[0, n)
    abstract void getFrom(ByteBuffer b, int off, int n);

    /// x[off + j] ← buffer[j] + x[off + j]: the partial sum of the ranks before this one, then this rank's value.
    abstract void addFrom(ByteBuffer b, int off, int n);

    static final class F32 extends Elements {
        private float[] x;
        private final float[] scratch = new float[TcpCollective.CHUNK_BYTES / 4];
        F32 of(float[] x) { this.x = x; return this; }
        int length() { return x.length; }
        int bytes() { return 4; }
        void putInto(ByteBuffer b, int off, int n) { view(b).put(0, x, off, n); }
        void getFrom(ByteBuffer b, int off, int n) { view(b).get(0, x, off, n); }
        void addFrom(ByteBuffer b, int off, int n) {
            view(b).get(0, scratch, 0, n);
            for (int j = 0; j < n; j++) x[off + j] = scratch[j] + x[off + j];
        }
        private final FloatBuffer up, down;
        private final ByteBuffer upB;
        F32(ByteBuffer up, ByteBuffer down) { this.upB = up; this.up = up.asFloatBuffer(); this.down = down.asFloatBuffer(); }
        private FloatBuffer view(ByteBuffer b) { return b == upB ? up : down; }
    }

    static final class F64 extends Elements {
        private double[] x;
        private final double[] scratch = new double[TcpCollective.CHUNK_BYTES / 8];
        F64 of(double[] x) { this.x = x; return this; }
        int length() { return x.length; }
        int bytes() { return 8; }
        void putInto(ByteBuffer b, int off, int n) { view(b).put(0, x, off, n); }
        void getFrom(ByteBuffer b, int off, int n) { view(b).get(0, x, off, n); }
        void addFrom(ByteBuffer b, int off, int n) {
            view(b).get(0, scratch, 0, n);
            for (int j = 0; j < n; j++) x[off + j] = scratch[j] + x[off + j];
        }
        private final DoubleBuffer up, down;
        private final ByteBuffer upB;
        F64(ByteBuffer up, ByteBuffer down) { this.upB = up; this.up = up.asDoubleBuffer(); this.down = down.asDoubleBuffer(); }
        private DoubleBuffer view(ByteBuffer b) { return b == upB ? up : down; }
    }

    static final class I64 extends Elements {
        private long[] x;
        private final long[] scratch = new long[TcpCollective.CHUNK_BYTES / 8];
        I64 of(long[] x) { this.x = x; return this; }
        int length() { return x.length; }
        int bytes() { return 8; }
        void putInto(ByteBuffer b, int off, int n) { view(b).put(0, x, off, n); }
        void getFrom(ByteBuffer b, int off, int n) { view(b).get(0, x, off, n); }
        void addFrom(ByteBuffer b, int off, int n) {
            view(b).get(0, scratch, 0, n);
            for (int j = 0; j < n; j++) x[off + j] = scratch[j] + x[off + j];
        }
        private final LongBuffer up, down;
        private final ByteBuffer upB;
        I64(ByteBuffer up, ByteBuffer down) { this.upB = up; this.up = up.asLongBuffer(); this.down = down.asLongBuffer(); }
        private LongBuffer view(ByteBuffer b) { return b == upB ? up : down; }
    }

    /// A list of float arrays as one stream of their concatenation (the trainer's gradient tensors). Binding the same
    /// list again reuses its offsets.
    static final class F32s extends Elements {
        private java.util.List<float[]> xs;
        private long[] starts = new long[1];   // starts[i]: offset of xs[i] in the stream; starts[size]: its length
        private final float[] scratch = new float[TcpCollective.CHUNK_BYTES / 4];
        private final FloatBuffer up, down;
        private final ByteBuffer upB;
        F32s(ByteBuffer up, ByteBuffer down) { this.upB = up; this.up = up.asFloatBuffer(); this.down = down.asFloatBuffer(); }
        private FloatBuffer view(ByteBuffer b) { return b == upB ? up : down; }

        F32s of(java.util.List<float[]> xs) {
            if (xs != this.xs || starts.length != xs.size() + 1) {
                long[] s = new long[xs.size() + 1];
                for (int i = 0; i < xs.size(); i++) s[i + 1] = s[i] + xs.get(i).length;
                if (s[xs.size()] > Integer.MAX_VALUE) throw new IllegalArgumentException("more than 2^31 - 1 floats in one allReduceSum");
                starts = s;
                this.xs = xs;
            }
            return this;
        }
        int length() { return (int) starts[starts.length - 1]; }
        int bytes() { return 4; }

        /// The index of the array holding stream offset `off` (the last array starting at or before it).
        private int arrayAt(int off) {
            int i = java.util.Arrays.binarySearch(starts, off);
            if (i < 0) i = -i - 2;
            while (i < xs.size() - 1 && starts[i + 1] == off) i++;   // skip empty arrays
            return i;
        }
        void putInto(ByteBuffer b, int off, int n) {
            FloatBuffer v = view(b);
            for (int i = arrayAt(off), done = 0; done < n; i++) {
                int from = (int) (off + done - starts[i]), k = Math.min(n - done, xs.get(i).length - from);
                v.put(done, xs.get(i), from, k);
                done += k;
            }
        }
        void getFrom(ByteBuffer b, int off, int n) {
            FloatBuffer v = view(b);
            for (int i = arrayAt(off), done = 0; done < n; i++) {
                int from = (int) (off + done - starts[i]), k = Math.min(n - done, xs.get(i).length - from);
                v.get(done, xs.get(i), from, k);
                done += k;
            }
        }
        void addFrom(ByteBuffer b, int off, int n) {
            view(b).get(0, scratch, 0, n);
            for (int i = arrayAt(off), done = 0; done < n; i++) {
                float[] x = xs.get(i);
                int from = (int) (off + done - starts[i]), k = Math.min(n - done, x.length - from);
                for (int j = 0; j < k; j++) x[from + j] = scratch[done + j] + x[from + j];
                done += k;
            }
        }
    }

    /// Bytes: broadcast only.
    static final class I8 extends Elements {
        private byte[] x;
        I8 of(byte[] x) { this.x = x; return this; }
        int length() { return x.length; }
        int bytes() { return 1; }
        void putInto(ByteBuffer b, int off, int n) { b.put(0, x, off, n); }
        void getFrom(ByteBuffer b, int off, int n) { b.get(0, x, off, n); }
        void addFrom(ByteBuffer b, int off, int n) { throw new UnsupportedOperationException("bytes are broadcast, not summed"); }
    }
}
