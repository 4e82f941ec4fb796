package org.peft4j.model.generate;

import org.peft4j.core.Peft4jException.ConfigException;
import org.peft4j.model.llama.Activations;
import org.peft4j.model.llama.KvCache;
import org.peft4j.model.llama.LlamaModel;

import java.util.Arrays;
import java.util.List;
import java.util.random.RandomGenerator;

/// Autoregressive generation for one sequence: a batched prefill of the prompt, then one token at a time reusing
/// the KV cache, until an EOS id, `maxNewTokens`, the context limit, or the listener says stop. Buffers (cache,
/// activations, logits, sampler scratch) are allocated once per call; the decode loop allocates nothing.
/// Text is not its business: the caller detokenizes and checks stop strings in the listener.
public final class Generator {
    private final LlamaModel model;
    private final Sampler sampler;
    private final int[] eosIds;
    private final RandomGenerator rng;

    /// Receives each new token as it is produced (EOS excluded); returns false to stop.
    @FunctionalInterface
    public interface TokenListener { boolean onToken(int id); }

    public enum Stop { EOS, MAX_NEW_TOKENS, CONTEXT_FULL, LISTENER }

    /// The new tokens (without the EOS that ended them) and why generation stopped.
    public record Result(int[] tokens, Stop stop) {}

    public Generator(LlamaModel model, Sampler sampler, List<Integer> eosIds, RandomGenerator rng) {
        this.model = model; this.sampler = sampler; this.rng = rng;
        this.eosIds = eosIds.stream().mapToInt(Integer::intValue).toArray();
    }

    public Result generate(int[] prompt, int maxNewTokens, TokenListener listener) {
        int maxPos = model.config.maxPositionEmbeddings(), V = model.config.vocabSize();
        if (prompt.length == 0) throw new ConfigException("the prompt is empty; pass at least one token (usually BOS)");
        if (prompt.length >= maxPos)
            throw new ConfigException("the prompt has " + prompt.length + " tokens; the model's context is " + maxPos + ": shorten the prompt");
        if (maxNewTokens < 0) throw new ConfigException("maxNewTokens must be >= 0, got " + maxNewTokens);
        int capacity = Math.min(maxPos, prompt.length + Math.max(1, maxNewTokens));
        KvCache cache = model.newCache(1, capacity);
        Activations acts = model.newActivations(1, prompt.length, cache);
        TokenSampler ts = new TokenSampler(sampler, V);
        float[] logits = new float[V];                  // (V)
        boolean[] seen = new boolean[V];                // (V) prompt + output, for the repetition penalty
        int[] step = new int[1];
        int[] out = new int[maxNewTokens];
        for (int id : prompt) seen[id] = true;

        if (maxNewTokens == 0) return new Result(out, Stop.MAX_NEW_TOKENS);
        model.forward(logits, prompt, 1, prompt.length, 0, cache, acts, false);
        int pos = prompt.length, n = 0;
        Stop stop;
        while (true) {
            int next = ts.sample(logits, 0, seen, rng);
            if (isEos(next)) { stop = Stop.EOS; break; }
            out[n++] = next;
            seen[next] = true;
            if (listener != null && !listener.onToken(next)) { stop = Stop.LISTENER; break; }
            if (n == maxNewTokens) { stop = Stop.MAX_NEW_TOKENS; break; }
            if (pos == capacity) { stop = Stop.CONTEXT_FULL; break; }
            step[0] = next;
            model.forward(logits, step, 1, 1, pos++, cache, acts, false);
        }
        return new Result(Arrays.copyOf(out, n), stop);
    }

    private boolean isEos(int id) {
        for (int e : eosIds) if (e == id) return true;
        return false;
    }
}
