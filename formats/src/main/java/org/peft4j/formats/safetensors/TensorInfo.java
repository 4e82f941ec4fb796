package org.peft4j.formats.safetensors;

import org.peft4j.core.DType;

/// One entry of a safetensors header: name, dtype, shape and byte range relative to the data section.
public record TensorInfo(String name, DType dtype, long[] shape, long begin, long end) {
    public long numel() {
        long n = 1;
        for (long d : shape) n *= d;
        return n;
    }

    public String shapeString() { return java.util.Arrays.toString(shape); }
}
