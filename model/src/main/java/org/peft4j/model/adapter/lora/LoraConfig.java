package org.peft4j.model.adapter.lora;

import org.peft4j.core.Peft4jException.ConfigException;
import org.peft4j.model.llama.Projection;

import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.regex.Pattern;

/// A LoRA adapter's hyper-parameters, with Hugging Face PEFT's meanings (`peft.LoraConfig`, specs §2.1, §2.3).
/// Only what peft4j can train and load is representable: bias "none", no fan-in-fan-out, no modules_to_save.
/// The mapping to PEFT's snake_case JSON keys lives in [PeftAdapter].
///
/// @param r                 rank (per-module overrides in `rankPattern`)
/// @param loraAlpha         scaling numerator (per-module overrides in `alphaPattern`)
/// @param loraDropout       dropout probability on the input of lora_A, in [0, 1)
/// @param targetModules     module names matched as PEFT does (`N == T` or `N` ends with `"." + T`), e.g. q_proj
/// @param useRslora         scaling alpha/sqrt(r) instead of alpha/r
/// @param useDora           DoRA: a trained magnitude vector per output row (specs §2.4)
/// @param initLoraWeights   how A and B start ([Init])
/// @param bias              which biases are trained; only "none"
/// @param fanInFanOut       GPT-2 Conv1D weights stored (in, out); only false
/// @param modulesToSave     fully trained extra modules; only null or empty
/// @param rankPattern       module-name pattern → r (PEFT `rank_pattern`)
/// @param alphaPattern      module-name pattern → alpha (PEFT `alpha_pattern`)
/// @param layersToTransform layer indices that get adapters, or null for all
/// @param pissaNiter        with [Init#PISSA]: power iterations of the fast SVD (PEFT `"pissa_niter_N"`), or −1 for
///                          the exact SVD (`"pissa"`); always −1 for the other inits
public record LoraConfig(int r, double loraAlpha, double loraDropout, List<String> targetModules,
                         boolean useRslora, boolean useDora, Init initLoraWeights,
                         String bias, boolean fanInFanOut, List<String> modulesToSave,
                         Map<String, Integer> rankPattern, Map<String, Double> alphaPattern,
                         List<Integer> layersToTransform, int pissaNiter) {

    /// Every linear layer of a Llama block: what LLaMA-Factory's `lora_target: all` and PEFT's "all-linear" mean
    /// (lm_head excluded).
    public static final List<String> ALL_LINEAR = Projection.MODULE_NAMES;

    /// PEFT's `init_lora_weights`. OLoRA, LoftQ, EVA, CorDA and orthogonal init are not supported.
    public enum Init {
        /// `true` (PEFT's default): A ~ kaiming_uniform(a = √5), i.e. U(−1/√in, 1/√in); B = 0.
        KAIMING_UNIFORM,
        /// `"gaussian"`: A ~ N(0, (1/r)²); B = 0.
        GAUSSIAN,
        /// `false`: no LoRA init, A and B keep nn.Linear's default U(−1/√fan_in, 1/√fan_in); for tests and debugging.
        NO_INIT,
        /// `"pissa"` / `"pissa_niter_N"`: A, B from the top-r SVD of the base weight, which becomes the residual
        /// W − s·B·A ([Pissa]); the adapter then only fits that residual base (see [Pissa#convert]).
        PISSA;

        /// The JSON value PEFT writes: `true`, `false`, `"gaussian"` or (exact SVD) `"pissa"`; for the fast SVD's
        /// `"pissa_niter_N"` use [LoraConfig#initPeftValue].
        public Object peftValue() {
            return switch (this) {
                case KAIMING_UNIFORM -> Boolean.TRUE;
                case NO_INIT -> Boolean.FALSE;
                case GAUSSIAN -> "gaussian";
                case PISSA -> "pissa";
            };
        }
    }

    public LoraConfig {
        if (r <= 0) throw new ConfigException("LoRA r = " + r + " must be a positive rank (typically 8..64)");
        if (!(loraAlpha > 0)) throw new ConfigException("lora_alpha = " + loraAlpha + " must be positive (typically 2·r)");
        if (!(loraDropout >= 0 && loraDropout < 1))
            throw new ConfigException("lora_dropout = " + loraDropout + " must be in [0, 1) (typically 0 or 0.05)");
        if (targetModules == null || targetModules.isEmpty())
            throw new ConfigException("target_modules is empty; name the layers to adapt, e.g. [q_proj, v_proj], or 'all'");
        targetModules = List.copyOf(targetModules);
        if (initLoraWeights == null) throw new ConfigException("init_lora_weights is missing; use true, false or \"gaussian\"");
        if (!"none".equals(bias))
            throw new ConfigException("bias = '" + bias + "' is not supported: peft4j trains and saves LoRA weights only; use bias 'none'");
        if (fanInFanOut)
            throw new ConfigException("fan_in_fan_out = true is for GPT-2 Conv1D (in, out) weights; Llama-family Linear weights are (out, in), use false");
        if (modulesToSave != null && !modulesToSave.isEmpty())
            throw new ConfigException("modules_to_save = " + modulesToSave + " is not supported yet; train LoRA on the linear layers only");
        modulesToSave = null;
        // insertion order kept: PEFT takes the first matching key in the JSON's order
        rankPattern = rankPattern == null ? Map.of() : Collections.unmodifiableMap(new LinkedHashMap<>(rankPattern));
        alphaPattern = alphaPattern == null ? Map.of() : Collections.unmodifiableMap(new LinkedHashMap<>(alphaPattern));
        for (var e : rankPattern.entrySet())
            if (e.getValue() <= 0) throw new ConfigException("rank_pattern '" + e.getKey() + "' = " + e.getValue() + " must be a positive rank");
        for (var e : alphaPattern.entrySet())
            if (!(e.getValue() > 0)) throw new ConfigException("alpha_pattern '" + e.getKey() + "' = " + e.getValue() + " must be positive");
        layersToTransform = layersToTransform == null ? null : List.copyOf(layersToTransform);
        if (initLoraWeights != Init.PISSA) pissaNiter = -1;
        if (pissaNiter < -1) throw new ConfigException("pissa_iter = " + pissaNiter + " must be -1 (exact SVD) or >= 0 (fast SVD iterations, LLaMA-Factory default 16)");
    }

    /// Without PiSSA's iteration count (−1): the 13 fields every init but `"pissa_niter_N"` needs.
    public LoraConfig(int r, double loraAlpha, double loraDropout, List<String> targetModules,
                      boolean useRslora, boolean useDora, Init initLoraWeights,
                      String bias, boolean fanInFanOut, List<String> modulesToSave,
                      Map<String, Integer> rankPattern, Map<String, Double> alphaPattern,
                      List<Integer> layersToTransform) {
        this(r, loraAlpha, loraDropout, targetModules, useRslora, useDora, initLoraWeights, bias, fanInFanOut,
                modulesToSave, rankPattern, alphaPattern, layersToTransform, -1);
    }

    /// PEFT's `init_lora_weights` value: [Init#peftValue], or `"pissa_niter_N"` for PiSSA with the fast SVD.
    public Object initPeftValue() {
        return initLoraWeights == Init.PISSA && pissaNiter >= 0 ? "pissa_niter_" + pissaNiter : initLoraWeights.peftValue();
    }

    /// LLaMA-Factory's defaults for a rank and its targets: alpha = 2·r, no dropout, PEFT's Kaiming init.
    public static LoraConfig of(int r, List<String> targetModules) {
        return new LoraConfig(r, 2.0 * r, 0.0, targetModules, false, false, Init.KAIMING_UNIFORM,
                "none", false, null, Map.of(), Map.of(), null);
    }

    /// `"all"` (LLaMA-Factory) or `"all-linear"` (PEFT) → [#ALL_LINEAR]; anything else is returned as given.
    public static List<String> expandTargets(List<String> targets) {
        return targets.size() == 1 && (targets.getFirst().equals("all") || targets.getFirst().equals("all-linear"))
                ? ALL_LINEAR : targets;
    }

    /// s = alpha / r, or alpha / √r with rsLoRA (PEFT `update_layer`, specs §2.3).
    public double scaling() { return scaling(r, loraAlpha, useRslora); }

    /// The scaling of one module, after rank_pattern and alpha_pattern. `module` is its dotted path,
    /// e.g. "model.layers.3.self_attn.q_proj".
    public double scaling(String module) { return scaling(rank(module), alpha(module), useRslora); }

    /// r of one module: the first rank_pattern key K whose regex `(.*\.)?(K)$` matches it, else r.
    public int rank(String module) { return patternValue(rankPattern, module, r); }

    /// alpha of one module: the first alpha_pattern key K whose regex `(.*\.)?(K)$` matches it, else loraAlpha.
    public double alpha(String module) { return patternValue(alphaPattern, module, loraAlpha); }

    /// Whether `module` (a dotted path) gets an adapter: PEFT's list rule, `N == T` or `N` ends with `"." + T`.
    public boolean targets(String module) {
        for (String t : targetModules) if (module.equals(t) || module.endsWith("." + t)) return true;
        return false;
    }

    /// Whether layer `layer` gets adapters (layers_to_transform, null = all).
    public boolean transformsLayer(int layer) { return layersToTransform == null || layersToTransform.contains(layer); }

    private static double scaling(int r, double alpha, boolean rslora) {
        return rslora ? alpha / Math.sqrt(r) : alpha / r;
    }

    private static <V> V patternValue(Map<String, V> pattern, String module, V fallback) {
        // PEFT utils/other.py get_pattern_key: re.match(rf"(.*\.)?({key})$", module)
        for (var e : pattern.entrySet())
            if (Pattern.compile("(.*\\.)?(" + e.getKey() + ")").matcher(module).matches()) return e.getValue();
        return fallback;
    }
}
