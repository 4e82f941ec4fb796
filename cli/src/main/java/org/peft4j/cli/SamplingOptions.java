package org.peft4j.cli;

import org.peft4j.core.Peft4jException.ConfigException;
import org.peft4j.model.GenerationConfig;
import org.peft4j.model.adapter.LoadedAdapter;
import org.peft4j.model.generate.GenerateRequest;
import org.peft4j.model.generate.Sampler;
import picocli.CommandLine.Option;

import java.util.List;

/// `generate` and `chat` sampling flags; unset flags fall back to the model's generation_config.json.
final class SamplingOptions {
    @Option(names = "--max-new-tokens", paramLabel = "N", defaultValue = "128", description = "Tokens to generate at most (default: ${DEFAULT-VALUE}).")
    int maxNewTokens;

    @Option(names = "--temperature", paramLabel = "T", description = "0 = greedy (default: the model's generation_config, else greedy).")
    Double temperature;

    @Option(names = "--top-k", paramLabel = "K", description = "Keep the K most likely tokens (0 = off).")
    Integer topK;

    @Option(names = "--top-p", paramLabel = "P", description = "Nucleus sampling threshold in (0, 1].")
    Double topP;

    @Option(names = "--repetition-penalty", paramLabel = "R", description = "HF repetition penalty (1 = off).")
    Double repetitionPenalty;

    @Option(names = "--seed", paramLabel = "S", defaultValue = "0", description = "Sampling seed (default: ${DEFAULT-VALUE}).")
    long seed;

    @Option(names = "--stop", paramLabel = "TEXT", description = "Stop when the completion contains TEXT (repeatable).")
    List<String> stop = List.of();

    Sampler sampler(GenerationConfig g) {
        if (maxNewTokens < 0) throw new ConfigException("--max-new-tokens must be >= 0, got " + maxNewTokens);
        double rp = repetitionPenalty != null ? repetitionPenalty : g.repetitionPenalty();
        double t = temperature != null ? temperature : (g.doSample() ? g.temperature() : 0);
        if (!(t >= 0) || !Double.isFinite(t)) throw new ConfigException("--temperature must be a finite number >= 0 (0 = greedy), got " + t);
        if (t == 0) return new Sampler.Greedy(rp);
        return new Sampler.Random(t, topK != null ? topK : g.topK(), topP != null ? topP : g.topP(), rp);
    }

    /// The request for `prompt` with these flags, stopping at `stopIds`, with `adapter` (or null for the base).
    GenerateRequest request(int[] prompt, GenerationConfig g, int[] stopIds, LoadedAdapter adapter) {
        return new GenerateRequest(prompt, sampler(g), seed, maxNewTokens, stopIds, adapter);
    }
}
