package org.peft4j.quant;

import java.util.Arrays;

/// bitsandbytes' 8-bit "dynamic" code maps (`create_dynamic_map(signed, max_exponent_bits=7, total_bits=8)`): per
/// decade `10^(i-6)`, i = 0..6, the means of neighbouring points of a float32 `linspace(0.1, 1, k)`, plus 0 and 1.
/// The signed map (double-quantized absmax, Adam's first moment) has ± copies and `2^i + 1` points per decade; the
/// unsigned map (Adam's second moment) `2^(i+1) + 1` points and no negatives. Reference: bitsandbytes `functional.py`
/// `create_dynamic_map`; specs.md §1.4. Readers must use the map stored in a checkpoint; these are what we write.
public final class DynamicMap {
    private DynamicMap() {}

    /// Python's `10 ** (i - 6)` as doubles (then rounded to float32 by the tensor product).
    private static final double[] DECADES = {1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0};

    private static final float[] SIGNED = create(true), UNSIGNED = create(false);

    /// The signed map, 256 ascending values from -0.99296875 to 1.0 (code 127 is +0.0), a copy.
    public static float[] signed() { return SIGNED.clone(); }
    /// The unsigned map, 256 ascending values from 0.0 to 1.0, a copy.
    public static float[] unsigned() { return UNSIGNED.clone(); }

    /// Builds the map in float32 as PyTorch does: `(10^(i-6) as float32) · fl32((b[k] + b[k+1]) / 2)`.
    static float[] create(boolean signed) {
        float[] data = new float[256];
        int n = 0;
        for (int i = 0; i < 7; i++) {
            int points = signed ? (1 << i) + 1 : (1 << (i + 1)) + 1;
            float[] b = linspace(0.1f, 1f, points);
            float scale = (float) DECADES[i];
            for (int k = 0; k + 1 < points; k++) {
                float v = scale * ((b[k] + b[k + 1]) / 2f);
                data[n++] = v;
                if (signed) data[n++] = -v;
            }
        }
        data[n++] = 0f;
        data[n++] = 1f;
        assert n == 256 : n;
        Arrays.sort(data);
        return data;
    }

    /// PyTorch's float32 `linspace`: `step = fl32((end - start) / (steps - 1))`; the first half counts up from start,
    /// the second half down from end, each point one rounding of `start + step·k` (fused), as the published maps show.
    static float[] linspace(float start, float end, int steps) {
        float[] out = new float[steps];
        float step = (end - start) / (steps - 1);
        int halfway = steps / 2;
        for (int k = 0; k < steps; k++)
            out[k] = k < halfway ? Math.fma(step, (float) k, start) : Math.fma(-step, (float) (steps - 1 - k), end);
        return out;
    }
}
