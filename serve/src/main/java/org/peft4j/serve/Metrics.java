package org.peft4j.serve;

import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.LongAdder;
import java.util.function.IntSupplier;

/// The server's counters, gauges and latency histograms, written in Prometheus' text format (0.0.4) for `/metrics`.
/// Names follow vLLM's where one exists (`time_to_first_token_seconds`, `inter_token_latency_seconds`) under the
/// `peft4j_` prefix. Updates are lock-free; the engine thread records token timings.
public final class Metrics {
    /// Upper bounds of the latency buckets, in seconds.
    static final double[] BUCKETS = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30};

    final Map<String, LongAdder> requests = new ConcurrentHashMap<>();   // "endpoint,status"
    final LongAdder promptTokens = new LongAdder(), generatedTokens = new LongAdder();
    final AtomicLong lastBatch = new AtomicLong();
    private final AtomicLong peakRows = new AtomicLong(), peakAdapters = new AtomicLong();
    final LongAdder steps = new LongAdder(), stepRows = new LongAdder();
    final Histogram ttft = new Histogram(), itl = new Histogram();
    private volatile IntSupplier queue = () -> 0, running = () -> 0, adapters = () -> 0;

    void gauges(IntSupplier queue, IntSupplier running, IntSupplier adapters) {
        this.queue = queue; this.running = running; this.adapters = adapters;
    }

    void request(String endpoint, int status) {
        requests.computeIfAbsent(endpoint + "," + status, k -> new LongAdder()).increment();
    }

    public long generatedTokens() { return generatedTokens.sum(); }

    void step(int rows, int adapters) {
        lastBatch.set(rows);
        stepRows.add(rows);
        steps.increment();
        peakRows.accumulateAndGet(rows, Math::max);
        peakAdapters.accumulateAndGet(adapters, Math::max);
    }

    /// The most rows, and the most distinct adapters (the base counting as one) among decoding rows, in one engine
    /// step since the last call; resets both.
    public long[] takePeaks() { return new long[]{peakRows.getAndSet(0), peakAdapters.getAndSet(0)}; }

    /// Fixed-bucket histogram (cumulative counts are computed when written).
    static final class Histogram {
        final LongAdder[] counts = new LongAdder[BUCKETS.length + 1];
        final LongAdder total = new LongAdder();
        final java.util.concurrent.atomic.DoubleAdder sum = new java.util.concurrent.atomic.DoubleAdder();

        Histogram() { for (int i = 0; i < counts.length; i++) counts[i] = new LongAdder(); }

        void observe(double seconds) {
            int i = 0;
            while (i < BUCKETS.length && seconds > BUCKETS[i]) i++;
            counts[i].increment();
            total.increment();
            sum.add(seconds);
        }
    }

    /// The exposition text.
    public String text() {
        StringBuilder b = new StringBuilder();
        b.append("# HELP peft4j_requests_total HTTP requests by endpoint and status.\n# TYPE peft4j_requests_total counter\n");
        new java.util.TreeMap<>(requests).forEach((k, v) -> {
            String[] p = k.split(",");
            b.append("peft4j_requests_total{endpoint=\"").append(p[0]).append("\",status=\"").append(p[1]).append("\"} ").append(v.sum()).append('\n');
        });
        counter(b, "peft4j_prompt_tokens_total", "Prompt tokens of admitted requests.", promptTokens.sum());
        counter(b, "peft4j_generation_tokens_total", "Tokens generated.", generatedTokens.sum());
        counter(b, "peft4j_engine_steps_total", "Engine steps that ran a forward.", steps.sum());
        gauge(b, "peft4j_queue_length", "Requests waiting for a KV-cache slot.", queue.getAsInt());
        gauge(b, "peft4j_running_requests", "Requests holding a KV-cache slot.", running.getAsInt());
        gauge(b, "peft4j_batch_size", "Rows in the last decode step.", lastBatch.get());
        gauge(b, "peft4j_adapters_loaded", "Adapters held in memory.", adapters.getAsInt());
        histogram(b, "peft4j_time_to_first_token_seconds", "Time from admission to the first generated token.", ttft);
        histogram(b, "peft4j_inter_token_latency_seconds", "Time between consecutive tokens of a stream.", itl);
        return b.toString();
    }

    private static void counter(StringBuilder b, String name, String help, long v) {
        b.append("# HELP ").append(name).append(' ').append(help).append("\n# TYPE ").append(name).append(" counter\n")
         .append(name).append(' ').append(v).append('\n');
    }

    private static void gauge(StringBuilder b, String name, String help, long v) {
        b.append("# HELP ").append(name).append(' ').append(help).append("\n# TYPE ").append(name).append(" gauge\n")
         .append(name).append(' ').append(v).append('\n');
    }

    private static void histogram(StringBuilder b, String name, String help, Histogram h) {
        b.append("# HELP ").append(name).append(' ').append(help).append("\n# TYPE ").append(name).append(" histogram\n");
        long cum = 0;
        for (int i = 0; i < BUCKETS.length; i++) {
            cum += h.counts[i].sum();
            b.append(name).append("_bucket{le=\"").append(BUCKETS[i]).append("\"} ").append(cum).append('\n');
        }
        cum += h.counts[BUCKETS.length].sum();
        b.append(name).append("_bucket{le=\"+Inf\"} ").append(cum).append('\n');
        b.append(name).append("_sum ").append(h.sum.sum()).append('\n');
        b.append(name).append("_count ").append(cum).append('\n');
    }
}
