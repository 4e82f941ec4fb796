package org.peft4j.train.engine;

import org.peft4j.model.LlamaConfig;
import org.peft4j.model.llama.LayerTensor;
import org.peft4j.model.llama.LlamaWeights;

/// The seven linear layers of a Llama block, under the module names PEFT and LLaMA-Factory target
/// (`q_proj` … `down_proj`), with their weight and bias entries in the weight table and (in, out) sizes.
public enum LinearModule {
    Q_PROJ("q_proj", "self_attn", LayerTensor.Q_PROJ, LayerTensor.Q_BIAS),
    K_PROJ("k_proj", "self_attn", LayerTensor.K_PROJ, LayerTensor.K_BIAS),
    V_PROJ("v_proj", "self_attn", LayerTensor.V_PROJ, LayerTensor.V_BIAS),
    O_PROJ("o_proj", "self_attn", LayerTensor.O_PROJ, LayerTensor.O_BIAS),
    GATE_PROJ("gate_proj", "mlp", LayerTensor.GATE_PROJ, LayerTensor.GATE_BIAS),
    UP_PROJ("up_proj", "mlp", LayerTensor.UP_PROJ, LayerTensor.UP_BIAS),
    DOWN_PROJ("down_proj", "mlp", LayerTensor.DOWN_PROJ, LayerTensor.DOWN_BIAS);

    public final String moduleName, parent;
    public final LayerTensor weight, bias;

    LinearModule(String moduleName, String parent, LayerTensor weight, LayerTensor bias) {
        this.moduleName = moduleName; this.parent = parent; this.weight = weight; this.bias = bias;
    }

    /// The module path inside a layer, as PEFT names it: `self_attn.q_proj`.
    public String path() { return parent + "." + moduleName; }

    public int in(LlamaConfig c) {
        return switch (this) {
            case Q_PROJ, K_PROJ, V_PROJ, GATE_PROJ, UP_PROJ -> c.hiddenSize();
            case O_PROJ -> c.qDim();
            case DOWN_PROJ -> c.intermediateSize();
        };
    }

    public int out(LlamaConfig c) {
        return switch (this) {
            case Q_PROJ -> c.qDim();
            case K_PROJ, V_PROJ -> c.kvDim();
            case O_PROJ, DOWN_PROJ -> c.hiddenSize();
            case GATE_PROJ, UP_PROJ -> c.intermediateSize();
        };
    }

    public float[] weight(LlamaWeights.Layer l) { return l.get(weight); }

    public float[] bias(LlamaWeights.Layer l) { return l.get(bias); }

    public static LinearModule byName(String name) {
        for (LinearModule m : values()) if (m.moduleName.equals(name)) return m;
        return null;
    }
}
