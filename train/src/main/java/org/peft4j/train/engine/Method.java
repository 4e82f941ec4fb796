package org.peft4j.train.engine;

import org.peft4j.model.adapter.ia3.Ia3Config;
import org.peft4j.model.adapter.lora.LoraConfig;

import java.util.List;

/// What is trained: the `finetuning_type` of LLaMA-Factory.
public sealed interface Method {
    /// Adapters on the targeted linear layers; the base is frozen (no gradient computed or stored for it).
    record Lora(LoraConfig config) implements Method {}

    /// (IA)³: learned vectors scaling the targeted linear layers' outputs (or a feed-forward module's input); the base
    /// is frozen (PEFT `IA3`).
    record Ia3(Ia3Config config) implements Method {}

    /// Prompt tuning (PEFT `PROMPT_TUNING`): `numVirtualTokens` trained input embeddings before every sequence; the
    /// model is frozen. `init` RANDOM or TEXT; `textIds` the tokenized init text (TEXT; set by the recipe, which holds
    /// the tokenizer), else null.
    record Prompt(int numVirtualTokens, String init, String initText, int[] textIds) implements Method {
        public Prompt {
            if (numVirtualTokens < 1) throw new org.peft4j.core.Peft4jException.ConfigException("num_virtual_tokens must be >= 1 for finetuning_type prompt, got " + numVirtualTokens);
        }
        @Override public boolean equals(Object o) {
            return o instanceof Prompt p && p.numVirtualTokens == numVirtualTokens && p.init.equals(init)
                    && java.util.Objects.equals(p.initText, initText) && java.util.Arrays.equals(p.textIds, textIds);
        }
        @Override public int hashCode() { return java.util.Objects.hash(numVirtualTokens, init, initText, java.util.Arrays.hashCode(textIds)); }
    }

    /// P-tuning (PEFT `P_TUNING`): `numVirtualTokens` input embeddings before every sequence, the output of a trained
    /// prompt encoder (MLP or LSTM, [org.peft4j.model.adapter.ptuning.PromptEncoder]); the model is frozen. The
    /// adapter saved is the encoder's output (PEFT's `prompt_embeddings`).
    record PTuning(org.peft4j.model.adapter.ptuning.PromptEncoderConfig config) implements Method {
        @Override public int virtualTokens() { return config.numVirtualTokens(); }
    }

    /// Prefix tuning / P-tuning v2 (PEFT `PREFIX_TUNING`): `numVirtualTokens` trained keys and values at every layer
    /// before each sequence's own; the model is frozen. With `prefixProjection` they are computed while training
    /// by PEFT's reparameterising MLP of width `encoderHiddenSize` (null: PEFT's default, token_dim, the width of
    /// the KV heads) from n trained embeddings ([org.peft4j.model.adapter.prefix.PrefixEncoder]).
    record Prefix(int numVirtualTokens, boolean prefixProjection, Integer encoderHiddenSize) implements Method {
        public Prefix {
            if (numVirtualTokens < 1) throw new org.peft4j.core.Peft4jException.ConfigException("num_virtual_tokens must be >= 1 for finetuning_type prefix, got " + numVirtualTokens);
            if (encoderHiddenSize != null && encoderHiddenSize < 1)
                throw new org.peft4j.core.Peft4jException.ConfigException("encoder_hidden_size must be >= 1, got " + encoderHiddenSize);
        }

        /// The MLP's hidden width on `c`: encoder_hidden_size, else PEFT's default token_dim (= kvDim).
        public int encoderHidden(org.peft4j.model.LlamaConfig c) { return encoderHiddenSize != null ? encoderHiddenSize : c.kvDim(); }

        /// The trained tensors on `c` in TrainModel.params() order, named as in PEFT's model: the prefix itself
        /// (n, L·2·kvDim), or with the projection the MLP's embedding, Linear weights and biases.
        public List<java.util.Map.Entry<String, long[]>> tensors(org.peft4j.model.LlamaConfig c) {
            long n = numVirtualTokens, D = c.kvDim(), E = encoderHidden(c), W = 2L * c.numHiddenLayers() * D;
            if (!prefixProjection) return List.of(java.util.Map.entry(org.peft4j.model.adapter.prefix.PrefixAdapter.TENSOR, new long[]{n, W}));
            return List.of(java.util.Map.entry("prompt_encoder.embedding.weight", new long[]{n, D}),
                    java.util.Map.entry("prompt_encoder.transform.0.weight", new long[]{E, D}), java.util.Map.entry("prompt_encoder.transform.0.bias", new long[]{E}),
                    java.util.Map.entry("prompt_encoder.transform.2.weight", new long[]{W, E}), java.util.Map.entry("prompt_encoder.transform.2.bias", new long[]{W}));
        }
    }

    /// Whether the base is frozen under a trained adapter (LoRA, (IA)³, prompt or prefix tuning, P-tuning) that is saved as a
    /// PEFT folder.
    default boolean adapter() { return this instanceof Lora || this instanceof Ia3 || this instanceof Prompt || this instanceof Prefix || this instanceof PTuning; }

    /// Virtual tokens before every row (prompt and prefix tuning, P-tuning ([PTuning] overrides it): the batch runs as
    /// (B, n + T)), else 0.
    default int virtualTokens() {
        return this instanceof Prompt p ? p.numVirtualTokens() : this instanceof Prefix x ? x.numVirtualTokens() : 0;
    }

    /// Every weight of the model.
    record Full() implements Method {}

    /// OFT (LLaMA-Factory's finetuning_type oft, through PEFT's OFTConfig): a block-diagonal orthogonal rotation of the
    /// input of each targeted linear layer; the base is frozen. See [org.peft4j.model.adapter.oft.OftRotation].
    record Oft(org.peft4j.model.adapter.oft.OftConfig config) implements Method {}

    /// LLaMA-Factory's freeze tuning: the last `trainableLayers` layers (the first |n| when negative) are trained,
    /// restricted to `modules` (e.g. `mlp`, `self_attn`, or `all`); embeddings, final norm and lm_head stay frozen.
    ///
    /// `llamaPro` (LLaMA-Factory's use_llama_pro, for a model expanded by its scripts/llama_pro.py): the
    /// `trainableLayers` added blocks are trained, every (numLayers / trainableLayers)-th layer ending with the last
    /// (LLaMA-Factory src/llamafactory/model/adapter.py `_setup_freeze_tuning`: `range(stride - 1, num_layers +
    /// stride - 1, stride)`).
    record Freeze(int trainableLayers, List<String> modules, boolean llamaPro) implements Method {
        public Freeze(int trainableLayers, List<String> modules) { this(trainableLayers, modules, false); }

        public boolean trains(int layer, int numLayers) {
            if (llamaPro) {
                if (trainableLayers < 1 || numLayers % trainableLayers != 0)
                    throw new org.peft4j.core.Peft4jException.ConfigException("use_llama_pro trains the blocks a LLaMA Pro expansion added, evenly spaced: "
                            + "num_hidden_layers " + numLayers + " must be a multiple of freeze_trainable_layers " + trainableLayers
                            + " (as LLaMA-Factory); expand the model first (LLaMA-Factory's scripts/llama_pro.py, num_expand = freeze_trainable_layers) or set freeze_trainable_layers to the number of added blocks");
                int stride = numLayers / trainableLayers;
                return (layer + 1) % stride == 0;
            }
            return trainableLayers > 0 ? layer >= numLayers - trainableLayers : layer < -trainableLayers;
        }

        public boolean trainsModule(String parent) {
            return modules.contains("all") || modules.contains(parent);
        }
    }
}
