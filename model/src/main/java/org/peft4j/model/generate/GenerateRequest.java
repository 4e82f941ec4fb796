package org.peft4j.model.generate;

import org.peft4j.core.Peft4jException.ConfigException;
import org.peft4j.model.adapter.LoadedAdapter;

/// One sequence to generate: its prompt ids, how to sample, when to stop and which adapter to run it with.
///
/// @param prompt       (P) ids, P >= 1 (usually starting with BOS)
/// @param sampler      greedy or random, with its repetition penalty
/// @param seed         seeds this sequence's own random stream (unused by greedy)
/// @param maxNewTokens generated tokens at most (>= 0); the sequence's context may end it sooner
/// @param stopIds      ids that end the sequence when sampled (EOS, `<|im_end|>` …); they are not part of the output
/// @param adapter      the adapter this row runs with, or null for the base model
/// @param virtualPrefixed whether `prompt` already starts with the adapter's prompt-tuning placeholders (set by the
///                        generator; callers pass the text's ids only)
public record GenerateRequest(int[] prompt, Sampler sampler, long seed, int maxNewTokens, int[] stopIds, LoadedAdapter adapter,
                              boolean virtualPrefixed) {
    public GenerateRequest(int[] prompt, Sampler sampler, long seed, int maxNewTokens, int[] stopIds, LoadedAdapter adapter) {
        this(prompt, sampler, seed, maxNewTokens, stopIds, adapter, false);
    }

    public GenerateRequest {
        if (prompt == null || prompt.length == 0) throw new ConfigException("the prompt is empty; pass at least one token (usually BOS)");
        if (sampler == null) throw new ConfigException("a request needs a sampler (Sampler.Greedy or Sampler.Random)");
        if (maxNewTokens < 0) throw new ConfigException("maxNewTokens must be >= 0, got " + maxNewTokens);
        prompt = prompt.clone();
        stopIds = stopIds == null ? new int[0] : stopIds.clone();
    }

    /// Greedy, base model, seed 0.
    public static GenerateRequest greedy(int[] prompt, int maxNewTokens, int... stopIds) {
        return new GenerateRequest(prompt, new Sampler.Greedy(), 0, maxNewTokens, stopIds, null);
    }

    public GenerateRequest withAdapter(LoadedAdapter adapter) {
        return new GenerateRequest(prompt, sampler, seed, maxNewTokens, stopIds, adapter);
    }

    public GenerateRequest withSampler(Sampler sampler, long seed) {
        return new GenerateRequest(prompt, sampler, seed, maxNewTokens, stopIds, adapter);
    }

    /// Whether `id` ends the sequence.
    public boolean isStop(int id) {
        for (int s : stopIds) if (s == id) return true;
        return false;
    }
}
