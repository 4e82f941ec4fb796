package org.peft4j.core;

/// Element types of stored tensors, with safetensors' names and byte sizes.
public enum DType {
    F64(8), F32(4), F16(2), BF16(2), I64(8), I32(4), I16(2), I8(1), U8(1), BOOL(1);

    public final int bytes;

    DType(int bytes) { this.bytes = bytes; }

    public boolean isFloat() { return this == F64 || this == F32 || this == F16 || this == BF16; }

    /// bfloat16 bits → float (exact).
    public static float bf16ToFloat(short bits) { return Float.intBitsToFloat((bits & 0xffff) << 16); }

    /// float → bfloat16 bits, round to nearest even, NaN kept quiet (as PyTorch's `c10::BFloat16`).
    public static short floatToBf16(float f) {
        int x = Float.floatToRawIntBits(f);
        if ((x & 0x7fffffff) > 0x7f800000) return (short) ((x >>> 16) | 0x40);
        int rounding = 0x7fff + ((x >>> 16) & 1);
        return (short) ((x + rounding) >>> 16);
    }
}
