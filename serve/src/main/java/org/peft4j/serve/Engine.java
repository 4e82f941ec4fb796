package org.peft4j.serve;

import org.peft4j.core.Peft4jException;
import org.peft4j.model.adapter.LoadedAdapter;
import org.peft4j.model.generate.GenerateRequest;
import org.peft4j.model.generate.Generator;
import org.peft4j.model.generate.Sampler;
import org.peft4j.model.llama.KvCache;
import org.peft4j.model.llama.LlamaModel;
import org.peft4j.tokenizer.Tokenizer;

import java.util.List;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;

/// The serving engine: one platform thread owns a batching [Generator] and steps it while any sequence waits or runs;
/// callers on any thread (the HTTP handlers' virtual threads) [#submit] jobs and read each job's text from its
/// [Stream]. Sequences join and leave the running batch at every step (continuous batching); rows of a step use their
/// own adapters (the decoder shares the base products and groups low-rank products by adapter); prompts are prefilled
/// in chunks between decode steps, so running streams keep flowing while a long prompt enters.
///
/// Memory: the KV cache holds `maxBatch` sequences of `capacity` positions, allocated once at start; a job waits for a
/// free slot in a queue of at most `maxQueue` jobs, beyond which [#submit] refuses with 429.
public final class Engine implements AutoCloseable {
    private static final System.Logger LOG = System.getLogger(Engine.class.getName());

    /// One generation: prompt ids, sampling, limits, stops and the adapter (null = base).
    public record Job(int[] prompt, Sampler sampler, long seed, int maxTokens, int[] stopIds, List<String> stops, LoadedAdapter adapter) {
        public Job {
            stops = List.copyOf(stops);
        }
    }

    /// What a [Stream] yields: text pieces in order, then one [Done].
    public sealed interface Event permits Text, Done {}

    public record Text(String text) implements Event {}

    /// The end of a stream. finishReason: `stop` (EOS, a stop id or stop string), `length` (max_tokens or the context),
    /// `cancelled`, or `error` (then `error` says what failed).
    public record Done(String finishReason, int promptTokens, int completionTokens, String error) implements Event {}

    private final LlamaModel model;
    private final Tokenizer tokenizer;
    private final Generator generator;
    private final int maxQueue;
    private final Metrics metrics;
    private final Set<Stream> active = ConcurrentHashMap.newKeySet();
    private final Object signal = new Object();
    private final Thread thread;
    private volatile boolean closed;

    /// Plans the KV cache and activations for `maxBatch` rows of `capacity` positions and starts the engine thread.
    /// Without a tokenizer (random-weight benchmarks) each token arrives as an empty [Text] and stop strings are off.
    public Engine(LlamaModel model, Tokenizer tokenizer, int maxBatch, int capacity, int prefillChunk, int maxQueue, Metrics metrics) {
        this.model = model; this.tokenizer = tokenizer; this.maxQueue = maxQueue; this.metrics = metrics;
        this.generator = new Generator(model, maxBatch, capacity, prefillChunk);
        thread = Thread.ofPlatform().name("peft4j-engine").daemon(true).start(this::loop);
    }

    /// Positions per sequence (prompt + completion).
    public int capacity() { return generator.capacity(); }

    public int maxBatch() { return generator.maxBatch(); }

    /// Bytes of the KV cache for this engine's shape.
    public long kvCacheBytes() { return KvCache.bytes(model.config, generator.maxBatch(), generator.capacity(), model.kvCacheType()); }

    public Tokenizer tokenizer() { return tokenizer; }

    /// Jobs waiting for a KV-cache slot.
    public int queued() { return generator.waiting(); }

    /// Jobs holding a KV-cache slot.
    public int running() { return generator.running(); }

    public LlamaModel model() { return model; }

    /// Queues `job`; its text comes through the returned stream. Refuses with 400 a prompt that leaves no room in the
    /// context, with 429 when the queue is full and with 503 after [#close].
    public Stream submit(Job job) {
        int P = job.prompt().length, cap = capacity();
        if (P >= cap)
            throw new ApiException(400, "invalid_request_error", "messages", "context_length_exceeded",
                    "This model's maximum context length is " + cap + " tokens. However, your prompt has " + P
                            + " tokens, which leaves no room for a completion. Please shorten the prompt.");
        if (P + job.maxTokens() > cap)
            throw new ApiException(400, "invalid_request_error", "max_tokens", "context_length_exceeded",
                    "This model's maximum context length is " + cap + " tokens. However, you requested " + (P + job.maxTokens())
                            + " tokens (" + P + " in the prompt, " + job.maxTokens() + " in the completion). Please reduce the length of the prompt or the completion.");
        if (closed) throw ApiException.unavailable("the server is shutting down");
        if (generator.waiting() >= maxQueue)
            throw ApiException.busy("the server is at capacity (" + generator.running() + " running, " + generator.waiting()
                    + " queued); retry later");
        Stream s = new Stream(job);
        GenerateRequest r;
        try {
            r = new GenerateRequest(job.prompt(), job.sampler(), job.seed(), job.maxTokens(), job.stopIds(), job.adapter());
        } catch (Peft4jException e) {
            throw ApiException.invalid(null, e.getMessage());
        }
        active.add(s);
        synchronized (signal) {
            try {
                s.sequence = generator.add(r, s);
            } catch (Peft4jException e) {
                active.remove(s);
                throw ApiException.invalid(null, e.getMessage());
            }
            metrics.promptTokens.add(P);
            signal.notifyAll();
        }
        return s;
    }

    /// Stops the engine thread; running and queued streams end with `cancelled`.
    @Override
    public void close() {
        closed = true;
        for (Stream s : active) s.cancel();
        synchronized (signal) { signal.notifyAll(); }
        try {
            thread.join(10_000);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }

    private void loop() {
        while (!closed) {
            try {
                int rows = generator.running();
                if (rows > 0) metrics.step(rows, decodingAdapters());
                generator.step();
            } catch (Throwable t) {
                // A failed step leaves the batch's state unknown: end every stream with the error, keep serving new ones.
                LOG.log(System.Logger.Level.ERROR, "an engine step failed; ending all running requests", t);
                for (Stream s : active) s.fail("internal error in the engine step: " + t);
            }
            synchronized (signal) {
                while (!closed && !generator.busy()) {
                    try {
                        signal.wait();
                    } catch (InterruptedException e) {
                        return;
                    }
                }
            }
        }
    }

    /// Distinct adapters (the base counting as one) among the streams that are decoding.
    private int decodingAdapters() {
        Set<Object> seen = java.util.Collections.newSetFromMap(new java.util.IdentityHashMap<>());
        for (Stream s : active)
            if (s.count > 0 && !s.ended) seen.add(s.job.adapter() == null ? this : s.job.adapter());
        return seen.size();
    }

    /// One job's output: [#next] blocks for the next [Event]; [#cancel] ends it and frees its row at the next step.
    public final class Stream implements Generator.TokenListener {
        private final Job job;
        private final TextOut text;
        private final LinkedBlockingQueue<Event> events = new LinkedBlockingQueue<>();
        private final long submitted = System.nanoTime();
        private volatile Generator.Sequence sequence;
        private long last;
        private volatile int count;
        private volatile boolean ended;

        Stream(Job job) {
            this.job = job;
            this.text = tokenizer == null ? null : new TextOut(tokenizer, job.prompt(), job.stops());
        }

        /// The next event, waiting for it; null if none came within the timeout.
        public Event next(long timeout, TimeUnit unit) throws InterruptedException { return events.poll(timeout, unit); }

        /// Reads the whole stream: the text, then the [Done].
        public Done collect(StringBuilder out) throws InterruptedException {
            while (true) {
                Event e = events.take();
                switch (e) {
                    case Text t -> out.append(t.text());
                    case Done d -> { return d; }
                }
            }
        }

        /// Ends the job (a client that went away): its row is free at the next step.
        public void cancel() {
            Generator.Sequence q = sequence;
            if (q != null) generator.cancel(q);
            else end(new Done("cancelled", job.prompt().length, count, null));
            synchronized (signal) { signal.notifyAll(); }
        }

        void fail(String message) {
            Generator.Sequence q = sequence;
            end(new Done("error", job.prompt().length, count, message));
            if (q != null) {
                try { generator.cancel(q); } catch (RuntimeException ignored) { }
            }
        }

        @Override
        public boolean onToken(int id) {
            long now = System.nanoTime();
            if (count == 0) metrics.ttft.observe((now - submitted) * 1e-9);
            else metrics.itl.observe((now - last) * 1e-9);
            last = now;
            count++;
            metrics.generatedTokens.increment();
            if (text == null) { events.add(new Text("")); return !ended; }
            String piece = text.push(id);
            if (!piece.isEmpty()) events.add(new Text(piece));
            return !text.stopped() && !ended;
        }

        @Override
        public void onFinish(Generator.Result r) {
            if (text != null && !text.stopped()) {
                String rest = text.flush();
                if (!rest.isEmpty()) events.add(new Text(rest));
            }
            String reason = switch (r.finish()) {
                case STOP_ID, CALLBACK -> "stop";
                case LENGTH, CONTEXT_FULL -> "length";
                case CANCELLED -> "cancelled";
            };
            end(new Done(reason, job.prompt().length, r.tokens().length, null));
        }

        private synchronized void end(Done d) {
            if (ended) return;
            ended = true;
            active.remove(this);
            events.add(d);
        }
    }
}
