package org.peft4j.model.llama;

import org.peft4j.core.Peft4jException.ConfigException;
import org.peft4j.model.LlamaConfig;

import java.util.Arrays;
import java.util.List;

/// The one table of the seven linear layers of a Llama block: the Hugging Face weight and bias names, PEFT's target
/// name and owning submodule, llama.cpp's GGUF tensor name, and the (in, out) sizes with what config.json calls them.
/// The order (q, k, v, o, gate, up, down) is LLaMA-Factory's `lora_target: all` order and the order of every
/// per-projection array in the code base (index by [#ordinal()]). nn.Linear weights are (out, in).
public enum Projection {
    Q_PROJ("q_proj", "self_attn", "attn_q", LayerTensor.Q_PROJ, LayerTensor.Q_BIAS),
    K_PROJ("k_proj", "self_attn", "attn_k", LayerTensor.K_PROJ, LayerTensor.K_BIAS),
    V_PROJ("v_proj", "self_attn", "attn_v", LayerTensor.V_PROJ, LayerTensor.V_BIAS),
    O_PROJ("o_proj", "self_attn", "attn_output", LayerTensor.O_PROJ, LayerTensor.O_BIAS),
    GATE_PROJ("gate_proj", "mlp", "ffn_gate", LayerTensor.GATE_PROJ, LayerTensor.GATE_BIAS),
    UP_PROJ("up_proj", "mlp", "ffn_up", LayerTensor.UP_PROJ, LayerTensor.UP_BIAS),
    DOWN_PROJ("down_proj", "mlp", "ffn_down", LayerTensor.DOWN_PROJ, LayerTensor.DOWN_BIAS);

    /// Every projection, in table order.
    public static final List<Projection> ALL = List.of(values());
    /// PEFT's module names in table order: what `lora_target: all` / PEFT's "all-linear" expand to (lm_head excluded).
    public static final List<String> MODULE_NAMES = Arrays.stream(values()).map(p -> p.module).toList();

    /// PEFT's / LLaMA-Factory's module name, e.g. "q_proj".
    public final String module;
    /// The transformers submodule holding it: "self_attn" or "mlp".
    public final String parent;
    /// llama.cpp's GGUF tensor name inside a block: `blk.N.<gguf>.weight`.
    public final String gguf;
    /// The base weight (out, in) and bias (out) entries of the per-layer name table.
    public final LayerTensor weight, bias;

    Projection(String module, String parent, String gguf, LayerTensor weight, LayerTensor bias) {
        this.module = module; this.parent = parent; this.gguf = gguf; this.weight = weight; this.bias = bias;
    }

    /// The module path inside a layer, as PEFT names it: `self_attn.q_proj`.
    public String path() { return parent + "." + module; }

    /// The Hugging Face weight name in layer `l`: `model.layers.l.self_attn.q_proj.weight`.
    public String weightName(int l) { return weight.name(l); }

    /// The GGUF tensor name in layer `l`: `blk.l.attn_q.weight`.
    public String ggufName(int l) { return "blk." + l + "." + gguf + ".weight"; }

    /// Columns of the weight (its input features); allocation-free, as the forward calls it per layer.
    public int in(LlamaConfig c) {
        return switch (this) {
            case Q_PROJ, K_PROJ, V_PROJ, GATE_PROJ, UP_PROJ -> c.hiddenSize();
            case O_PROJ -> c.qDim();
            case DOWN_PROJ -> c.intermediateSize();
        };
    }

    /// Rows of the weight (its output features).
    public int out(LlamaConfig c) {
        return switch (this) {
            case Q_PROJ -> c.qDim();
            case K_PROJ, V_PROJ -> c.kvDim();
            case O_PROJ, DOWN_PROJ -> c.hiddenSize();
            case GATE_PROJ, UP_PROJ -> c.intermediateSize();
        };
    }

    /// The base weight of this projection in a layer of float weights (null when it is held elsewhere, e.g. 4-bit).
    public float[] weight(LlamaWeights.Layer l) { return l.get(weight); }

    /// The bias of this projection, or null when the config has none.
    public float[] bias(LlamaWeights.Layer l) { return l.get(bias); }

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
        Projection p = byName(module);
        if (p == null) throw new ConfigException("module '" + module + "' is not a Llama linear layer; expected one of " + MODULE_NAMES);
        return p;
    }

    /// The projection PEFT calls `module`, or null.
    public static Projection byName(String module) {
        for (Projection p : values()) if (p.module.equals(module)) return p;
        return null;
    }

    /// The projection whose weight is table entry `t`, or null when `t` is not a projection weight.
    public static Projection ofWeight(LayerTensor t) {
        for (Projection p : values()) if (p.weight == t) return p;
        return null;
    }
}
