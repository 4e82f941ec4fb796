package org.peft4j.model;

import org.peft4j.core.Peft4jException.UnsupportedModelException;

import java.util.List;

/// The closed set of decoder architectures peft4j runs. They share the Llama block (RMSNorm, RoPE rotate_half, GQA,
/// SwiGLU); what differs is dispatched by exhaustive `switch` so a new member is a compile error where it matters.
/// Reference: transformers `LlamaForCausalLM`, `MistralForCausalLM`, `Qwen2ForCausalLM`.
public sealed interface Architecture permits Architecture.Llama, Architecture.Qwen2, Architecture.Mistral {

    /// Llama 1/2/3, SmolLM, TinyLlama: biases only when `attention_bias` / `mlp_bias` say so.
    record Llama() implements Architecture {}

    /// Qwen2 / Qwen2.5: q, k and v projections always have a bias; o_proj and the MLP never do.
    record Qwen2() implements Architecture {}

    /// Mistral: no biases; attention may be limited to a sliding window.
    record Mistral() implements Architecture {}

    List<String> SUPPORTED_MODEL_TYPES = List.of("llama", "mistral", "qwen2");

    /// The `model_type` string of config.json.
    default String modelType() {
        return switch (this) {
            case Llama _ -> "llama";
            case Qwen2 _ -> "qwen2";
            case Mistral _ -> "mistral";
        };
    }

    /// The `architectures[0]` string transformers writes for the causal-LM head.
    default String hfClassName() {
        return switch (this) {
            case Llama _ -> "LlamaForCausalLM";
            case Qwen2 _ -> "Qwen2ForCausalLM";
            case Mistral _ -> "MistralForCausalLM";
        };
    }

    /// Whether q/k/v projections carry a bias, given config.json's `attention_bias`.
    default boolean qkvBias(boolean attentionBias) {
        return switch (this) {
            case Llama _ -> attentionBias;
            case Qwen2 _ -> true;
            case Mistral _ -> false;
        };
    }

    /// Whether o_proj carries a bias (HF LlamaAttention uses `attention_bias` for o_proj too; Qwen2 never does).
    default boolean outputBias(boolean attentionBias) {
        return switch (this) {
            case Llama _ -> attentionBias;
            case Qwen2 _, Mistral _ -> false;
        };
    }

    /// Whether gate/up/down carry a bias, given config.json's `mlp_bias` (only LlamaMLP reads it).
    default boolean mlpBias(boolean mlpBias) {
        return switch (this) {
            case Llama _ -> mlpBias;
            case Qwen2 _, Mistral _ -> false;
        };
    }

    static Architecture of(String modelType) {
        return switch (modelType == null ? "" : modelType) {
            case "llama" -> new Llama();
            case "qwen2" -> new Qwen2();
            case "mistral" -> new Mistral();
            default -> throw new UnsupportedModelException("model_type '" + modelType + "' is not supported; peft4j runs "
                    + SUPPORTED_MODEL_TYPES + " (SmolLM and TinyLlama checkpoints are model_type 'llama')");
        };
    }
}
