package org.peft4j.model.generate;

import org.peft4j.core.Peft4jException.ConfigException;
import org.peft4j.core.kernels.ColdStart;
import org.peft4j.model.adapter.LoadedAdapter;
import org.peft4j.model.llama.Activations;
import org.peft4j.model.llama.KvCache;
import org.peft4j.model.llama.LlamaModel;

import java.util.ArrayDeque;
import java.util.Arrays;
import java.util.List;
import java.util.SplittableRandom;
import java.util.concurrent.locks.ReentrantLock;
import java.util.random.RandomGenerator;

/// Autoregressive generation of many sequences at once, by continuous batching (vLLM, LoRAX): sequences join with
/// [#add] and leave (finished, or [#cancel]led) between steps; each [#step] prefills newly added prompts in chunks and
/// runs one decode forward for every running row, each row with its own cache slot, position, sampler, random stream,
/// stop ids and adapter. Text is not its business: listeners get ids (see `org.peft4j.train.generate` for text).
///
/// Memory is planned for (maxBatch, capacity) at construction: one KV cache of `maxBatch` slots, activations for a
/// decode of `maxBatch` rows and for a prefill chunk, logits, sampler scratch and per-slot repetition-penalty masks.
/// A step allocates nothing but what a sequence's listener does, and the [Result] of a sequence that finishes.
///
/// Thread-safety: [#add], [#step] and [#cancel] may be called from any thread (they take turns on a fair lock);
/// one thread usually drives [#step] while others add and cancel. Listeners run inside [#step], on its thread.
public final class Generator {
    /// Prompt tokens prefilled per step at most by [#generate(LlamaModel, GenerateRequest, TokenListener)].
    public static final int DEFAULT_CHUNK = 512;

    /// Why a sequence ended.
    public enum Finish {
        /// a stop id (EOS, end of turn) was sampled; it is not part of the output
        STOP_ID,
        /// maxNewTokens were generated
        LENGTH,
        /// the sequence filled its cache slot (capacity, or the model's sliding window)
        CONTEXT_FULL,
        /// the listener returned false (or threw)
        CALLBACK,
        /// [#cancel]
        CANCELLED
    }

    /// Receives a sequence's tokens in order, as they are sampled (stop ids excluded), then its end.
    @FunctionalInterface
    public interface TokenListener {
        /// Returns false to end the sequence after this token.
        boolean onToken(int id);

        /// Called once, after the last [#onToken].
        default void onFinish(Result result) {}
    }

    /// A sequence's new tokens (without the stop id that ended them) and why it ended.
    public record Result(int[] tokens, Finish finish) {}

    /// A sequence in the generator: a handle for [#cancel] and for reading its outcome from any thread.
    public static final class Sequence {
        final GenerateRequest request;
        final TokenListener listener;
        final RandomGenerator rng;
        final int[] out;          // (most tokens the slot can produce) generated ids
        volatile int n;           // generated so far
        int slot = -1;            // cache slot, -1 while waiting or when finished
        int pos;                  // positions of this sequence in its slot
        int pending = -1;         // sampled, not yet fed
        private volatile Result result;

        Sequence(GenerateRequest request, TokenListener listener, RandomGenerator rng, int maxOut) {
            this.request = request; this.listener = listener; this.rng = rng;
            this.out = new int[maxOut];
        }

        public GenerateRequest request() { return request; }

        /// The outcome, or null while the sequence waits or runs.
        public Result result() { return result; }

        public boolean done() { return result != null; }

        /// Tokens generated so far.
        public int generated() { return n; }
    }

    private final LlamaModel model;
    private final int maxBatch, capacity, chunk, limit, V;
    private final KvCache cache;                // (maxBatch slots, capacity)
    private final Activations decodeActs;       // (maxBatch, 1)
    private final Activations prefillActs;      // (1, chunk)
    private final float[] logits;               // (maxBatch, V)
    private final int[] tokens;                 // (max(maxBatch, chunk)) the ids of one forward
    private final int[] rowSlots, rowPos;       // (maxBatch)
    private final LoadedAdapter[] rowAdapters;  // (maxBatch)
    private final Sequence[] rowSeqs;           // (maxBatch) the sequence of each decode row
    private final Sequence[] slots;             // (maxBatch) the occupant of each cache slot, or null
    private final boolean[][] seen;             // (maxBatch)(V) prompt + output ids of each slot, for the repetition penalty
    private final TokenSampler tokenSampler;
    private final ArrayDeque<Sequence> waiting = new ArrayDeque<>();     // added, no slot yet
    private final ArrayDeque<Sequence> prefilling = new ArrayDeque<>();  // in a slot, prompt not all in the cache
    /// Guards all of the above. Fair: a thread that steps in a loop (the server's engine) releases it between steps
    /// and re-takes it at once; a monitor (or an unfair lock) lets it barge ahead of a client's waiting cancel or add
    /// any number of times, a fair lock gives the waiting call the next turn.
    private final ReentrantLock lock = new ReentrantLock(true);

    /// A generator for up to `maxBatch` running sequences of up to `capacity` positions each (prompt + output),
    /// prefilling at most `chunk` prompt tokens per step.
    public Generator(LlamaModel model, int maxBatch, int capacity, int chunk) {
        if (maxBatch < 1 || capacity < 1 || chunk < 1)
            throw new ConfigException("a generator needs maxBatch, capacity and chunk >= 1, got " + maxBatch + ", " + capacity + ", " + chunk);
        this.model = model; this.maxBatch = maxBatch; this.capacity = capacity; this.chunk = Math.min(chunk, capacity);
        this.V = model.config.vocabSize();
        int window = model.config.slidingWindow();
        this.limit = window > 0 ? Math.min(capacity, window) : capacity;
        cache = model.newCache(maxBatch, capacity);
        decodeActs = model.newActivations(maxBatch, 1, cache);
        prefillActs = model.newActivations(1, this.chunk, cache);
        logits = new float[maxBatch * V];
        tokens = new int[Math.max(maxBatch, this.chunk)];
        rowSlots = new int[maxBatch]; rowPos = new int[maxBatch];
        rowAdapters = new LoadedAdapter[maxBatch];
        rowSeqs = new Sequence[maxBatch];
        slots = new Sequence[maxBatch];
        seen = new boolean[maxBatch][V];
        tokenSampler = new TokenSampler(V);
    }

    public int maxBatch() { return maxBatch; }

    /// Positions per sequence (prompt + output): the capacity, or the model's sliding window when smaller.
    public int capacity() { return limit; }

    /// Sequences holding a cache slot (prefilling or decoding).
    public int running() {
        lock.lock();
        try {
            int r = 0;
            for (Sequence s : slots) if (s != null) r++;
            return r;
        } finally {
            lock.unlock();
        }
    }

    /// Sequences added that wait for a free slot.
    public int waiting() {
        lock.lock();
        try { return waiting.size(); } finally { lock.unlock(); }
    }

    /// Whether a [#step] has anything to do.
    public boolean busy() {
        lock.lock();
        try { return !waiting.isEmpty() || running() > 0; } finally { lock.unlock(); }
    }

    /// Queues a sequence; it takes a cache slot at the next [#step] that finds one free. A request with
    /// maxNewTokens 0 finishes at once (LENGTH).
    public Sequence add(GenerateRequest r, TokenListener listener) {
        return add(r, listener, new SplittableRandom(r.seed()));
    }

    Sequence add(GenerateRequest r, TokenListener listener, RandomGenerator rng) {
        r = withVirtualTokens(r);
        lock.lock();
        try {
            int P = r.prompt().length;
            if (P > limit)
                throw new ConfigException("the prompt has " + P + " tokens; this generator holds " + limit + " positions per sequence"
                        + (limit < capacity ? " (the model's sliding window)" : "") + ": shorten the prompt");
            for (int i = 0; i < P; i++)
                if (r.prompt()[i] < 0 || r.prompt()[i] >= V)
                    throw new ConfigException("prompt token id " + r.prompt()[i] + " at index " + i + " is outside the vocabulary [0, " + V + ")");
            if (r.adapter() != null && !r.adapter().base.equals(model.config))
                throw new ConfigException("adapter '" + r.adapter().name + "' was read for another base model; read it with this model's config");
            Sequence s = new Sequence(r, listener, rng, Math.min(r.maxNewTokens(), limit - P + 1));
            if (r.maxNewTokens() == 0) finish(s, Finish.LENGTH);
            else waiting.add(s);
            return s;
        } finally {
            lock.unlock();
        }
    }

    /// Ends a sequence now (CANCELLED), freeing its slot for the next step; nothing if it has already finished.
    public void cancel(Sequence s) {
        lock.lock();
        try {
            if (s.done()) return;
            waiting.remove(s);
            prefilling.remove(s);
            finish(s, Finish.CANCELLED);
        } finally {
            lock.unlock();
        }
    }

    /// Admits waiting sequences to free slots, runs one decode forward for every row that has a token to feed (each
    /// row gets one new token), then prefills up to `chunk` prompt tokens of newly admitted sequences (one that
    /// completes its prompt gets its first token). Returns whether work remains.
    public boolean step() {
        // the first prompt runs on the kernels' twins with no warm-up thread beside it; openAll then opens every gate:
        // later tokens run the vector code, which their own calls bring to C2 (ColdStart)
        ColdStart.deferWarmUps();
        lock.lock();
        try {
            admit();
            decode();
            prefill();
            return busy();
        } finally {
            ColdStart.openAll();
            lock.unlock();
        }
    }

    private void admit() {
        for (int s = 0; s < maxBatch && !waiting.isEmpty(); s++) {
            if (slots[s] != null) continue;
            Sequence q = waiting.poll();
            slots[s] = q;
            q.slot = s;
            q.pos = 0;
            boolean[] mask = seen[s];
            Arrays.fill(mask, false);
            int[] prompt = q.request.prompt();   // the penalty sees the text, not prompt tuning's placeholders
            for (int i = q.request.adapter() == null ? 0 : q.request.adapter().virtualTokens(); i < prompt.length; i++) mask[prompt[i]] = true;
            prefilling.add(q);
        }
    }

    private void decode() {
        int B = 0;
        for (int s = 0; s < maxBatch; s++) {
            Sequence q = slots[s];
            if (q == null || q.pending < 0) continue;
            rowSeqs[B] = q;
            tokens[B] = q.pending;
            rowSlots[B] = s;
            rowPos[B] = q.pos;
            rowAdapters[B] = q.request.adapter();
            B++;
        }
        if (B == 0) return;
        model.forward(logits, tokens, B, 1, rowSlots, rowPos, rowAdapters, cache, decodeActs, false);
        for (int b = 0; b < B; b++) {
            rowSeqs[b].pos++;
            rowSeqs[b].pending = -1;
        }
        for (int b = 0; b < B; b++) {
            Sequence q = rowSeqs[b];
            rowSeqs[b] = null;
            rowAdapters[b] = null;
            if (!q.done()) next(q, b * V);   // a listener earlier in this loop may have cancelled it
        }
    }

    private void prefill() {
        int budget = chunk;
        while (budget > 0 && !prefilling.isEmpty()) {
            Sequence q = prefilling.peek();
            int[] prompt = q.request.prompt();
            int T = Math.min(prompt.length - q.pos, budget);
            System.arraycopy(prompt, q.pos, tokens, 0, T);
            rowSlots[0] = q.slot;
            rowPos[0] = q.pos;
            rowAdapters[0] = q.request.adapter();
            model.forward(logits, tokens, 1, T, rowSlots, rowPos, rowAdapters, cache, prefillActs, false);
            rowAdapters[0] = null;
            q.pos += T;
            budget -= T;
            if (q.pos < prompt.length) break;
            prefilling.poll();
            next(q, 0);
        }
    }

    /// Samples q's next token from logits at `off`, hands it to the listener and decides whether q goes on.
    private void next(Sequence q, int off) {
        int id = tokenSampler.sample(q.request.sampler(), logits, off, seen[q.slot], q.rng);
        if (q.request.isStop(id)) { finish(q, Finish.STOP_ID); return; }
        q.out[q.n++] = id;
        seen[q.slot][id] = true;
        boolean go;
        try {
            go = q.listener == null || q.listener.onToken(id);
        } catch (RuntimeException e) {
            // one failing consumer (a closed connection) must not stop the other rows
            System.getLogger(Generator.class.getName()).log(System.Logger.Level.WARNING, "a token listener failed; its sequence ends", e);
            go = false;
        }
        if (q.done()) return;                   // the listener cancelled it
        if (!go) finish(q, Finish.CALLBACK);
        else if (q.n == q.request.maxNewTokens()) finish(q, Finish.LENGTH);
        else if (q.pos >= limit) finish(q, Finish.CONTEXT_FULL);
        else q.pending = id;
    }

    private void finish(Sequence q, Finish why) {
        if (q.slot >= 0) { slots[q.slot] = null; q.slot = -1; }
        q.pending = -1;
        Result r = new Result(Arrays.copyOf(q.out, q.n), why);
        q.result = r;
        if (q.listener != null) {
            try {
                q.listener.onFinish(r);
            } catch (RuntimeException e) {
                System.getLogger(Generator.class.getName()).log(System.Logger.Level.WARNING, "a token listener's onFinish failed", e);
            }
        }
    }

    /// One sequence, blocking: a generator sized for it (capacity prompt + maxNewTokens, within the model's
    /// context), stepped until the sequence ends.
    public static Result generate(LlamaModel model, GenerateRequest r, TokenListener listener) {
        return generate(model, r, listener, new SplittableRandom(r.seed()));
    }

    /// A request whose adapter is prompt tuning starts with its n virtual tokens: n placeholder ids (0), whose
    /// embeddings the decoder replaces (PEFT prepends the prompt embeddings to the input embeddings), then the prompt.
    static GenerateRequest withVirtualTokens(GenerateRequest r) {
        int n = r.adapter() == null ? 0 : r.adapter().virtualTokens();
        if (n == 0 || r.virtualPrefixed()) return r;
        int[] p = new int[n + r.prompt().length];
        System.arraycopy(r.prompt(), 0, p, n, r.prompt().length);
        return new GenerateRequest(p, r.sampler(), r.seed(), r.maxNewTokens(), r.stopIds(), r.adapter(), true);
    }

    private static Result generate(LlamaModel model, GenerateRequest r, TokenListener listener, RandomGenerator rng) {
        r = withVirtualTokens(r);
        int maxPos = model.config.maxPositionEmbeddings(), P = r.prompt().length;
        if (P >= maxPos)
            throw new ConfigException("the prompt has " + P + " tokens; the model's context is " + maxPos + ": shorten the prompt");
        int capacity = (int) Math.min(maxPos, (long) P + Math.max(1, r.maxNewTokens()));
        Generator g = new Generator(model, 1, capacity, Math.min(P, DEFAULT_CHUNK));
        Sequence s = g.add(r, listener, rng);
        while (g.step()) { }
        return s.result();
    }
}
