package org.peft4j.model.gguf;

import org.peft4j.core.Peft4jException.ConfigException;
import org.peft4j.core.Peft4jException.UnsupportedModelException;
import org.peft4j.formats.gguf.GgmlType;
import org.peft4j.formats.gguf.GgufValue;
import org.peft4j.formats.gguf.GgufWriter;
import org.peft4j.model.Architecture;
import org.peft4j.model.LlamaConfig;
import org.peft4j.model.adapter.LoadedAdapter;
import org.peft4j.model.adapter.lora.LoraConfig;
import org.peft4j.model.adapter.lora.LoraWeights;
import org.peft4j.model.adapter.lora.PeftAdapter;
import org.peft4j.model.llama.Projection;
import org.peft4j.formats.gguf.GgufFile;
import org.peft4j.formats.gguf.GgufTensor;
import org.peft4j.formats.gguf.GgufValue;

import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;

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

    /// Reads a GGUF LoRA adapter as llama.cpp's `llama_adapter_lora_init` does, into PEFT terms for `base`: each
    /// `blk.N.<proj>.weight.lora_a` (ne [in, r]) / `.lora_b` (ne [r, out]) pair becomes lora_A (r, in) / lora_B (out, r)
    /// with lora_b's Q/K rows un-permuted (llama architecture); llama.cpp's scale `alpha / r` (r = lora_b ne[0]), or 1
    /// when alpha is 0, becomes the PEFT config (r, lora_alpha, and rank/alpha patterns for modules whose rank
    /// differs), so the adapter's products are llama.cpp's. F32/F16/BF16 tensors; anything else is refused.
    public static PeftAdapter read(Path file, LlamaConfig base) {
        try (GgufFile f = GgufFile.open(file)) {
            String where = "GGUF adapter " + file;
            GgufValue type = f.get("general.type");
            if (type == null || !type.asString("general.type").equals("adapter"))
                throw new ConfigException(where + " is not a LoRA adapter (general.type is " + (type == null ? "missing" : "'" + type.asString("t") + "'")
                        + "); a GGUF model goes in --model, an adapter file in --adapter");
            GgufValue kind = f.get("adapter.type");
            if (kind == null || !kind.asString("adapter.type").equals("lora"))
                throw new UnsupportedModelException(where + ": adapter.type is " + (kind == null ? "missing" : "'" + kind.asString("t") + "'")
                        + "; only LoRA adapters (adapter.type = lora) are supported");
            String arch = f.require("general.architecture").asString("general.architecture");
            boolean llama = !(base.architecture() instanceof Architecture.Qwen2);
            if (!arch.equals(llama ? "llama" : "qwen2"))
                throw new ConfigException(where + " is for architecture '" + arch + "', but the base model is " + (llama ? "llama" : "qwen2")
                        + "; use the adapter with the model it was trained on");
            float alpha = f.get("adapter.lora.alpha") == null ? 0f : (float) f.require("adapter.lora.alpha").asDouble("adapter.lora.alpha");
            Map<PeftAdapter.Target, LoraWeights> weights = new TreeMap<>();
            Map<String, Integer> ranks = new LinkedHashMap<>();
            for (String name : f.tensors().keySet()) {
                if (!name.endsWith(".weight.lora_a")) {
                    if (!name.endsWith(".weight.lora_b"))
                        throw new UnsupportedModelException(where + ": tensor '" + name + "' is not a LoRA pair (blk.N.<name>.weight.lora_a/lora_b);"
                                + " adapters of token embeddings or the output layer are not supported");
                    continue;
                }
                String stem = name.substring(0, name.length() - ".lora_a".length());   // blk.N.attn_q.weight
                String[] parts = stem.split("\\.");
                Projection p = null;
                for (Projection q : Projection.values()) if (parts.length == 4 && parts[0].equals("blk") && q.gguf.equals(parts[2])) p = q;
                if (p == null) throw new UnsupportedModelException(where + ": tensor '" + name + "' does not adapt one of the seven linear"
                        + " projections (blk.N.attn_q/attn_k/attn_v/attn_output/ffn_gate/ffn_up/ffn_down.weight)");
                int layer;
                try { layer = Integer.parseInt(parts[1]); } catch (NumberFormatException e) { throw new ConfigException(where + ": bad layer in '" + name + "'"); }
                if (f.tensors().get(stem + ".lora_b") == null) throw new ConfigException(where + ": '" + name + "' has no '" + stem + ".lora_b'");
                GgufTensor ta = f.info(name), tb = f.info(stem + ".lora_b");
                for (GgufTensor t : new GgufTensor[]{ta, tb})
                    if (t.type() != GgmlType.F32 && t.type() != GgmlType.F16 && t.type() != GgmlType.BF16)
                        throw new UnsupportedModelException(where + ": tensor '" + t.name() + "' has type " + t.type() + "; adapters are read as F32, F16 or BF16");
                int in = p.in(base), out = p.out(base);
                long[] na = ta.ne(), nb = tb.ne();
                if (na.length != 2 || nb.length != 2 || na[0] != in || nb[1] != out || na[1] != nb[0] || na[1] < 1)
                    throw new ConfigException(where + ": '" + stem + "' has lora_a ne " + java.util.Arrays.toString(na) + " and lora_b ne "
                            + java.util.Arrays.toString(nb) + "; for this model's " + p.module + " they must be [" + in + ", r] and [r, " + out + "]");
                int r = (int) na[1];
                float[] b = f.readFloats(tb.name());
                int heads = GgufNames.permutedHeads(p.weightName(layer), base, llama);
                if (heads != 0) b = GgufNames.permuteRows(b, heads, r, false);
                weights.put(new PeftAdapter.Target(layer, p.module), new LoraWeights(r, in, out, f.readFloats(ta.name()), b, null));
                ranks.put("model.layers." + layer + "." + p.path(), r);
            }
            if (weights.isEmpty()) throw new ConfigException(where + " holds no lora_a/lora_b tensors");
            int r = ranks.values().iterator().next();
            Map<String, Integer> rankPattern = new LinkedHashMap<>();
            Map<String, Double> alphaPattern = new LinkedHashMap<>();
            for (var e : ranks.entrySet()) {
                String key = java.util.regex.Pattern.quote(e.getKey());
                if (e.getValue() != r) rankPattern.put(key, e.getValue());
                if (alpha == 0f && e.getValue() != r) alphaPattern.put(key, (double) e.getValue());   // llama.cpp: alpha 0 → scale 1
            }
            List<String> targets = weights.keySet().stream().map(PeftAdapter.Target::module).distinct().sorted().toList();
            LoraConfig config = new LoraConfig(r, alpha == 0f ? r : alpha, 0.0, targets, false, false, LoraConfig.Init.KAIMING_UNIFORM,
                    "none", false, null, rankPattern, alphaPattern, null);
            return new PeftAdapter(config, null, null, weights);
        }
    }

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
