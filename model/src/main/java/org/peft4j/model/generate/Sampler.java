package org.peft4j.model.generate;

import org.peft4j.core.Peft4jException.ConfigException;
import org.peft4j.model.GenerationConfig;

/// How the next token is chosen from logits; the closed family of decoding strategies. Both apply transformers'
/// repetition penalty first (`RepetitionPenaltyLogitsProcessor`: a seen token's logit is divided by the penalty when
/// positive and multiplied when negative). `TokenSampler` runs them.
public sealed interface Sampler permits Sampler.Greedy, Sampler.Random {

    double repetitionPenalty();

    /// argmax (the first index on ties, as torch.argmax).
    record Greedy(double repetitionPenalty) implements Sampler {
        public Greedy {
            if (!(repetitionPenalty > 0) || !Double.isFinite(repetitionPenalty)) throw new ConfigException("repetition_penalty must be a finite number > 0, got " + repetitionPenalty);
        }

        public Greedy() { this(1.0); }
    }

    /// Multinomial sampling after transformers' warpers in their order: temperature, then top-k (keep logits ≥ the
    /// k-th largest; 0 = off), then top-p (keep the smallest most-probable set whose probability reaches p, at least one).
    record Random(double temperature, int topK, double topP, double repetitionPenalty) implements Sampler {
        public Random {
            if (!(temperature > 0) || !Double.isFinite(temperature))
                throw new ConfigException("temperature must be a finite number > 0 for sampling, got " + temperature + "; set temperature 0 for greedy decoding");
            if (topK < 0) throw new ConfigException("top_k must be >= 0 (0 = off), got " + topK);
            if (!(topP > 0 && topP <= 1)) throw new ConfigException("top_p must be in (0, 1], got " + topP);
            if (!(repetitionPenalty > 0) || !Double.isFinite(repetitionPenalty)) throw new ConfigException("repetition_penalty must be a finite number > 0, got " + repetitionPenalty);
        }
    }

    /// transformers' choice: greedy unless do_sample (and greedy for temperature 0).
    static Sampler of(GenerationConfig g) {
        if (!g.doSample() || g.temperature() == 0) return new Greedy(g.repetitionPenalty());
        return new Random(g.temperature(), g.topK(), g.topP(), g.repetitionPenalty());
    }
}
