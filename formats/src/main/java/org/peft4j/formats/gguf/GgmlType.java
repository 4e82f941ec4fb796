package org.peft4j.formats.gguf;

/// The ggml tensor types a GGUF file may hold, with their ids (`include/ggml.h`), block size in elements and block
/// size in bytes (`ggml-common.h`). The byte layout of each quantized block is in `org.peft4j.quant` (specs.md §4.2);
/// this table is only what the file layer needs to size and check tensor data. Types ggml has but peft4j never
/// reads (Q4_1, Q5_0, IQ*, …) are listed so that the reader names them in its error.
public enum GgmlType {
    F32(0, 1, 4), F16(1, 1, 2), Q4_0(2, 32, 18), Q4_1(3, 32, 20), Q5_0(6, 32, 22), Q5_1(7, 32, 24),
    Q8_0(8, 32, 34), Q8_1(9, 32, 36), Q2_K(10, 256, 84), Q3_K(11, 256, 110), Q4_K(12, 256, 144), Q5_K(13, 256, 176),
    Q6_K(14, 256, 210), Q8_K(15, 256, 292), IQ2_XXS(16, 256, 66), IQ2_XS(17, 256, 74), IQ3_XXS(18, 256, 98),
    IQ1_S(19, 256, 50), IQ4_NL(20, 32, 18), IQ3_S(21, 256, 110), IQ2_S(22, 256, 82), IQ4_XS(23, 256, 136),
    I8(24, 1, 1), I16(25, 1, 2), I32(26, 1, 4), I64(27, 1, 8), F64(28, 1, 8), IQ1_M(29, 256, 56), BF16(30, 1, 2),
    TQ1_0(34, 256, 54), TQ2_0(35, 256, 66), MXFP4(39, 32, 17);

    public final int id;
    /// Elements per block (1 for plain types).
    public final int blockSize;
    /// Bytes per block.
    public final int typeSize;

    GgmlType(int id, int blockSize, int typeSize) { this.id = id; this.blockSize = blockSize; this.typeSize = typeSize; }

    /// The type with ggml id `id`, or null when ggml has none by that id (or one newer than this table).
    public static GgmlType of(int id) {
        for (GgmlType t : values()) if (t.id == id) return t;
        return null;
    }

    /// Bytes of `n` elements; `n` must be a multiple of [#blockSize].
    public long bytes(long n) {
        if (n % blockSize != 0) throw new IllegalArgumentException(n + " elements are not a whole number of " + this
                + " blocks of " + blockSize);
        return Math.multiplyExact(n / blockSize, (long) typeSize);
    }

    public boolean quantized() { return blockSize > 1; }
}
