package org.peft4j.model.llama;

import org.peft4j.core.Peft4jException.FormatException;
import org.peft4j.formats.safetensors.TensorInfo;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.Map;
import java.util.function.Function;
import java.util.function.Supplier;

/// What weight loading needs from a checkpoint: the header table and a float reader (F32/BF16/F16 → float), and,
/// for weights kept in their stored 16-bit dtype, the raw bytes ([#halfBytes]).
/// `SafeTensors` and `ShardedSafeTensors` both fit as method references: `TensorSource.of(st::tensors, st::readFloats)`,
/// or `TensorSource.of(st::tensors, st::readFloats, st::bytes)` to read raw values too.
public interface TensorSource {
    Map<String, TensorInfo> tensors();

    float[] readFloats(String name);

    /// The raw little-endian bytes of tensor `name` as stored, a view valid while the checkpoint is open.
    default MemorySegment bytes(String name) {
        throw new UnsupportedOperationException("this TensorSource reads floats only, so tensor '" + name + "' cannot be read in"
                + " its stored dtype; build it with TensorSource.of(st::tensors, st::readFloats, st::bytes)");
    }

    /// A BF16 or F16 tensor's stored bytes (little-endian 16-bit values, row-major) for a weight to hold, never
    /// converted to float32 (half the memory): by default a copy in native memory, which outlives the source; a source
    /// over a mapping that outlives it ([#inPlace]) gives the mapped bytes themselves, nothing copied.
    default MemorySegment halfBytes(String name) {
        long n = checkHalf(this, name);
        MemorySegment copy = Arena.ofAuto().allocate(2 * n, 64);
        MemorySegment.copy(bytes(name), 0, copy, 0, 2 * n);
        return copy;
    }

    /// The element count of BF16/F16 tensor `name`, after checking its dtype and its byte count.
    private static long checkHalf(TensorSource src, String name) {
        TensorInfo t = src.tensors().get(name);
        if (t == null) throw new FormatException("no tensor named '" + name + "' in the checkpoint (it has " + src.tensors().size()
                + " tensors); check the checkpoint matches the model");
        switch (t.dtype()) {
            case BF16, F16 -> { }
            default -> throw new FormatException("tensor '" + name + "' has dtype " + t.dtype() + ", but halfBytes reads BF16 or F16;"
                    + " read it with readFloats");
        }
        long n = t.numel();
        if (t.end() - t.begin() != 2 * n) throw new FormatException("tensor '" + name + "' holds " + (t.end() - t.begin()) + " bytes, but "
                + t.dtype() + " " + t.shapeString() + " needs " + 2 * n + "; the checkpoint is corrupt");
        return n;
    }

    static TensorSource of(Supplier<Map<String, TensorInfo>> tensors, Function<String, float[]> reader) {
        return new TensorSource() {
            public Map<String, TensorInfo> tensors() { return tensors.get(); }
            public float[] readFloats(String name) { return reader.apply(name); }
        };
    }

    /// A source that also reads raw bytes (`st::bytes` of `SafeTensors` or `ShardedSafeTensors`), for [#halfBytes],
    /// which copies them.
    static TensorSource of(Supplier<Map<String, TensorInfo>> tensors, Function<String, float[]> reader,
                           Function<String, MemorySegment> bytes) {
        return source(tensors, reader, bytes, false);
    }

    /// As [#of(Supplier, Function, Function)], for a checkpoint mapped into an arena that lives as long as the weights
    /// do (`ShardedSafeTensors.open(dir, Arena.ofAuto())`): [#halfBytes] returns the mapped bytes themselves, so a
    /// 16-bit weight is used in place.
    static TensorSource inPlace(Supplier<Map<String, TensorInfo>> tensors, Function<String, float[]> reader,
                                Function<String, MemorySegment> bytes) {
        return source(tensors, reader, bytes, true);
    }

    private static TensorSource source(Supplier<Map<String, TensorInfo>> tensors, Function<String, float[]> reader,
                                       Function<String, MemorySegment> bytes, boolean inPlace) {
        return new TensorSource() {
            public Map<String, TensorInfo> tensors() { return tensors.get(); }
            public float[] readFloats(String name) { return reader.apply(name); }
            @Override public MemorySegment bytes(String name) { return bytes.apply(name); }
            @Override public MemorySegment halfBytes(String name) {
                return inPlace ? bytes(name).asSlice(0, 2 * checkHalf(this, name)) : TensorSource.super.halfBytes(name);
            }
        };
    }
}
