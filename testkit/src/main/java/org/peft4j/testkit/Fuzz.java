package org.peft4j.testkit;

import org.peft4j.core.Peft4jException;

import java.io.IOException;
import java.lang.management.ManagementFactory;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HexFormat;
import java.util.List;
import java.util.Random;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.stream.Stream;

/// The fuzzing contract of issue 17 and a small mutation fuzzer that runs it in the normal suite.
///
/// **Contract** ([#contract]): a parser given any bytes returns a result or throws our own [Peft4jException] with a
/// message; any other exception (NullPointerException, ArithmeticException, NegativeArraySizeException,
/// OutOfMemoryError, a Jackson or Jinjava exception leaking out, ...) breaks it, and so does allocating more than
/// `BASE_BYTES + perByte x input length` bytes on the parsing thread (counted by the JVM's per-thread allocation
/// counter, so a `new float[n]` with `n` read from a header is caught even when the heap could hold it).
///
/// **Mutation runs** ([#run]): the seeds (the regression inputs: shared fixtures and every crash found so far), then
/// inputs made from them by a seeded random mix of byte and text mutations (bit flips, interesting bytes, deleted,
/// duplicated, swapped or spliced ranges, numbers replaced by extreme ones: -1, 0, 2^31, 1e10, NaN, ...), each on a
/// worker thread with a time limit. A failing input is written to `target/fuzz-crashes/NAME/` so that it can be kept
/// as a regression seed; the run fails naming that file. This is random mutation, not coverage-guided: the Jazzer
/// `@FuzzTest` twins of the same targets fuzz coverage-guided under `JAZZER_FUZZ=1` (`scripts/fuzz.sh`).
///
/// `-Dpeft4j.fuzz.inputs=N` runs N inputs per target instead of each test's default; `-Dpeft4j.fuzz.seed=S` varies
/// the mutations.
public final class Fuzz {
    private Fuzz() {}

    /// Bytes any input may allocate regardless of its size (class initialisation, parser tables, buffers).
    public static final long BASE_BYTES = 64L << 20;

    private static final ThreadLocal<Boolean> WARMING = ThreadLocal.withInitial(() -> false);
    private static final java.util.Set<Class<?>> WARMED = java.util.concurrent.ConcurrentHashMap.newKeySet();
    private static final com.sun.management.ThreadMXBean THREADS = (com.sun.management.ThreadMXBean) ManagementFactory.getThreadMXBean();

    /// A parser run on one input.
    @FunctionalInterface
    public interface Body {
        void run(byte[] input) throws Exception;
    }

    /// Runs `body` on `input` under the contract (see the class comment); throws AssertionError when it is broken.
    public static void contract(byte[] input, long perByte, Body body) { contract(input, perByte, 0, body); }

    /// [#contract(byte[], long, Body)] allowing `extra` more bytes: for a target whose allocation grows with its running
    /// time rather than its input (a chat template looping until its time limit allocates garbage as it goes).
    public static void contract(byte[] input, long perByte, long extra, Body body) {
        // the first run of a target in this JVM loads and initialises classes (and Jazzer instruments them): it is run
        // once without the allocation check, then measured
        if (!WARMING.get() && WARMED.add(body.getClass())) {
            WARMING.set(true);
            try { contract(input, perByte, extra, body); } finally { WARMING.set(false); }
        }
        long before = THREADS.getCurrentThreadAllocatedBytes();
        try {
            body.run(input);
        } catch (Peft4jException e) {
            if (e.getMessage() == null || e.getMessage().isBlank())
                throw new AssertionError("a " + e.getClass().getSimpleName() + " without a message", e);
        } catch (Throwable t) {
            throw new AssertionError("not our error type: " + t, t);
        }
        long used = THREADS.getCurrentThreadAllocatedBytes() - before;
        long bound = BASE_BYTES + extra + perByte * input.length;
        if (!WARMING.get() && used > bound)
            throw new AssertionError("allocated " + used + " bytes for an input of " + input.length + " bytes, more than the bound "
                    + bound + " (" + BASE_BYTES + (extra > 0 ? " + " + extra : "") + " + " + perByte + " per input byte)");
    }

    /// What a run did, for the record.
    public record Stats(String name, int seeds, int inputs, double seconds) {
        public double perSecond() { return inputs / Math.max(seconds, 1e-9); }
        @Override public String toString() {
            return String.format(java.util.Locale.ROOT, "fuzz %s: %d inputs (%d seeds + %d mutated) in %.1f s, %.0f inputs/s, 0 failures",
                    name, inputs, seeds, inputs - seeds, seconds, perSecond());
        }
    }

    /// The seeds: every regular file under `dirs` (missing folders are skipped), in name order.
    public static List<byte[]> seeds(Path... dirs) {
        List<byte[]> out = new ArrayList<>();
        for (Path d : dirs) {
            if (!Files.isDirectory(d)) continue;
            try (Stream<Path> s = Files.list(d)) {
                for (Path f : s.filter(Files::isRegularFile).sorted().toList()) out.add(Files.readAllBytes(f));
            } catch (IOException e) {
                throw new java.io.UncheckedIOException(e);
            }
        }
        return out;
    }

    /// Runs the seeds and then mutated inputs, `inputs` in all (or `-Dpeft4j.fuzz.inputs`), each at most `perInput`,
    /// through `target` (which applies [#contract] itself, as the Jazzer twin does).
    public static Stats run(String name, List<byte[]> seeds, int inputs, Duration perInput, Body target) {
        if (seeds.isEmpty()) throw new AssertionError("fuzz " + name + ": no seeds");
        int n = Math.max(seeds.size(), Integer.getInteger("peft4j.fuzz.inputs", inputs));
        Random rnd = new Random(Long.getLong("peft4j.fuzz.seed", 17L) * 31 + name.hashCode());
        ExecutorService worker = Executors.newSingleThreadExecutor(r -> {
            Thread t = new Thread(r, "fuzz-" + name);
            t.setDaemon(true);   // a hung input cannot be stopped; it must not keep the JVM alive
            return t;
        });
        long t0 = System.nanoTime();
        try {
            byte[] first = seeds.getFirst();
            worker.submit(() -> {   // class loading and static tables are not the input's doing
                WARMING.set(true);
                try { target.run(first); } finally { WARMING.set(false); }
                return null;
            }).get(Math.max(60_000, perInput.toMillis() * 10), TimeUnit.MILLISECONDS);
            for (int i = 0; i < n; i++) {
                byte[] input = i < seeds.size() ? seeds.get(i) : mutate(seeds, rnd);
                Future<?> f = worker.submit(() -> { target.run(input); return null; });
                try {
                    f.get(perInput.toMillis(), TimeUnit.MILLISECONDS);
                } catch (TimeoutException e) {
                    f.cancel(true);
                    Path p = keep(name, input);
                    throw new AssertionError("fuzz " + name + ": input " + i + " (" + p + ") ran longer than " + perInput.toMillis() + " ms");
                } catch (ExecutionException e) {
                    Path p = keep(name, input);
                    Throwable c = e.getCause();
                    throw new AssertionError("fuzz " + name + ": input " + i + " (kept as " + p + ") breaks the contract: " + c.getMessage(), c);
                }
            }
        } catch (InterruptedException | ExecutionException | TimeoutException e) {
            throw new AssertionError("fuzz " + name + ": the warm-up run on the first seed failed: " + e, e);
        } finally {
            worker.shutdownNow();
        }
        Stats s = new Stats(name, seeds.size(), n, (System.nanoTime() - t0) / 1e9);
        System.out.println(s);
        return s;
    }

    private static Path keep(String name, byte[] input) {
        try {
            String hash = HexFormat.of().formatHex(java.security.MessageDigest.getInstance("SHA-1").digest(input)).substring(0, 16);
            Path dir = Files.createDirectories(Path.of("target", "fuzz-crashes", name));
            return Files.write(dir.resolve("crash-" + hash), input);
        } catch (Exception e) {
            return Path.of("(not kept: " + e + ")");
        }
    }

    private static final byte[] INTERESTING_BYTES = {0, -1, 0x7f, (byte) 0x80, 1, '"', '{', '}', '[', ']', ':', ',', '-', '9', '\\', '\n', '%', '<', '>', ' ', '.'};
    private static final String[] INTERESTING_NUMBERS = {"-1", "0", "1", "-0", "2147483647", "2147483648", "-2147483649",
            "9223372036854775807", "99999999999999999999999", "1e9", "1e10", "1e308", "-1e308", "1e-320", "NaN", "Infinity",
            "0.5", "65536", "4294967296", "1000000"};

    /// One input from the seeds: 1 to 4 mutations of one seed.
    static byte[] mutate(List<byte[]> seeds, Random rnd) {
        byte[] b = seeds.get(rnd.nextInt(seeds.size())).clone();
        int k = 1 + rnd.nextInt(4);
        for (int m = 0; m < k; m++) b = mutateOnce(b, seeds, rnd);
        return b;
    }

    static byte[] mutateOnce(byte[] b, List<byte[]> seeds, Random rnd) {
        int len = b.length;
        switch (rnd.nextInt(10)) {
            case 0 -> { if (len > 0) b[rnd.nextInt(len)] ^= (byte) (1 << rnd.nextInt(8)); }
            case 1 -> { if (len > 0) b[rnd.nextInt(len)] = INTERESTING_BYTES[rnd.nextInt(INTERESTING_BYTES.length)]; }
            case 2 -> {   // delete a range
                if (len == 0) return b;
                int a = rnd.nextInt(len), n = 1 + rnd.nextInt(Math.min(len - a, 1 + len / 4));
                byte[] o = new byte[len - n];
                System.arraycopy(b, 0, o, 0, a);
                System.arraycopy(b, a + n, o, a, len - a - n);
                return o;
            }
            case 3 -> {   // duplicate a range in place
                if (len == 0) return b;
                int a = rnd.nextInt(len), n = 1 + rnd.nextInt(Math.min(len - a, 1 + len / 4));
                return insert(b, rnd.nextInt(len + 1), Arrays.copyOfRange(b, a, a + n));
            }
            case 4 -> {   // random bytes
                byte[] r = new byte[1 + rnd.nextInt(8)];
                rnd.nextBytes(r);
                return insert(b, rnd.nextInt(len + 1), r);
            }
            case 5 -> { if (len > 0) return Arrays.copyOf(b, rnd.nextInt(len)); }
            case 6 -> {   // splice from another seed
                byte[] o = seeds.get(rnd.nextInt(seeds.size()));
                if (o.length == 0) return b;
                int a = rnd.nextInt(o.length), n = 1 + rnd.nextInt(Math.min(o.length - a, 64));
                return insert(b, rnd.nextInt(len + 1), Arrays.copyOfRange(o, a, a + n));
            }
            case 7, 8 -> {   // a number in the text replaced by an extreme one
                List<int[]> runs = numberRuns(b);
                byte[] num = INTERESTING_NUMBERS[rnd.nextInt(INTERESTING_NUMBERS.length)].getBytes(StandardCharsets.US_ASCII);
                if (runs.isEmpty()) return insert(b, rnd.nextInt(len + 1), num);
                int[] r = runs.get(rnd.nextInt(runs.size()));
                byte[] o = new byte[len - (r[1] - r[0]) + num.length];
                System.arraycopy(b, 0, o, 0, r[0]);
                System.arraycopy(num, 0, o, r[0], num.length);
                System.arraycopy(b, r[1], o, r[0] + num.length, len - r[1]);
                return o;
            }
            default -> {   // overwrite 4 or 8 bytes with an extreme little-endian integer
                if (len < 8) return b;
                long v = switch (rnd.nextInt(5)) {
                    case 0 -> -1L; case 1 -> 0L; case 2 -> Integer.MAX_VALUE; case 3 -> Long.MAX_VALUE; default -> 1L << (16 + rnd.nextInt(40));
                };
                int at = rnd.nextInt(len - 7), w = rnd.nextBoolean() ? 4 : 8;
                for (int i = 0; i < w; i++) b[at + i] = (byte) (v >>> (8 * i));
            }
        }
        return b;
    }

    private static byte[] insert(byte[] b, int at, byte[] what) {
        byte[] o = new byte[b.length + what.length];
        System.arraycopy(b, 0, o, 0, at);
        System.arraycopy(what, 0, o, at, what.length);
        System.arraycopy(b, at, o, at + what.length, b.length - at);
        return o;
    }

    /// [start, end) of each run of ASCII digits (with a leading '-').
    private static List<int[]> numberRuns(byte[] b) {
        List<int[]> out = new ArrayList<>();
        for (int i = 0; i < b.length && out.size() < 4096; ) {
            if (b[i] >= '0' && b[i] <= '9') {
                int s = i > 0 && b[i - 1] == '-' ? i - 1 : i;
                while (i < b.length && b[i] >= '0' && b[i] <= '9') i++;
                out.add(new int[]{s, i});
            } else i++;
        }
        return out;
    }
}
