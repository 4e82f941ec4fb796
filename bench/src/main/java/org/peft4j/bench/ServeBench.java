package org.peft4j.bench;

import org.peft4j.core.Gemms;
import org.peft4j.core.Parallel;
import org.peft4j.core.Peft4jException.ConfigException;
import org.peft4j.model.LlamaConfig;
import org.peft4j.model.ModelPresets;
import org.peft4j.model.RandomModels;
import org.peft4j.model.adapter.LoadedAdapter;
import org.peft4j.model.adapter.lora.LoraConfig;
import org.peft4j.model.adapter.lora.LoraWeights;
import org.peft4j.model.adapter.lora.PeftAdapter;
import org.peft4j.model.generate.Sampler;
import org.peft4j.model.llama.LlamaModel;
import org.peft4j.model.llama.Projection;
import org.peft4j.serve.Engine;
import org.peft4j.serve.Metrics;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;
import java.util.concurrent.TimeUnit;

/// `peft4j bench serve`: the serving engine (the one `peft4j serve` runs, without HTTP) on a random-weight model with
/// random rank-r adapters. Closed loop: each of N clients submits a request (random prompt, fixed completion length,
/// no stop ids), waits for its last token and submits the next, until the time is up. Reports generated tokens/s, p50
/// and p99 time to first token (submit to first token, queueing included) and inter-token latency, at 1, 8 and 32
/// streams (each stream its own adapter), then one batch of `adapters` rows all on one adapter vs each on its own
/// (Punica / S-LoRA's claim that distinct adapters cost little over one).
public final class ServeBench {
    private ServeBench() {}

    /// One scenario's numbers.
    public record Result(String name, int streams, long tokens, double seconds, double ttftP50, double ttftP99, double itlP50, double itlP99) {
        double tokensPerSecond() { return tokens / seconds; }

        String line() {
            return String.format("%-34s %7d %10.1f %9.0f %9.0f %9.1f %9.1f", name, streams, tokensPerSecond(),
                    ttftP50 * 1e3, ttftP99 * 1e3, itlP50 * 1e3, itlP99 * 1e3);
        }
    }

    public static void run(String preset, int nAdapters, int rank, List<String> targets, int[] streams, int prompt, int completion,
                           double seconds, int threads, String gemm) throws InterruptedException {
        if (nAdapters < 1 || rank < 1 || prompt < 1 || completion < 1 || seconds <= 0)
            throw new ConfigException("bench serve needs adapters, rank, prompt, completion >= 1 and seconds > 0");
        Parallel.setThreads(threads);
        LlamaConfig c = ModelPresets.byName(preset);
        long t0 = System.nanoTime();
        LlamaModel model = new LlamaModel(RandomModels.create(c, 1234), Gemms.get(gemm));
        List<LoadedAdapter> adapters = new ArrayList<>();
        for (int i = 0; i < nAdapters; i++) adapters.add(randomAdapter("a" + i, c, rank, targets, 1000 + i));
        System.out.printf("bench serve: %s (random weights), %d random rank-%d adapters on %s, prompt %d, completion %d, %d threads, gemm %s (%.0f s to build)%n",
                preset, nAdapters, rank, String.join(",", targets), prompt, completion, threads, gemm, (System.nanoTime() - t0) * 1e-9);
        int maxStreams = Math.max(nAdapters, Arrays.stream(streams).max().orElse(1));
        Engine engine = new Engine(model, null, maxStreams, prompt + completion, 256, 4 * maxStreams, new Metrics());
        try {
            // warm-up: JIT, and the adapters' scratch grown to their rank once
            scenario(engine, "warm-up", Math.min(8, maxStreams), adapters, false, prompt, completion, Math.min(seconds, 5), c.vocabSize());
            System.out.printf("%-34s %7s %10s %9s %9s %9s %9s%n", "scenario", "streams", "tokens/s", "ttft p50", "ttft p99", "itl p50", "itl p99");
            System.out.printf("%-34s %7s %10s %9s %9s %9s %9s%n", "", "", "", "ms", "ms", "ms", "ms");
            Map<Integer, Result> byStreams = new HashMap<>();
            for (int n : streams) {
                Result r = scenario(engine, n + " streams, an adapter each", n, adapters, false, prompt, completion, seconds, c.vocabSize());
                byStreams.put(n, r);
                System.out.println(r.line());
            }
            Result one = scenario(engine, nAdapters + " rows, all on one adapter", nAdapters, adapters, true, prompt, completion, seconds, c.vocabSize());
            System.out.println(one.line());
            Result many = scenario(engine, nAdapters + " rows, " + Math.min(nAdapters, adapters.size()) + " distinct adapters", nAdapters, adapters, false, prompt, completion, seconds, c.vocabSize());
            System.out.println(many.line());
            Result single = byStreams.get(1);
            if (single != null)
                for (int n : streams)
                    if (n > 1) System.out.printf("%d streams vs 1: %.2fx tokens/s%n", n, byStreams.get(n).tokensPerSecond() / single.tokensPerSecond());
            System.out.printf("%d distinct adapters vs one adapter, %d rows: %.2fx tokens/s%n", nAdapters, nAdapters, many.tokensPerSecond() / one.tokensPerSecond());
        } finally {
            engine.close();
        }
    }

    /// N closed-loop clients for `seconds`; client i uses adapter i (or adapter 0 for all when `sameAdapter`).
    static Result scenario(Engine engine, String name, int n, List<LoadedAdapter> adapters, boolean sameAdapter, int prompt, int completion,
                           double seconds, int V) throws InterruptedException {
        long end = System.nanoTime() + (long) (seconds * 1e9);
        long[] tokens = new long[n];
        List<List<Double>> ttft = new ArrayList<>(), itl = new ArrayList<>();
        Thread[] clients = new Thread[n];
        long start = System.nanoTime();
        for (int i = 0; i < n; i++) {
            final int k = i;
            List<Double> myTtft = new ArrayList<>(), myItl = new ArrayList<>();
            ttft.add(myTtft); itl.add(myItl);
            LoadedAdapter a = adapters.get(sameAdapter ? 0 : k % adapters.size());
            clients[i] = Thread.ofVirtual().start(() -> {
                SplittableRandom r = new SplittableRandom(k);
                try {
                    while (System.nanoTime() < end) {
                        int[] ids = new int[prompt];
                        for (int j = 0; j < prompt; j++) ids[j] = r.nextInt(V);
                        long t = System.nanoTime(), last = 0;
                        Engine.Stream s = engine.submit(new Engine.Job(ids, new Sampler.Greedy(), 0, completion, new int[0], List.of(), a));
                        int got = 0;
                        while (true) {
                            Engine.Event e = s.next(60, TimeUnit.SECONDS);
                            if (e == null) throw new IllegalStateException("no token for 60 s");
                            long now = System.nanoTime();
                            if (e instanceof Engine.Done d) {
                                if (d.error() != null) throw new IllegalStateException(d.error());
                                break;
                            }
                            if (got == 0) myTtft.add((now - t) * 1e-9);
                            else myItl.add((now - last) * 1e-9);
                            last = now;
                            got++;
                        }
                        tokens[k] += got;
                    }
                } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                }
            });
        }
        for (Thread t : clients) t.join();
        double secs = (System.nanoTime() - start) * 1e-9;
        long total = Arrays.stream(tokens).sum();
        double[] tt = flat(ttft), it = flat(itl);
        return new Result(name, n, total, secs, quantile(tt, 0.5), quantile(tt, 0.99), quantile(it, 0.5), quantile(it, 0.99));
    }

    /// A rank-r LoRA adapter on `targets` of every layer with random A and B (B nonzero, so its product is real work).
    static LoadedAdapter randomAdapter(String name, LlamaConfig c, int r, List<String> targets, long seed) {
        SplittableRandom rnd = new SplittableRandom(seed);
        Map<PeftAdapter.Target, LoraWeights> w = new HashMap<>();
        for (int l = 0; l < c.numHiddenLayers(); l++)
            for (String t : targets) {
                Projection p = Projection.of(t);
                LoraWeights lw = LoraWeights.allocate(r, p.in(c), p.out(c), false);
                for (int i = 0; i < lw.a().length; i++) lw.a()[i] = (float) (rnd.nextDouble() - 0.5) * 0.02f;
                for (int i = 0; i < lw.b().length; i++) lw.b()[i] = (float) (rnd.nextDouble() - 0.5) * 0.02f;
                w.put(new PeftAdapter.Target(l, t), lw);
            }
        return LoadedAdapter.of(name, "random " + name, new PeftAdapter(LoraConfig.of(r, targets), "random", null, w), c);
    }

    private static double[] flat(List<List<Double>> xs) {
        return xs.stream().flatMap(List::stream).mapToDouble(Double::doubleValue).sorted().toArray();
    }

    private static double quantile(double[] sorted, double q) {
        if (sorted.length == 0) return Double.NaN;
        return sorted[Math.min(sorted.length - 1, (int) Math.floor(q * (sorted.length - 1) + 0.5))];
    }
}
