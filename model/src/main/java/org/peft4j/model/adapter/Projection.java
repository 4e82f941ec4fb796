package org.peft4j.model.adapter;

import org.peft4j.core.Peft4jException.ConfigException;
import org.peft4j.model.LlamaConfig;
import org.peft4j.model.llama.LayerTensor;

/// The seven linear layers of a Llama block that LoRA can adapt, in [org.peft4j.model.lora.LoraConfig#ALL_LINEAR]
/// order, with their PEFT module name, their weight in the name table, and what their in/out sizes are called in
/// config.json (for error messages). nn.Linear weights are (out, in).
public enum Projection {
    Q_PROJ("q_proj", LayerTensor.Q_PROJ),
    K_PROJ("k_proj", LayerTensor.K_PROJ),
    V_PROJ("v_proj", LayerTensor.V_PROJ),
    O_PROJ("o_proj", LayerTensor.O_PROJ),
    GATE_PROJ("gate_proj", LayerTensor.GATE_PROJ),
    UP_PROJ("up_proj", LayerTensor.UP_PROJ),
    DOWN_PROJ("down_proj", LayerTensor.DOWN_PROJ);

    /// PEFT's module name, e.g. "q_proj".
    public final String module;
    /// The base weight (out, in) this projection multiplies by.
    public final LayerTensor weight;

    Projection(String module, LayerTensor weight) { this.module = module; this.weight = weight; }

    public int in(LlamaConfig c) { return (int) weight.shape(c)[1]; }

    public int out(LlamaConfig c) { return (int) weight.shape(c)[0]; }

    /// What config.json calls the input size, e.g. "hidden size".
    public String inName() {
        return switch (this) {
            case Q_PROJ, K_PROJ, V_PROJ, GATE_PROJ, UP_PROJ -> "hidden size";
            case O_PROJ -> "attention width (num_attention_heads·head_dim)";
            case DOWN_PROJ -> "intermediate size";
        };
    }

    /// What config.json calls the output size, e.g. "intermediate size".
    public String outName() {
        return switch (this) {
            case Q_PROJ -> "attention width (num_attention_heads·head_dim)";
            case K_PROJ, V_PROJ -> "key/value width (num_key_value_heads·head_dim)";
            case O_PROJ, DOWN_PROJ -> "hidden size";
            case GATE_PROJ, UP_PROJ -> "intermediate size";
        };
    }

    /// The projection PEFT calls `module`.
    public static Projection of(String module) {
        for (Projection p : values()) if (p.module.equals(module)) return p;
        throw new ConfigException("module '" + module + "' is not a Llama linear layer; expected one of q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj");
    }
}
