package org.peft4j.quant;

import java.util.Arrays;
import java.util.SplittableRandom;

/// Weight streaming speed of [GgmlDots#rows] on one thread (not a surefire test: a main). Per type a matrix of
/// random blocks (half scales in ±0.1) of about `-Dbytes` (28 MB) with K = 576 (Q4_K: 1536, or `-DK`), one
/// activation row, `-Dreps` (30) timed calls after 15 warm-up calls, each over all rows (or `-Dchunk` rows a call,
/// as [GgmlTensor#forwardQ8] calls it with several x rows); prints the median and best in GB/s of weights.
///
///   ./mvnw -B -q -o test-compile -pl quant
///   java --add-modules jdk.incubator.vector -XX:+UseParallelGC -XX:+UseTransparentHugePages \
///     -cp quant/target/test-classes:quant/target/classes org.peft4j.quant.GgmlDotsBench [Q8_0|Q4_0|Q4_K]
public final class GgmlDotsBench {
    private GgmlDotsBench() {}

    public static void main(String[] args) {
        int reps = Integer.getInteger("reps", 30), chunk = Integer.getInteger("chunk", Integer.MAX_VALUE);
        for (GgmlBlocks t : new GgmlBlocks[]{GgmlBlocks.Q8_0, GgmlBlocks.Q4_0, GgmlBlocks.Q4_K}) {
            if (args.length > 0 && !args[0].equals(t.name())) continue;
            int K = Integer.getInteger("K", t == GgmlBlocks.Q4_K ? 1536 : 576), rowBytes = (int) t.bytes(K);
            int M = Integer.getInteger("bytes", 28_000_000) / rowBytes;
            var rng = new SplittableRandom(1);
            byte[] w = new byte[rowBytes * M];
            rng.nextBytes(w);
            for (int at = 0; at < w.length; at += t.blockBytes)
                for (int h = 0; h < (t == GgmlBlocks.Q4_K ? 2 : 1); h++) GgmlBlocks.putHalf(w, at + 2 * h, (float) rng.nextDouble(-0.1, 0.1));
            float[] x = new float[K], d = new float[K / 32], y = new float[M];
            for (int i = 0; i < K; i++) x[i] = (float) rng.nextDouble(-1, 1);
            short[] c = new short[GgmlDots.codesPerRow(K)];
            GgmlDots.quantize(t, x, 0, K, c, 0, d, 0);
            double[] s = new double[reps];
            for (int r = -15; r < reps; r++) {
                long t0 = System.nanoTime();
                for (int m0 = 0; m0 < M; m0 += chunk) GgmlDots.rows(t, w, rowBytes, m0, (int) Math.min(M, (long) m0 + chunk), K, c, 0, d, 0, y, 0);
                if (r >= 0) s[r] = (System.nanoTime() - t0) * 1e-9;
            }
            Arrays.sort(s);
            System.out.printf("%s K=%d, %d rows, %.1f MB: median %.3f ms %.2f GB/s, best %.2f GB/s%n", t, K, M, w.length / 1e6,
                    s[reps / 2] * 1e3, w.length / s[reps / 2] / 1e9, w.length / s[0] / 1e9);
        }
    }
}
