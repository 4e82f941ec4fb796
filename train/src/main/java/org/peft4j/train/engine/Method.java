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

    /// Virtual tokens prepended to every row (prompt tuning, P-tuning): TrainModel runs (B, n + T), else 0.
    default int virtualTokens() { return this instanceof Prompt p ? p.numVirtualTokens() : 0; }

    /// Whether the base is frozen under a trained adapter (LoRA, (IA)³, prompt tuning, P-tuning) that is saved as a PEFT folder.
    default boolean adapter() { return this instanceof Lora || this instanceof Ia3 || this instanceof Prompt || this instanceof PTuning; }

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
