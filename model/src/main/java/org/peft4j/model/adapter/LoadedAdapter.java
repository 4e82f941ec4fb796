package org.peft4j.model.adapter;

import org.peft4j.model.llama.Projection;
import org.peft4j.core.Peft4jException.ConfigException;
import org.peft4j.model.LlamaConfig;
import org.peft4j.model.llama.LlamaWeights;
import org.peft4j.model.adapter.lora.LoraWeights;
import org.peft4j.model.adapter.lora.PeftAdapter;
import org.peft4j.model.adapter.ia3.Ia3Adapter;
import org.peft4j.model.adapter.prefix.PrefixAdapter;
import org.peft4j.model.adapter.prompt.PromptAdapter;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.List;

/// A PEFT adapter (LoRA/DoRA; or (IA)³, [#ia3]; or prompt tuning, [#prompt]) read from a directory and checked against one base model's config: target module names,
/// layer indices, and every tensor's in/out sizes. Immutable; the state of using it (which adapter is active, DoRA's
/// weight norms, scratch buffers, merging) is [AdapterSet]'s. File format and math: [PeftAdapter], specs §2.
public final class LoadedAdapter {
    /// One adapted linear layer: A (r, in), B (out, r), DoRA magnitude (out) or null; `scaling` after rank/alpha patterns.
    public record Module(int layer, Projection projection, LoraWeights weights, float scaling) {}

    /// The name it is registered and selected under.
    public final String name;
    /// Where it came from (its directory), for messages.
    public final String source;
    /// The config and tensors as read (LoRA/DoRA), or null for an (IA)³ adapter.
    public final PeftAdapter peft;
    /// The (IA)³ config and vectors as read, or null for a LoRA adapter.
    public final Ia3Adapter ia3;
    /// The prompt-tuning embeddings as read, or null: then rows with this adapter start with its virtual tokens.
    public final PromptAdapter prompt;
    /// The prefix-tuning key/value prefixes as read, or null: then rows with this adapter start with n placeholder
    /// positions whose keys and values, at every layer, are the prefix's ([PrefixAdapter]).
    public final PrefixAdapter prefix;
    private final float[][][] ia3Vectors;   // (L)(7)(out or in) (IA)³ scaling vectors; null where not scaled, or LoRA
    private final boolean[][] ia3Feedforward; // (L)(7) whether the vector scales the input
    /// The base model's config it was checked against.
    public final LlamaConfig base;
    private final Module[][] modules;   // (L)(7) by Projection ordinal; null where not adapted
    private final List<Module> list;    // the non-null ones, by layer then projection
    private final int maxRank, maxOut;

    private LoadedAdapter(String name, String source, PeftAdapter peft, LlamaConfig base, Module[][] modules) {
        this(name, source, peft, null, null, null, base, modules, null, null);
    }

    private LoadedAdapter(String name, String source, PeftAdapter peft, Ia3Adapter ia3, PromptAdapter prompt, PrefixAdapter prefix,
                          LlamaConfig base, Module[][] modules, float[][][] ia3Vectors, boolean[][] ia3Feedforward) {
        this.name = name; this.source = source; this.peft = peft; this.ia3 = ia3; this.prompt = prompt; this.prefix = prefix;
        this.base = base; this.modules = modules;
        this.ia3Vectors = ia3Vectors; this.ia3Feedforward = ia3Feedforward;
        List<Module> l = new ArrayList<>();
        for (Module[] layer : modules) for (Module m : layer) if (m != null) l.add(m);
        this.list = Collections.unmodifiableList(l);
        this.maxRank = l.stream().mapToInt(m -> m.weights().r()).max().orElse(0);
        this.maxOut = l.stream().mapToInt(m -> m.weights().out()).max().orElse(0);
    }

    /// Reads `dir` ([PeftAdapter#read], or [Ia3Adapter#read] when its peft_type is IA3) and checks it against `base`.
    public static LoadedAdapter read(String name, Path dir, LlamaConfig base) {
        if (org.peft4j.model.gguf.GgufModel.isGguf(dir))   // llama.cpp's GGUF LoRA adapter file
            return of(name, dir.toString(), org.peft4j.model.gguf.GgufAdapter.read(dir, base), base);
        if (Ia3Adapter.isIa3(dir)) return of(name, dir.toString(), Ia3Adapter.read(dir), base);
        if (PromptAdapter.isPromptTuning(dir)) return of(name, dir.toString(), PromptAdapter.read(dir), base);
        if (PrefixAdapter.isPrefixTuning(dir)) return of(name, dir.toString(), PrefixAdapter.read(dir), base);
        if (org.peft4j.model.adapter.ptuning.PTuningAdapter.isPTuning(dir))   // P-tuning's file holds the encoder's output: prompt tuning's inference
            return of(name, dir.toString(), org.peft4j.model.adapter.ptuning.PTuningAdapter.read(dir).asPrompt(), base);
        return of(name, dir.toString(), PeftAdapter.read(dir), base);
    }

    /// Checks an (IA)³ adapter against `base`: layer indices, each vector's length (out, or in on a feed-forward
    /// module), finite values, and every targeted module present.
    public static LoadedAdapter of(String name, String source, Ia3Adapter ia3, LlamaConfig base) {
        if (name == null || name.isBlank()) throw new ConfigException("adapter " + source + " needs a non-empty name to be registered under");
        int L = base.numHiddenLayers(), P = Projection.values().length;
        float[][][] vec = new float[L][P][];
        boolean[][] ff = new boolean[L][P];
        for (var e : ia3.vectors().entrySet()) {
            PeftAdapter.Target t = e.getKey();
            Projection p = Projection.of(t.module());
            String key = t.key(Ia3Adapter.SUFFIX);
            if (t.layer() >= L)
                throw new ConfigException("adapter " + source + ": tensor '" + key + "' is for layer " + t.layer() + ", this "
                        + base.architecture().modelType() + " model has " + L + " layers; load it on the base model it was trained for"
                        + (ia3.baseModelNameOrPath() == null ? "" : " (its base_model_name_or_path: " + ia3.baseModelNameOrPath() + ")"));
            boolean f = ia3.config().feedforward(t.path());
            int want = f ? p.in(base) : p.out(base);
            if (e.getValue().length != want)
                throw new ConfigException("adapter " + source + ": tensor '" + key + "' has " + e.getValue().length + " values, expected "
                        + want + " (the " + (f ? p.inName() : p.outName()) + " of this model); load it on the base model it was trained for");
            requireFinite(source, key, e.getValue());
            vec[t.layer()][p.ordinal()] = e.getValue();
            ff[t.layer()][p.ordinal()] = f;
        }
        for (int l = 0; l < L; l++)
            for (Projection p : Projection.values())
                if (vec[l][p.ordinal()] == null && ia3.config().targets(p.module))
                    throw new ConfigException("adapter " + source + ": tensor '" + new PeftAdapter.Target(l, p.module).key(Ia3Adapter.SUFFIX)
                            + "' is missing although target_modules includes " + p.module + "; the adapter file is incomplete or was trained for a model with fewer layers");
        return new LoadedAdapter(name, source, null, ia3, null, null, base, new Module[L][P], vec, ff);
    }

    /// Checks a prompt-tuning adapter against `base`: token_dim is the hidden size, values finite.
    public static LoadedAdapter of(String name, String source, PromptAdapter prompt, LlamaConfig base) {
        if (name == null || name.isBlank()) throw new ConfigException("adapter " + source + " needs a non-empty name to be registered under");
        if (prompt.tokenDim() != base.hiddenSize())
            throw new ConfigException("adapter " + source + ": prompt_embeddings are " + prompt.tokenDim() + " wide (token_dim), this "
                    + base.architecture().modelType() + " model's hidden size is " + base.hiddenSize() + "; load it on the base model it was trained for"
                    + (prompt.baseModelNameOrPath() == null ? "" : " (its base_model_name_or_path: " + prompt.baseModelNameOrPath() + ")"));
        requireFinite(source, PromptAdapter.TENSOR, prompt.embeddings());
        return new LoadedAdapter(name, source, null, null, prompt, null, base, new Module[base.numHiddenLayers()][Projection.values().length], null, null);
    }

    /// Checks a prefix-tuning adapter against `base`: one key and one value per KV head at every layer, as PEFT sizes
    /// the prefix for a grouped-query model (num_attention_heads = num_key_value_heads, token_dim = their width).
    public static LoadedAdapter of(String name, String source, PrefixAdapter prefix, LlamaConfig base) {
        if (name == null || name.isBlank()) throw new ConfigException("adapter " + source + " needs a non-empty name to be registered under");
        String model = "this " + base.architecture().modelType() + " model";
        String hint = "; load it on the base model it was trained for"
                + (prefix.baseModelNameOrPath() == null ? "" : " (its base_model_name_or_path: " + prefix.baseModelNameOrPath() + ")");
        if (prefix.numLayers() != base.numHiddenLayers())
            throw new ConfigException("adapter " + source + ": the prefix is for num_layers " + prefix.numLayers() + ", " + model + " has "
                    + base.numHiddenLayers() + hint);
        if (prefix.numAttentionHeads() != base.numKeyValueHeads() || prefix.tokenDim() != base.kvDim())
            throw new ConfigException("adapter " + source + ": the prefix has num_attention_heads " + prefix.numAttentionHeads() + " and token_dim "
                    + prefix.tokenDim() + ", " + model + " has " + base.numKeyValueHeads() + " key/value heads of " + base.headDim()
                    + " (PEFT sizes the prefix per KV head: token_dim " + base.kvDim() + ")" + hint);
        requireFinite(source, PrefixAdapter.TENSOR, prefix.embeddings());
        return new LoadedAdapter(name, source, null, null, null, prefix, base, new Module[base.numHiddenLayers()][Projection.values().length], null, null);
    }

    /// Virtual tokens every row with this adapter starts with (prompt or prefix tuning), else 0.
    public int virtualTokens() { return prompt != null ? prompt.numVirtualTokens() : prefix != null ? prefix.numVirtualTokens() : 0; }

    /// The (IA)³ vector of (layer, p), or null (not scaled there, or a LoRA adapter).
    public float[] ia3(int layer, Projection p) { return ia3Vectors == null ? null : ia3Vectors[layer][p.ordinal()]; }

    /// Whether the (IA)³ vector of (layer, p) scales the input (a feed-forward module) rather than the output.
    public boolean ia3Feedforward(int layer, Projection p) { return ia3Feedforward != null && ia3Feedforward[layer][p.ordinal()]; }

    /// Checks an adapter already in memory against `base`; `source` names it in messages.
    /// An adapter with a NaN or infinite value (a diverged run) would make every answer empty: refuse it, naming the tensor.
    private static void requireFinite(String source, String tensor, float[] v) {
        for (int i = 0; i < v.length; i++)
            if (!Float.isFinite(v[i]))
                throw new ConfigException("adapter " + source + ": tensor '" + tensor + "' holds " + v[i] + " at index " + i
                        + "; the adapter is broken (a diverged training run?): retrain it or use an earlier checkpoint");
    }

    public static LoadedAdapter of(String name, String source, PeftAdapter peft, LlamaConfig base) {
        if (name == null || name.isBlank()) throw new ConfigException("adapter " + source + " needs a non-empty name to be registered under");
        int L = base.numHiddenLayers();
        String model = "this " + base.architecture().modelType() + " model";
        if (peft.weights().isEmpty()) throw new ConfigException("adapter " + source + " holds no LoRA tensors; its adapter_model.safetensors is empty");

        Module[][] modules = new Module[L][Projection.values().length];
        int adapterLayers = 0;
        for (var e : peft.weights().entrySet()) {
            PeftAdapter.Target t = e.getKey();
            LoraWeights w = e.getValue();
            adapterLayers = Math.max(adapterLayers, t.layer() + 1);
            Projection p = Projection.of(t.module());
            if (t.layer() >= L)
                throw new ConfigException("adapter " + source + ": tensor '" + t.key(PeftAdapter.A) + "' is for layer " + t.layer()
                        + ": the adapter was trained for a model with at least " + (t.layer() + 1) + " layers, " + model
                        + " has " + L + "; load it on the base model it was trained for" + trainedOn(peft));
            if (w.in() != p.in(base))
                throw new ConfigException("adapter " + source + ": tensor '" + t.key(PeftAdapter.A) + "' has shape [" + w.r() + ", " + w.in()
                        + "], expected [" + w.r() + ", " + p.in(base) + "]: the adapter was trained for " + p.inName() + " " + w.in()
                        + ", the model has " + p.in(base) + "; load it on the base model it was trained for" + trainedOn(peft));
            if (w.out() != p.out(base))
                throw new ConfigException("adapter " + source + ": tensor '" + t.key(PeftAdapter.B) + "' has shape [" + w.out() + ", " + w.r()
                        + "], expected [" + p.out(base) + ", " + w.r() + "]: the adapter was trained for " + p.outName() + " " + w.out()
                        + ", the model has " + p.out(base) + "; load it on the base model it was trained for" + trainedOn(peft));
            if (!peft.config().targets(t.path()) || !peft.config().transformsLayer(t.layer()))
                throw new ConfigException("adapter " + source + ": tensor '" + t.key(PeftAdapter.A) + "' adapts " + t.path()
                        + ", which adapter_config.json does not target (target_modules " + peft.config().targetModules()
                        + ", layers_to_transform " + peft.config().layersToTransform() + "); the two files do not belong together");
            requireFinite(source, t.key(PeftAdapter.A), w.a());
            requireFinite(source, t.key(PeftAdapter.B), w.b());
            if (w.magnitude() != null) requireFinite(source, t.path() + ".lora_magnitude_vector", w.magnitude());
            modules[t.layer()][p.ordinal()] = new Module(t.layer(), p, w, (float) peft.config().scaling(t.path()));
        }
        for (String t : peft.config().targetModules()) {
            boolean any = false;
            for (int l = 0; l < L && !any; l++)     // PEFT's list rule: N == T or N ends with "." + T
                for (Projection p : Projection.values()) {
                    String path = new PeftAdapter.Target(l, p.module).path();
                    if (path.equals(t) || path.endsWith("." + t)) any = true;
                }
            if (!any) throw new ConfigException("adapter " + source + ": target_modules entry '" + t + "' names no linear layer of " + model
                    + "; Llama layers are " + Arrays.stream(Projection.values()).map(p -> p.module).toList() + ": the adapter was trained for another architecture");
        }
        for (int l = 0; l < L; l++)
            for (Projection p : Projection.values()) {
                PeftAdapter.Target t = new PeftAdapter.Target(l, p.module);
                if (modules[l][p.ordinal()] == null && peft.config().targets(t.path()) && peft.config().transformsLayer(l))
                    throw new ConfigException("adapter " + source + ": tensor '" + t.key(PeftAdapter.A) + "' is missing although target_modules includes "
                            + p.module + (l >= adapterLayers ? ": the adapter has layers 0.." + (adapterLayers - 1) + " only, so it was trained for a model with "
                            + adapterLayers + " layers, " + model + " has " + L + "; load it on the base model it was trained for" + trainedOn(peft)
                            : "; the adapter file is incomplete"));
            }
        return new LoadedAdapter(name, source, peft, base, modules);
    }

    private static String trainedOn(PeftAdapter peft) {
        return peft.baseModelNameOrPath() == null ? "" : " (its base_model_name_or_path: " + peft.baseModelNameOrPath() + ")";
    }

    /// The adapter of one linear layer, or null when that layer is not adapted.
    public Module module(int layer, Projection p) { return modules[layer][p.ordinal()]; }

    /// Every adapted layer, by layer then projection.
    public List<Module> modules() { return list; }

    /// Whether it is DoRA (a magnitude vector per module).
    public boolean dora() { return peft != null && peft.config().useDora(); }

    /// The largest r over its modules: the width of the h = x·Aᵀ scratch.
    public int maxRank() { return maxRank; }

    /// The largest out size over its modules: the width of DoRA's u scratch.
    public int maxOut() { return maxOut; }

    /// LoRA dropout probability (applied to this adapter's input only in a training forward).
    public float dropout() { return peft == null ? 0f : (float) peft.config().loraDropout(); }

    // DoRA: ‖W0 + s·B·A‖ per output row of every module, (L)(7)(out); null until first used.
    private float[][][] doraNorm;

    /// DoRA's weight norm ‖W0 + s·B·A‖ per output row of (layer, p), computed over `base` for all modules on first
    /// use and then kept: PEFT treats it as a constant (detached) for fixed A and B. A trained adapter changes A and
    /// B every step: call [#refreshDoraNorms] before each forward. `base` must hold float32 weights for the
    /// adapted projections (DoRA over a 16-bit or 4-bit base is refused).
    public float[] doraNorm(int layer, Projection p, LlamaWeights base) {
        if (doraNorm == null) {
            synchronized (this) { if (doraNorm == null) refreshDoraNorms(base); }
        }
        return doraNorm[layer][p.ordinal()];
    }

    /// Recomputes every module's DoRA weight norm from the current A, B and `base`'s float32 weights.
    public synchronized void refreshDoraNorms(LlamaWeights base) {
        float[][][] n = doraNorm != null ? doraNorm : new float[modules.length][Projection.values().length][];
        for (Module m : list) {
            LoraWeights w = m.weights();
            if (w.magnitude() == null) continue;
            float[] w0 = base.layers.get(m.layer()).get(m.projection().weight);
            if (w0 == null)
                throw new ConfigException(this + ": DoRA needs the float32 base weight of layer " + m.layer() + " " + m.projection().module
                        + ", but this base holds it quantized or in 16 bits; load the model in float32 or use a plain LoRA adapter");
            float[] dst = n[m.layer()][m.projection().ordinal()];
            if (dst == null) dst = n[m.layer()][m.projection().ordinal()] = new float[w.out()];
            org.peft4j.model.adapter.lora.DoraLinear.weightNorm(dst, w0, w.a(), w.b(), m.scaling(), w.out(), w.in(), w.r());
        }
        doraNorm = n;
    }

    @Override public String toString() {
        if (ia3 != null) return "adapter '" + name + "' (" + source + ", IA3 on " + ia3.vectors().size() + " modules)";
        if (prompt != null) return "adapter '" + name + "' (" + source + ", prompt tuning, " + prompt.numVirtualTokens() + " virtual tokens)";
        if (prefix != null) return "adapter '" + name + "' (" + source + ", prefix tuning, " + prefix.numVirtualTokens() + " virtual tokens)";
        return "adapter '" + name + "' (" + source + ", " + list.size() + " modules, r ≤ " + maxRank + (dora() ? ", DoRA" : "") + ")";
    }
}
