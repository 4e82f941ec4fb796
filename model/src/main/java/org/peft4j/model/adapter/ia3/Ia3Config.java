package org.peft4j.model.adapter.ia3;

import org.peft4j.core.Peft4jException.ConfigException;
import org.peft4j.model.llama.Projection;

import java.util.List;

/// An (IA)³ adapter's hyper-parameters with Hugging Face PEFT's meanings (`peft.IA3Config`): a learned vector scales
/// the output of each targeted linear layer, or its input when the layer is also a feed-forward module. Reference: PEFT
/// `tuners/ia3/config.py` and the Llama defaults of `utils/constants.py`
/// (TRANSFORMERS_MODELS_TO_IA3_TARGET_MODULES_MAPPING / ..._FEEDFORWARD_MODULES_MAPPING).
///
/// @param targetModules      module names matched as PEFT's list rule (`N == T` or `N` ends with `"." + T`)
/// @param feedforwardModules the targets whose input is scaled (a subset of `targetModules`, as PEFT requires)
/// @param initIa3Weights     true: vectors start at 1 (the base model); false: PEFT's torch.randn (tests only)
public record Ia3Config(List<String> targetModules, List<String> feedforwardModules, boolean initIa3Weights) {
    /// PEFT's defaults for llama, mistral and qwen2.
    public static final List<String> DEFAULT_TARGETS = List.of("k_proj", "v_proj", "down_proj");
    public static final List<String> DEFAULT_FEEDFORWARD = List.of("down_proj");

    public Ia3Config {
        if (targetModules == null || targetModules.isEmpty())
            throw new ConfigException("IA3 target_modules is empty; name the layers to scale, e.g. [k_proj, v_proj, down_proj]");
        targetModules = List.copyOf(targetModules);
        feedforwardModules = feedforwardModules == null ? List.of() : List.copyOf(feedforwardModules);
        for (String t : targetModules)
            if (Projection.byName(t) == null)
                throw new ConfigException("IA3 target_modules entry '" + t + "' is not a Llama linear layer; use names among " + Projection.MODULE_NAMES);
        // PEFT IA3Config.__post_init__: "`feedforward_modules` should be a subset of `target_modules`"
        for (String f : feedforwardModules)
            if (!targetModules.contains(f))
                throw new ConfigException("IA3 feedforward_modules entry '" + f + "' is not in target_modules " + targetModules
                        + "; feedforward_modules must be a subset of target_modules (as in PEFT)");
    }

    /// PEFT's defaults: k_proj, v_proj, down_proj scaled, down_proj on its input; vectors start at 1.
    public static Ia3Config defaults() { return new Ia3Config(DEFAULT_TARGETS, DEFAULT_FEEDFORWARD, true); }

    /// Whether `module` (a dotted path or a bare name) is targeted.
    public boolean targets(String module) { return matches(targetModules, module); }

    /// Whether `module` is a feed-forward module (its input is scaled, vector shape (1, in)).
    public boolean feedforward(String module) { return matches(feedforwardModules, module); }

    private static boolean matches(List<String> names, String module) {
        for (String t : names) if (module.equals(t) || module.endsWith("." + t)) return true;
        return false;
    }
}
