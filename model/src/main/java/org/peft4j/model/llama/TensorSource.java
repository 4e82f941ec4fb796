package org.peft4j.model.llama;

import org.peft4j.formats.safetensors.TensorInfo;

import java.util.Map;

/// What weight loading needs from a checkpoint: the header table and a float reader (F32/BF16/F16 → float).
/// `SafeTensors` and `ShardedSafeTensors` both fit as method references: `TensorSource.of(st::tensors, st::readFloats)`.
public interface TensorSource {
    Map<String, TensorInfo> tensors();

    float[] readFloats(String name);

    static TensorSource of(java.util.function.Supplier<Map<String, TensorInfo>> tensors,
                           java.util.function.Function<String, float[]> reader) {
        return new TensorSource() {
            public Map<String, TensorInfo> tensors() { return tensors.get(); }
            public float[] readFloats(String name) { return reader.apply(name); }
        };
    }
}
