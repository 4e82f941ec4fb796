package org.peft4j.model.adapter.lora;

import org.peft4j.core.Peft4jException.FormatException;

/// One module's adapter tensors, as PEFT stores them.
/// @param a         lora_A.weight, (r, in)
/// @param b         lora_B.weight, (out, r)
/// @param magnitude DoRA lora_magnitude_vector, (out), or null for plain LoRA
public record LoraWeights(int r, int in, int out, float[] a, float[] b, float[] magnitude) {
    public LoraWeights {
        if (r <= 0 || in <= 0 || out <= 0) throw new FormatException("LoRA weights need positive r, in, out; got r=" + r + " in=" + in + " out=" + out);
        if (a.length != r * in) throw new FormatException("lora_A has " + a.length + " values, expected r·in = " + r + "·" + in);
        if (b.length != out * r) throw new FormatException("lora_B has " + b.length + " values, expected out·r = " + out + "·" + r);
        if (magnitude != null && magnitude.length != out)
            throw new FormatException("lora_magnitude_vector has " + magnitude.length + " values, expected out = " + out);
    }

    /// Zero-filled tensors for a module of the given shape (magnitude only with DoRA); initialise with
    /// [LoraLinear#init] and, for DoRA, [DoraLinear#weightNorm].
    public static LoraWeights allocate(int r, int in, int out, boolean dora) {
        return new LoraWeights(r, in, out, new float[r * in], new float[out * r], dora ? new float[out] : null);
    }
}
