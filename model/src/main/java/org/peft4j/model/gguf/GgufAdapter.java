package org.peft4j.model.gguf;

import org.peft4j.core.Peft4jException.ConfigException;
import org.peft4j.core.Peft4jException.UnsupportedModelException;
import org.peft4j.formats.gguf.GgmlType;
import org.peft4j.formats.gguf.GgufValue;
import org.peft4j.formats.gguf.GgufWriter;
import org.peft4j.model.Architecture;
import org.peft4j.model.adapter.LoadedAdapter;

/// A LoRA adapter in llama.cpp's GGUF adapter layout (convert_lora_to_gguf.py; loaded by `llama_adapter_lora_init`,
/// specs.md §4.4): `general.type = adapter`, `adapter.type = lora`, `adapter.lora.alpha`, and per adapted projection
/// `blk.N.<name>.weight.lora_a` (ne [in, r], PEFT's lora_A bytes) and `.lora_b` (ne [r, out], lora_B's bytes, rows
/// Q/K-permuted for the llama architecture, as the base weight is).
///
/// llama.cpp applies `W x + s · B (A x)` with `s = alpha / rank` (rank = lora_b ne[0]). When every module has the same
/// PEFT scaling and rank, `alpha = scaling · r` (so rsLoRA needs no special case); when rank or alpha patterns give
/// modules different scalings, each lora_b is pre-multiplied by its scaling and alpha is 0 (llama.cpp then uses
/// s = 1), which a single alpha could not express.
public final class GgufAdapter {
    private GgufAdapter() {}

    /// `type`: F32 (default of the converter), F16 or BF16 (Q8_0 would need r a multiple of 32).
    public static GgufWriter writer(LoadedAdapter adapter, GgmlType type) {
        if (type != GgmlType.F32 && type != GgmlType.F16 && type != GgmlType.BF16)
            throw new ConfigException("a GGUF LoRA adapter is written as f32, f16 or bf16, not " + type
                    + " (lora_b rows are r wide, rarely whole blocks of 32)");
        if (adapter.dora())
            throw new UnsupportedModelException("adapter " + adapter.source + " is DoRA; llama.cpp's GGUF adapters are plain LoRA"
                    + " (merge it with `peft4j export --export_format gguf` instead)");
        var c = adapter.base;
        boolean llama = !(c.architecture() instanceof Architecture.Qwen2);
        var mods = adapter.modules();
        boolean uniform = mods.stream().allMatch(m -> m.scaling() == mods.getFirst().scaling() && m.weights().r() == mods.getFirst().weights().r());
        GgufWriter w = new GgufWriter();
        w.put("general.architecture", GgufValue.string(llama ? "llama" : "qwen2"));
        w.put("general.type", GgufValue.string("adapter"));
        w.put("adapter.type", GgufValue.string("lora"));
        w.put("adapter.lora.alpha", GgufValue.f32(uniform ? mods.getFirst().scaling() * mods.getFirst().weights().r() : 0f));
        w.put("general.file_type", GgufValue.u32(switch (type) { case F16 -> 1; case BF16 -> 32; default -> 0; }));
        for (LoadedAdapter.Module m : mods) {
            var lw = m.weights();
            String base = "blk." + m.layer() + "." + m.projection().gguf + ".weight";
            float[] b = lw.b();
            if (!uniform) {
                b = b.clone();
                for (int i = 0; i < b.length; i++) b[i] *= m.scaling();
            }
            String hf = m.projection().weightName(m.layer());
            int heads = GgufNames.permutedHeads(hf, c, llama);
            if (heads != 0) b = GgufNames.permuteRows(b, heads, lw.r(), true);
            w.addFloats(base + ".lora_a", new long[]{lw.r(), lw.in()}, lw.a(), type);
            w.addFloats(base + ".lora_b", new long[]{lw.out(), lw.r()}, b, type);
        }
        return w;
    }
}
