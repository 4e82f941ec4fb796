package org.peft4j.model.adapter.ptuning;

import org.peft4j.core.Peft4jException.ConfigException;

import java.util.List;

/// PEFT's PromptEncoderConfig (peft_type "P_TUNING", Liu et al. 2021, "GPT Understands, Too"): the settings of the
/// prompt encoder that turns `num_virtual_tokens` trained input vectors into the virtual tokens' embeddings during
/// training. Reference: PEFT `tuners/p_tuning/config.py` and `model.py`.
///
/// @param numVirtualTokens  n (PEFT: required)
/// @param type              encoder_reparameterization_type: MLP (PEFT's default) or LSTM
/// @param encoderHiddenSize encoder_hidden_size, or null for PEFT's default, the token_dim (`_prepare_prompt_learning_config`)
/// @param numLayers         encoder_num_layers (PEFT default 2): the LSTM's layers; PEFT's MLP ignores it (always 3 linears)
/// @param dropout           encoder_dropout (PEFT default 0): the LSTM's dropout between its layers; PEFT's MLP ignores it
public record PromptEncoderConfig(int numVirtualTokens, String type, Integer encoderHiddenSize, int numLayers, double dropout) {
    public static final List<String> TYPES = List.of("MLP", "LSTM");
    /// PEFT's PromptEncoderConfig.encoder_num_layers default.
    public static final int DEFAULT_NUM_LAYERS = 2;

    public PromptEncoderConfig {
        if (numVirtualTokens < 1) throw new ConfigException("num_virtual_tokens = " + numVirtualTokens + " must be >= 1 for P-tuning (e.g. 20)");
        if (!TYPES.contains(type))
            throw new ConfigException("encoder_reparameterization_type '" + type + "' is not one of PEFT's " + TYPES + "; use MLP (PEFT's default) or LSTM");
        if (encoderHiddenSize != null && encoderHiddenSize < 1)
            throw new ConfigException("encoder_hidden_size = " + encoderHiddenSize + " must be >= 1, or unset for PEFT's default (the model's hidden size)");
        if (numLayers < 1) throw new ConfigException("encoder_num_layers = " + numLayers + " must be >= 1");
        if (type.equals("MLP") && numLayers != DEFAULT_NUM_LAYERS)
            throw new ConfigException("encoder_num_layers " + numLayers + " has no effect with encoder_reparameterization_type MLP: PEFT's MLP encoder "
                    + "always has 3 linear layers and ignores it (with a warning); drop encoder_num_layers or use encoder_reparameterization_type LSTM");
        if (dropout != 0)
            throw new ConfigException("encoder_dropout " + dropout + " is not supported: " + (type.equals("MLP")
                    ? "PEFT's MLP encoder has no dropout (it ignores encoder_dropout)" : "peft4j's LSTM encoder has no dropout between its layers")
                    + "; set encoder_dropout: 0");
    }

    /// The encoder's hidden size for a model of hidden size `tokenDim`.
    public int hiddenSize(int tokenDim) { return encoderHiddenSize == null ? tokenDim : encoderHiddenSize; }

    public boolean lstm() { return type.equals("LSTM"); }
}
