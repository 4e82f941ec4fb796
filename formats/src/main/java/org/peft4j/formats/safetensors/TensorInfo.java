package org.peft4j.formats.safetensors;

import org.peft4j.core.DType;

import java.util.Arrays;

/// One entry of a safetensors header: name, dtype, shape and byte range `[begin, end)` relative to the data section
/// of the file that holds it.
public record TensorInfo(String name, DType dtype, long[] shape, long begin, long end) {
    public long numel() {
        long n = 1;
        for (long d : shape) n *= d;
        return n;
    }

    public String shapeString() { return Arrays.toString(shape); }

    /// The element count of `shape`; throws on a negative dimension or a count that overflows a long.
    static long numel(long[] shape, String name) {
        long n = 1;
        for (long d : shape) {
            if (d < 0) throw new IllegalArgumentException("tensor '" + name + "' has a negative dimension in shape " + Arrays.toString(shape));
            n = Math.multiplyExact(n, d);
        }
        return n;
    }
}
