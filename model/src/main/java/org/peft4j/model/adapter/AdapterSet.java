package org.peft4j.model.adapter;

import org.peft4j.model.llama.Projection;
import org.peft4j.core.Gemm;
import org.peft4j.core.Peft4jException.ConfigException;
import org.peft4j.model.llama.LayerTensor;
import org.peft4j.model.llama.LlamaWeights;
import org.peft4j.model.adapter.ia3.Ia3Linear;
import org.peft4j.model.adapter.lora.DoraLinear;
import org.peft4j.model.adapter.lora.LoraLinear;
import org.peft4j.model.adapter.lora.LoraWeights;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/// The adapters registered by name over one base model's weights, and merging: [#merge] / [#unmerge] write
/// W0 + s·B·A (DoRA: g·(W0 + s·B·A)) into the base arrays in place; [#mergedCopy] leaves them alone.
/// Unmerged use needs no registration: a [LoadedAdapter] is a value passed per row to the decoder's forward.
/// Math: [LoraLinear], [DoraLinear]; reference PEFT `tuners/lora/layer.py`, `dora.py` (specs §2.3, §2.4).
public final class AdapterSet {
    private static final int P = Projection.values().length;

    private final LlamaWeights base;
    private final Gemm gemm;
    private final Map<String, Entry> entries = new LinkedHashMap<>();
    private Merged merged;              // the adapter written into the base weights, or null

    private static final class Entry {
        final LoadedAdapter adapter;
        Entry(LoadedAdapter adapter) { this.adapter = adapter; }
    }

    /// An adapter merged in place, with what unmerging needs. factor: (L)(7)(out) DoRA's m/‖V‖, null for LoRA modules.
    private record Merged(LoadedAdapter adapter, float[][][] factor) {}

    public AdapterSet(LlamaWeights base, Gemm gemm) { this.base = base; this.gemm = gemm; }

    // ---------------------------------------------------------------- registry

    /// Reads the PEFT adapter in `dir`, checks it against the base config, and registers it as `name`.
    public LoadedAdapter load(String name, Path dir) {
        LoadedAdapter a = LoadedAdapter.read(name, dir, base.config);
        register(a);
        return a;
    }

    /// Registers an adapter checked against this base's config; grows the scratch for it to the rows planned so far.
    public void register(LoadedAdapter a) {
        if (!a.base.equals(base.config))
            throw new ConfigException(a + " was checked against a different base config; load it with this model's config");
        if (entries.containsKey(a.name))
            throw new ConfigException("an adapter named '" + a.name + "' is already registered (" + entries.get(a.name).adapter.source + "); pick another name or remove it first");
        entries.put(a.name, new Entry(a));
    }

    /// Unregisters `name`; it must be neither active nor merged.
    public void remove(String name) {
        Entry e = entry(name);
        if (merged != null && merged.adapter == e.adapter) throw new ConfigException("adapter '" + name + "' is merged into the base weights; unmerge it before removing it");
        entries.remove(name);
    }

    public LoadedAdapter get(String name) { return entry(name).adapter; }

    /// Registered names, in registration order.
    public List<String> names() { return new ArrayList<>(entries.keySet()); }

    // ---------------------------------------------------------------- merged use

    /// Writes adapter `name` into the base weights in place: W ← W + s·B·A (DoRA: W ← g·(W + s·B·A)).
    /// **This mutates the base arrays**, which every model sharing this `LlamaWeights` sees. The active adapter is
    /// switched off (the model now computes the merged adapter); [#unmerge] restores the base within float rounding.
    public void merge(String name) {
        Entry e = entry(name);
        requireMergeable(e.adapter);
        if (merged != null)
            throw new ConfigException("adapter '" + merged.adapter.name + "' is already merged; unmerge() it before merging '" + name + "'");
        merged = new Merged(e.adapter, mergeInto(gemm, base, e.adapter));
    }

    /// Subtracts the merged adapter from the base weights again (DoRA: divides by its factor first), restoring them
    /// within float rounding.
    public void unmerge() {
        if (merged == null) throw new ConfigException("no adapter is merged; nothing to unmerge");
        LoadedAdapter a = merged.adapter;
        if (a.ia3 != null) forEachIa3(base, a, (W, bias, v, ff, out, in) -> Ia3Linear.unmerge(W, bias, v, ff, out, in));
        for (LoadedAdapter.Module m : a.modules()) {
            LoraWeights w = m.weights();
            float[] W = base.layers.get(m.layer()).get(m.projection().weight);
            if (w.magnitude() == null) LoraLinear.unmerge(gemm, W, w.a(), w.b(), m.scaling(), w.out(), w.in(), w.r());
            else DoraLinear.unmerge(gemm, W, merged.factor[m.layer()][m.projection().ordinal()], w.a(), w.b(), m.scaling(), w.out(), w.in(), w.r());
        }
        merged = null;
    }

    /// The name of the adapter merged into the base weights, or null.
    public String merged() { return merged == null ? null : merged.adapter.name; }

    /// New weights with `adapter` merged, for export; `weights` is not modified. The adapted matrices are fresh
    /// copies; every other array (embeddings, norms, unadapted layers) is shared with `weights`.
    public static LlamaWeights mergedCopy(Gemm gemm, LlamaWeights weights, LoadedAdapter adapter) {
        if (!adapter.base.equals(weights.config)) throw new ConfigException(adapter + " was checked against a different base config than these weights");
        requireMergeable(adapter);
        List<LlamaWeights.Layer> layers = new ArrayList<>();
        for (int l = 0; l < weights.layers.size(); l++) {
            LlamaWeights.Layer src = weights.layers.get(l);
            int layer = l;
            layers.add(LlamaWeights.Layer.of(t -> copyIfAdapted(src.get(t), t, adapter, layer)));
        }
        LlamaWeights out = new LlamaWeights(weights.config, weights.embedTokens, weights.norm, weights.lmHead, layers);
        mergeInto(gemm, out, adapter);
        return out;
    }

    // ---------------------------------------------------------------- internals

    private static float[] copyIfAdapted(float[] x, LayerTensor t, LoadedAdapter a, int layer) {
        for (Projection p : Projection.values()) {
            if (p.weight == t && (a.module(layer, p) != null || a.ia3(layer, p) != null)) return x.clone();
            if (x != null && p.bias == t && a.ia3(layer, p) != null && !a.ia3Feedforward(layer, p)) return x.clone();
        }
        return x;
    }

    private interface Ia3Op { void apply(float[] W, float[] bias, float[] v, boolean feedforward, int out, int in); }

    /// Runs `op` on every (IA)³-scaled projection's float32 weight and bias; a base held in 16 or 4 bits is refused.
    private static void forEachIa3(LlamaWeights weights, LoadedAdapter a, Ia3Op op) {
        for (int l = 0; l < weights.layers.size(); l++)
            for (Projection p : Projection.values()) {
                float[] v = a.ia3(l, p);
                if (v == null) continue;
                LlamaWeights.Layer w = weights.layers.get(l);
                float[] W = p.weight(w);
                if (W == null)
                    throw new ConfigException(a + ": merging needs the float32 base weight of layer " + l + " " + p.module + ", which this base holds quantized or in 16 bits; load the model in float32");
                op.apply(W, p.bias(w), v, a.ia3Feedforward(l, p), p.out(weights.config), p.in(weights.config));
            }
    }

    /// W ← W + s·B·A per adapted module (DoRA: W ← g·(W + s·B·A)); returns DoRA's factors g for unmerging.
    private static float[][][] mergeInto(Gemm gemm, LlamaWeights weights, LoadedAdapter a) {
        float[][][] factor = new float[weights.layers.size()][P][];
        if (a.ia3 != null) forEachIa3(weights, a, Ia3Linear::merge);   // PEFT ia3 Linear.merge: W ⊙ l (bias ⊙ l on outputs)
        for (LoadedAdapter.Module m : a.modules()) {
            LoraWeights w = m.weights();
            float[] W = weights.layers.get(m.layer()).get(m.projection().weight);
            if (w.magnitude() == null) {
                LoraLinear.merge(gemm, W, w.a(), w.b(), m.scaling(), w.out(), w.in(), w.r());
            } else {
                float[] f = factor[m.layer()][m.projection().ordinal()] = new float[w.out()];
                DoraLinear.merge(gemm, W, f, w.a(), w.b(), w.magnitude(), m.scaling(), w.out(), w.in(), w.r());
            }
        }
        return factor;
    }

    /// Prompt and prefix tuning add virtual tokens, not weights: nothing can be merged (PEFT has no merge for prompt
    /// learning).
    private static void requireMergeable(LoadedAdapter a) {
        if (a.prompt != null || a.prefix != null)
            throw new ConfigException(a + " is a " + (a.prompt != null ? "prompt" : "prefix") + "-tuning adapter: it adds virtual tokens to each input, "
                    + "not weights, so it cannot be merged into the model; use it unmerged (--adapter with generate, chat, serve or eval)");
    }

    private Entry entry(String name) {
        Entry e = entries.get(name);
        if (e == null) throw new ConfigException("no adapter named '" + name + "' is registered; registered: " + entries.keySet());
        return e;
    }
}
