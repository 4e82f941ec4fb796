package org.peft4j.model;

import org.peft4j.core.Peft4jException.ConfigException;

/// RoPE frequency scaling, config.json's `rope_scaling` (or `rope_parameters`). Applied to the inverse frequencies
/// `1 / theta^(2i/HS)` once, before the cos/sin tables are built.
/// Reference: transformers `modeling_rope_utils.py` (`_compute_linear_scaling_rope_parameters`,
/// `_compute_llama3_parameters`).
public sealed interface RopeScaling permits RopeScaling.None, RopeScaling.Linear, RopeScaling.Llama3 {

    /// `rope_scaling: null` or `rope_type: "default"`.
    record None() implements RopeScaling {}

    /// Positions divided by `factor`, i.e. every inverse frequency divided by it.
    record Linear(double factor) implements RopeScaling {
        public Linear {
            if (!(factor > 0)) throw new ConfigException("rope_scaling.factor must be > 0, got " + factor);
        }
    }

    /// Llama 3.1+: long wavelengths divided by `factor`, short ones kept, a smooth blend between.
    record Llama3(double factor, double lowFreqFactor, double highFreqFactor, int originalMaxPositionEmbeddings)
            implements RopeScaling {
        public Llama3 {
            if (!(factor > 0) || !(lowFreqFactor > 0) || !(highFreqFactor > lowFreqFactor) || originalMaxPositionEmbeddings <= 0)
                throw new ConfigException("rope_scaling llama3 needs factor > 0, 0 < low_freq_factor < high_freq_factor and "
                        + "original_max_position_embeddings > 0; got factor " + factor + ", low_freq_factor " + lowFreqFactor
                        + ", high_freq_factor " + highFreqFactor + ", original_max_position_embeddings " + originalMaxPositionEmbeddings);
        }
    }

    /// Scales `invFreq` (HS/2) in place and returns it.
    default double[] apply(double[] invFreq) {
        switch (this) {
            case None _ -> { }
            case Linear l -> { for (int i = 0; i < invFreq.length; i++) invFreq[i] /= l.factor(); }
            case Llama3 s -> {
                double lowWavelen = s.originalMaxPositionEmbeddings() / s.lowFreqFactor();
                double highWavelen = s.originalMaxPositionEmbeddings() / s.highFreqFactor();
                for (int i = 0; i < invFreq.length; i++) {
                    double f = invFreq[i], wavelen = 2 * Math.PI / f;
                    if (wavelen > lowWavelen) invFreq[i] = f / s.factor();
                    else if (wavelen >= highWavelen) {   // medium band: transformers' is_medium_freq = !(< high) && !(> low)
                        double smooth = (s.originalMaxPositionEmbeddings() / wavelen - s.lowFreqFactor())
                                / (s.highFreqFactor() - s.lowFreqFactor());
                        invFreq[i] = (1 - smooth) * f / s.factor() + smooth * f;
                    }
                }
            }
        }
        return invFreq;
    }
}
