package org.peft4j.quant;

import org.peft4j.core.Peft4jException.UnsupportedModelException;

/// bitsandbytes' 4-bit data types: the 16-entry code book, and the code a scaled value `s ∈ [-1, 1]` gets, with the
/// CUDA kernel's float32 thresholds and tie rule (a value exactly on a threshold gets the lower code; NaN gets 0).
/// Reference: bitsandbytes `functional.py` `get_4bit_type`, `csrc/kernels.cu` `dQuantizeNF4`/`dQuantizeFP4`;
/// specs.md §1.1–1.2.
public enum QuantType {
    /// NormalFloat4: normal quantiles, 7 negative and 8 positive non-zero levels.
    NF4(new int[]{0xbf800000, 0xbf3239b1, 0xbf066b30, 0xbeca32a0, 0xbe91a24d, 0xbe3d353f, 0xbdba7871, 0x00000000,
            0x3da2faff, 0x3e24cae3, 0x3e7c04dd, 0x3ead033a, 0x3ee1a4b8, 0x3f1007ab, 0x3f3913b3, 0x3f800000}, null),
    /// bitsandbytes FP4 (sign bit 3, 2 exponent bits, 1 mantissa bit; not IEEE), divided by its max 12.
    FP4(new int[]{0x00000000, 0x3baaaaab, 0x3f2aaaab, 0x3f800000, 0x3eaaaaab, 0x3f000000, 0x3e2aaaab, 0x3e800000,
            0x80000000, 0xbbaaaaab, 0xbf2aaaab, 0xbf800000, 0xbeaaaaab, 0xbf000000, 0xbe2aaaab, 0xbe800000},
            new float[]{0.00260417f, 0.0859375f, 0.20833333f, 0.29166667f, 0.4166667f, 0.583333f, 0.8333333f});

    private final float[] code;
    /// NF4: the 15 midpoints `fl32((c[i] + c[i+1]) / 2)`, ascending. FP4: the 7 magnitude thresholds of the kernel.
    private final float[] thresholds;
    private final float[] pairs = new float[512];

    /// `magnitudeThresholds` null: the thresholds are the float32 midpoints of the (sorted) code book.
    QuantType(int[] bits, float[] magnitudeThresholds) {
        code = new float[16];
        for (int i = 0; i < 16; i++) code[i] = Float.intBitsToFloat(bits[i]);
        if (magnitudeThresholds != null) thresholds = magnitudeThresholds;
        else {
            thresholds = new float[15];
            for (int i = 0; i < 15; i++) thresholds[i] = (code[i] + code[i + 1]) / 2f;
        }
        for (int b = 0; b < 256; b++) { pairs[2 * b] = code[b >>> 4]; pairs[2 * b + 1] = code[b & 15]; }
    }

    /// FP4 magnitude code for the count of thresholds below `|s|` (kernels.cu decision tree).
    private static final int[] FP4_MAGNITUDE = {0b000, 0b001, 0b110, 0b111, 0b100, 0b101, 0b010, 0b011};

    /// The code book (`weight.quant_map` in a checkpoint), a copy.
    public float[] code() { return code.clone(); }
    float[] codeShared() { return code; }
    /// `(code[b >>> 4], code[b & 15])` at `[2b, 2b + 1]` for every byte b: both nibbles of a packed byte in one lookup.
    float[] pairTable() { return pairs; }
    /// The decision thresholds, a copy.
    public float[] thresholds() { return thresholds.clone(); }

    /// The 4-bit code of a scaled value `s = fl32(x · fl32(1 / absmax))`.
    public int quantize(float s) {
        if (this == NF4) return countBelow(thresholds, s);
        int sign = s < 0 ? 8 : 0;
        return sign | FP4_MAGNITUDE[countBelow(thresholds, Math.abs(s))];
    }

    /// The number of `t[i]` with `s > t[i]` (strict; NaN → 0), by binary search over the ascending `t`.
    private static int countBelow(float[] t, float s) {
        int lo = 0, hi = t.length;
        while (lo < hi) {
            int mid = (lo + hi) >>> 1;
            if (s > t[mid]) lo = mid + 1; else hi = mid;
        }
        return lo;
    }

    /// The name bitsandbytes uses (`quant_type` in the quant_state JSON, `bnb_4bit_quant_type`).
    public String jsonName() { return name().toLowerCase(java.util.Locale.ROOT); }

    /// Parses `nf4` / `fp4` (any case).
    public static QuantType of(String name) {
        for (QuantType t : values()) if (t.jsonName().equalsIgnoreCase(name)) return t;
        throw new UnsupportedModelException("quant type '" + name + "' is not supported; bitsandbytes 4-bit types are nf4 and fp4");
    }
}
