package org.peft4j.train.dist;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.function.Function;

import static org.junit.jupiter.api.Assertions.*;

/// N ranks as threads on loopback: sums bit-identical to the rank-order sum in one process, broadcasts, mismatched
/// calls and dead or hung peers failing within the timeout instead of hanging.
class TcpCollectiveTest {

    /// Joins `n` ranks on 127.0.0.1 and runs `body` on each, in its own thread; returns the bodies' results by rank.
    static <T> List<T> onRanks(int n, Duration timeout, Function<Collective, T> body) throws Exception {
        List<TcpCollective.Endpoint> eps = new ArrayList<>();
        List<String> addrs = new ArrayList<>();
        for (int r = 0; r < n; r++) {
            eps.add(TcpCollective.Endpoint.open("127.0.0.1", "127.0.0.1"));
            addrs.add(eps.get(r).address());
        }
        ExecutorService pool = Executors.newFixedThreadPool(n);
        try {
            List<Future<T>> fs = new ArrayList<>();
            for (int r = 0; r < n; r++) {
                int rank = r;
                fs.add(pool.submit(() -> {
                    try (Collective c = eps.get(rank).join(rank, addrs, timeout)) {
                        return body.apply(c);
                    }
                }));
            }
            List<T> out = new ArrayList<>();
            for (Future<T> f : fs) out.add(f.get(60, TimeUnit.SECONDS));
            return out;
        } finally {
            pool.shutdownNow();
        }
    }

    static float[] floats(int rank, int n) {
        Random rnd = new Random(1000 + rank);
        float[] x = new float[n];
        // wide exponent range, so that the order of the adds shows in the last bits
        for (int i = 0; i < n; i++) x[i] = (float) (rnd.nextGaussian() * Math.pow(10, rnd.nextInt(7) - 3));
        return x;
    }

    @ParameterizedTest
    @ValueSource(ints = {2, 3, 4})
    void sumsAreTheRankOrderSumBitForBit(int n) throws Exception {
        int len = 3 * (TcpCollective.CHUNK_BYTES / 4) + 12_345;   // several chunks and a partial one
        List<float[]> got = onRanks(n, Duration.ofSeconds(30), c -> {
            float[] x = floats(c.rank(), len);
            c.allReduceSum(x);
            c.allReduceSum(new float[0]);   // empty arrays are fine
            return x;
        });
        float[] expected = floats(0, len);
        for (int r = 1; r < n; r++) {
            float[] y = floats(r, len);
            for (int i = 0; i < len; i++) expected[i] = expected[i] + y[i];
        }
        for (int r = 0; r < n; r++)
            for (int i = 0; i < len; i++)
                if (Float.floatToRawIntBits(got.get(r)[i]) != Float.floatToRawIntBits(expected[i]))
                    fail("rank " + r + " element " + i + ": " + got.get(r)[i] + " vs rank-order sum " + expected[i]);
        if (n >= 3) {   // the test can tell orders apart: the reverse order gives other bits somewhere
            float[] reverse = floats(n - 1, len);
            for (int r = n - 2; r >= 0; r--) {
                float[] y = floats(r, len);
                for (int i = 0; i < len; i++) reverse[i] = reverse[i] + y[i];
            }
            int differ = 0;
            for (int i = 0; i < len; i++) if (reverse[i] != expected[i]) differ++;
            assertTrue(differ > 0, "the data should make the summation order visible");
        }
    }

    @Test
    void aListOfArraysIsSummedAsTheirConcatenation() throws Exception {
        int[] sizes = {0, 5, 70_000, 0, 100_003, 3};
        int n = 3;
        List<List<float[]>> got = onRanks(n, Duration.ofSeconds(30), c -> {
            List<float[]> xs = new ArrayList<>();
            for (int i = 0; i < sizes.length; i++) xs.add(floats(10 * c.rank() + i, sizes[i]));
            c.allReduceSum(xs);
            c.allReduceSum(xs);   // again on the same list: its offsets are reused
            return xs;
        });
        for (int i = 0; i < sizes.length; i++) {
            float[] once = floats(i, sizes[i]);
            for (int r = 1; r < n; r++) {
                float[] y = floats(10 * r + i, sizes[i]);
                for (int j = 0; j < once.length; j++) once[j] = once[j] + y[j];
            }
            float[] twice = once.clone();   // the second sum: every rank holds `once`
            for (int r = 1; r < n; r++) for (int j = 0; j < once.length; j++) twice[j] = twice[j] + once[j];
            for (int r = 0; r < n; r++) assertArrayEquals(twice, got.get(r).get(i), 0f, "array " + i + " on rank " + r);
        }
    }

    @Test
    void doublesLongsBroadcastAndBarrier() throws Exception {
        int n = 3;
        List<Object[]> got = onRanks(n, Duration.ofSeconds(30), c -> {
            int r = c.rank();
            double[] d = {0.1 * (r + 1), 1e300, -r};
            long[] l = new long[70_000];
            for (int i = 0; i < l.length; i++) l[i] = (long) i * (r + 1) + Long.MAX_VALUE / 8;
            c.allReduceSum(d);
            c.allReduceSum(l);
            c.barrier();
            float[] f = r == 1 ? new float[] {-0.0f, Float.NaN, 3.5f} : new float[3];
            c.broadcast(f, 1);
            byte[] b = new byte[300_000];
            if (r == 2) new Random(7).nextBytes(b);
            c.broadcast(b, 2);
            long[] lb = r == 0 ? new long[] {42, -7} : new long[2];
            c.broadcast(lb, 0);
            return new Object[] {d, l, f, b, lb};
        });
        byte[] bytes = new byte[300_000];
        new Random(7).nextBytes(bytes);
        for (int r = 0; r < n; r++) {
            Object[] g = got.get(r);
            assertArrayEquals(new double[] {(0.1 + 0.2) + 0.30000000000000004, (1e300 + 1e300) + 1e300, -3.0}, (double[]) g[0], 0.0, "rank " + r);
            long[] l = (long[]) g[1];
            for (int i = 0; i < l.length; i++) assertEquals((long) i * 6 + 3 * (Long.MAX_VALUE / 8), l[i]);
            float[] f = (float[]) g[2];
            assertEquals(Float.floatToRawIntBits(-0.0f), Float.floatToRawIntBits(f[0]), "a broadcast copies bits: -0.0 stays -0.0");
            assertTrue(Float.isNaN(f[1]));
            assertEquals(3.5f, f[2]);
            assertArrayEquals(bytes, (byte[]) g[3]);
            assertArrayEquals(new long[] {42, -7}, (long[]) g[4]);
        }
    }

    @Test
    void mismatchedCallsFailOnEveryRank() throws Exception {
        List<String> got = onRanks(3, Duration.ofSeconds(20), c -> {
            try {
                c.allReduceSum(new float[c.rank() == 2 ? 11 : 10]);
                return "no error";
            } catch (CollectiveException e) {
                return e.getMessage();
            }
        });
        assertTrue(got.get(2).contains("rank 2 called allReduceSum(float[11]) while rank 1 called allReduceSum(float[10])"), got.get(2));
        assertFalse(got.get(0).equals("no error") || got.get(1).equals("no error"), got.toString());
    }

    @Test
    void aDeadPeerFailsTheOthersAtOnce() throws Exception {
        long t0 = System.nanoTime();
        List<String> got = onRanks(3, Duration.ofSeconds(60), c -> {
            if (c.rank() == 2) { c.close(); return "closed"; }   // its task died
            try {
                c.allReduceSum(new float[1_000_000]);
                return "no error";
            } catch (CollectiveException e) {
                return e.getMessage();
            }
        });
        double s = (System.nanoTime() - t0) / 1e9;
        assertTrue(s < 20, "took " + s + " s, the timeout is 60 s: a closed peer must fail the others at once");
        assertTrue(got.get(1).contains("rank 2 closed its connection") || got.get(1).contains("rank 1 of 3"), got.get(1));
        assertNotEquals("no error", got.get(0));
    }

    @Test
    void aHungPeerFailsWithinTheTimeout() throws Exception {
        long t0 = System.nanoTime();
        List<String> got = onRanks(2, Duration.ofSeconds(2), c -> {
            if (c.rank() == 1) {   // alive but never calls: hangs for longer than the timeout
                try { Thread.sleep(3500); } catch (InterruptedException ignored) {}
                return "slept";
            }
            try {
                c.allReduceSum(new float[10]);
                return "no error";
            } catch (CollectiveException e) {
                return e.getMessage() + " after " + (System.nanoTime() - t0) / 1e9 + " s";
            }
        });
        assertTrue(got.get(0).startsWith("rank 0 waited 2 s for rank 1 in allReduceSum(float[10])"), got.get(0));
        // and a failed collective refuses further calls
    }

    @Test
    void environmentRendezvous() throws Exception {
        int n = 3, port;
        try (var probe = new java.net.ServerSocket(0)) { port = probe.getLocalPort(); }
        ExecutorService pool = Executors.newFixedThreadPool(n);
        try {
            List<Future<float[]>> fs = new ArrayList<>();
            for (int r = 0; r < n; r++) {
                Map<String, String> env = Map.of("RANK", "" + r, "WORLD_SIZE", "" + n, "MASTER_ADDR", "127.0.0.1",
                        "MASTER_PORT", "" + port, "PEFT4J_HOST", "127.0.0.1");
                fs.add(pool.submit(() -> {
                    try (Collective c = TcpCollective.fromEnvironment(env, Duration.ofSeconds(20))) {
                        float[] x = {c.rank() + 1, 0.5f};
                        c.allReduceSum(x);
                        return x;
                    }
                }));
            }
            for (Future<float[]> f : fs) assertArrayEquals(new float[] {6, 1.5f}, f.get(60, TimeUnit.SECONDS));
        } finally {
            pool.shutdownNow();
        }
        CollectiveException e = assertThrows(CollectiveException.class,
                () -> TcpCollective.fromEnvironment(Map.of("RANK", "0", "WORLD_SIZE", "x"), Duration.ofSeconds(1)));
        assertTrue(e.getMessage().contains("WORLD_SIZE is 'x'"), e.getMessage());
    }

    @Test
    void singleProcess() {
        Collective c = Collective.single();
        float[] x = {1, 2};
        c.allReduceSum(x);
        c.barrier();
        c.broadcast(x, 0);
        assertArrayEquals(new float[] {1, 2}, x);
        assertEquals(1, c.worldSize());
        assertThrows(IllegalArgumentException.class, () -> c.broadcast(x, 1));
    }
}
