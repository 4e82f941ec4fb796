package org.peft4j.formats.gguf;

import java.util.Arrays;

/// One tensor-info entry of a GGUF file: name, ggml type, dimensions `ne` (ne[0] innermost, the reverse of the
/// numpy/torch shape) and the byte offset of its data relative to the data section.
public record GgufTensor(String name, GgmlType type, long[] ne, long offset) {
    public GgufTensor { ne = ne.clone(); }

    @Override public long[] ne() { return ne.clone(); }

    /// The numpy/torch shape: `ne` reversed (a Linear weight (out, in) has ne = [in, out]).
    public long[] shape() {
        long[] s = new long[ne.length];
        for (int i = 0; i < ne.length; i++) s[i] = ne[ne.length - 1 - i];
        return s;
    }

    public long numel() {
        long n = 1;
        for (long d : ne) n = Math.multiplyExact(n, d);
        return n;
    }

    /// Bytes of the data (without alignment padding).
    public long bytes() { return type.bytes(numel()); }

    public String shapeString() { return Arrays.toString(shape()); }

    @Override public boolean equals(Object o) {
        return o instanceof GgufTensor t && name.equals(t.name) && type == t.type && Arrays.equals(ne, t.ne) && offset == t.offset;
    }

    @Override public int hashCode() { return name.hashCode() * 31 + Arrays.hashCode(ne); }

    @Override public String toString() { return name + " " + type + " ne=" + Arrays.toString(ne) + " @" + offset; }
}
