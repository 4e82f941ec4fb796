package org.peft4j.cli;

import org.peft4j.core.Peft4jException.ConfigException;
import org.peft4j.model.llama.LayerTensor;
import org.peft4j.model.llama.LlamaWeights;
import org.peft4j.model.lora.LoraLinear;
import org.peft4j.model.lora.LoraWeights;
import org.peft4j.model.lora.PeftAdapter;

import java.nio.file.Path;
import java.util.Map;

/// Applies a PEFT LoRA adapter to a loaded session by merging W ← W + s·B·A into its (private) weights, so that
/// generation runs at the base model's speed.
final class Adapters {
    private Adapters() {}

    static void apply(Session s, Path dir) {
        PeftAdapter a = PeftAdapter.read(dir);
        if (a.config().useDora()) throw new ConfigException(dir + ": DoRA adapters are not supported by --adapter yet");
        LlamaWeights w = s.model.weights;
        int L = w.config.numHiddenLayers();
        for (Map.Entry<PeftAdapter.Target, LoraWeights> e : a.weights().entrySet()) {
            PeftAdapter.Target t = e.getKey();
            LoraWeights lw = e.getValue();
            if (t.layer() >= L)
                throw new ConfigException(dir + ": the adapter has layer " + t.layer() + " but the model has " + L + " layers; it was trained for another model");
            LayerTensor lt = LayerTensor.valueOf(t.module().toUpperCase());
            long[] shape = lt.shape(w.config);
            if (shape[0] != lw.out() || shape[1] != lw.in())
                throw new ConfigException(dir + ": adapter " + t.path() + " is for a " + lw.out() + "x" + lw.in() + " weight, the model's is "
                        + shape[0] + "x" + shape[1] + "; it was trained for another model");
            float sc = (float) a.config().scaling(t.module());
            LoraLinear.merge(s.model.gemm(), w.layers.get(t.layer()).get(lt), lw.a(), lw.b(), sc, lw.out(), lw.in(), lw.r());
        }
    }
}
