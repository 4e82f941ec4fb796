package org.peft4j.model.llama;

import org.peft4j.model.LlamaConfig;

/// The per-layer half of the weight-name table: Hugging Face name, shape, and whether the config has the tensor.
/// The global half (embed_tokens, norm, lm_head) is in `LlamaWeights`. Names are those of transformers'
/// `LlamaDecoderLayer` (Qwen2 and Mistral use the same ones); nn.Linear weights are (out, in).
public enum LayerTensor {
    INPUT_LAYERNORM("input_layernorm.weight"),
    Q_PROJ("self_attn.q_proj.weight"),
    Q_BIAS("self_attn.q_proj.bias"),
    K_PROJ("self_attn.k_proj.weight"),
    K_BIAS("self_attn.k_proj.bias"),
    V_PROJ("self_attn.v_proj.weight"),
    V_BIAS("self_attn.v_proj.bias"),
    O_PROJ("self_attn.o_proj.weight"),
    O_BIAS("self_attn.o_proj.bias"),
    POST_ATTENTION_LAYERNORM("post_attention_layernorm.weight"),
    GATE_PROJ("mlp.gate_proj.weight"),
    GATE_BIAS("mlp.gate_proj.bias"),
    UP_PROJ("mlp.up_proj.weight"),
    UP_BIAS("mlp.up_proj.bias"),
    DOWN_PROJ("mlp.down_proj.weight"),
    DOWN_BIAS("mlp.down_proj.bias");

    public final String suffix;

    LayerTensor(String suffix) { this.suffix = suffix; }

    public String name(int layer) { return "model.layers." + layer + "." + suffix; }

    public boolean present(LlamaConfig c) {
        return switch (this) {
            case Q_BIAS, K_BIAS, V_BIAS -> c.qkvBias();
            case O_BIAS -> c.outputBias();
            case GATE_BIAS, UP_BIAS, DOWN_BIAS -> c.hasMlpBias();
            default -> true;
        };
    }

    public long[] shape(LlamaConfig c) {
        long C = c.hiddenSize(), F = c.intermediateSize(), Q = c.qDim(), KV = c.kvDim();
        return switch (this) {
            case INPUT_LAYERNORM, POST_ATTENTION_LAYERNORM, O_BIAS, DOWN_BIAS -> new long[]{C};
            case Q_PROJ -> new long[]{Q, C};
            case Q_BIAS -> new long[]{Q};
            case K_PROJ, V_PROJ -> new long[]{KV, C};
            case K_BIAS, V_BIAS -> new long[]{KV};
            case O_PROJ -> new long[]{C, Q};
            case GATE_PROJ, UP_PROJ -> new long[]{F, C};
            case GATE_BIAS, UP_BIAS -> new long[]{F};
            case DOWN_PROJ -> new long[]{C, F};
        };
    }
}
