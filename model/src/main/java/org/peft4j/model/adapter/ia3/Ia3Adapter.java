package org.peft4j.model.adapter.ia3;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import org.peft4j.core.DType;
import org.peft4j.core.Peft4jException.ConfigException;
import org.peft4j.core.Peft4jException.FormatException;
import org.peft4j.formats.json.PyJson;
import org.peft4j.formats.safetensors.SafeTensors;
import org.peft4j.formats.safetensors.TensorInfo;
import org.peft4j.model.adapter.lora.PeftAdapter;
import org.peft4j.model.adapter.lora.PeftAdapter.Target;
import org.peft4j.model.llama.Projection;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/// A Hugging Face PEFT (IA)³ adapter directory: `adapter_config.json` (peft_type "IA3") + `adapter_model.safetensors`
/// with one vector per targeted module, `base_model.model.model.layers.N.self_attn.k_proj.ia3_l`, shaped as PEFT's
/// `IA3Layer.update_layer` makes it: (out, 1), or (1, in) on a feed-forward module (what `get_peft_model_state_dict`
/// saves: the `ia3_` parameters with the adapter name removed). The math is [Ia3Linear].
///
/// @param vectors per (layer, module) scaling vector, flattened: (out) or, feed-forward, (in)
public record Ia3Adapter(Ia3Config config, String baseModelNameOrPath, String revision, Map<Target, float[]> vectors) {
    public static final String SUFFIX = "ia3_l";

    public Ia3Adapter {
        vectors = Collections.unmodifiableMap(new TreeMap<>(vectors));
        for (Target t : vectors.keySet())
            if (!config.targets(t.path()))
                throw new ConfigException(t.key(SUFFIX) + " scales " + t.module() + ", which target_modules " + config.targetModules() + " does not name");
    }

    /// Whether the adapter folder `dir` holds an IA3 adapter (its adapter_config.json says peft_type "IA3").
    public static boolean isIa3(Path dir) {
        Path f = dir.resolve(PeftAdapter.CONFIG_FILE);
        if (!Files.isRegularFile(f)) return false;
        JsonNode t = parse(f).get("peft_type");
        return t != null && "IA3".equals(t.asText());
    }

    // ---------------------------------------------------------------- read

    private static final Pattern KEY = Pattern.compile("base_model\\.model\\.model\\.layers\\.(\\d+)\\.(self_attn|mlp)\\.(\\w+)\\.ia3_l(?:\\.weight)?");

    /// Reads a PEFT IA3 adapter directory; a tensor other than a decoder layer's ia3_l, or one of another shape than
    /// PEFT's, is a FormatException naming it.
    public static Ia3Adapter read(Path dir) {
        Path configFile = dir.resolve(PeftAdapter.CONFIG_FILE), weightsFile = dir.resolve(PeftAdapter.WEIGHTS_FILE);
        if (!Files.exists(configFile)) throw new ConfigException(configFile + " does not exist; is " + dir + " a PEFT adapter directory?");
        if (!Files.exists(weightsFile)) throw new FormatException(weightsFile + " does not exist");
        JsonNode root = parse(configFile);
        Ia3Config config;
        try {
            if (!"IA3".equals(text(root, "peft_type"))) throw new ConfigException("peft_type is " + root.get("peft_type") + ", expected \"IA3\"");
            if (root.path("fan_in_fan_out").asBoolean(false))
                throw new ConfigException("fan_in_fan_out = true is for GPT-2 Conv1D weights; Llama-family weights are (out, in)");
            JsonNode mts = root.get("modules_to_save");
            if (mts != null && !mts.isNull() && !mts.isEmpty()) throw new ConfigException("modules_to_save = " + mts + " is not supported");
            List<String> targets = names(root.get("target_modules"), "target_modules", Ia3Config.DEFAULT_TARGETS);
            List<String> ff = names(root.get("feedforward_modules"), "feedforward_modules", Ia3Config.DEFAULT_FEEDFORWARD);
            JsonNode init = root.get("init_ia3_weights");
            config = new Ia3Config(targets, ff, init == null || init.isNull() || init.asBoolean(true));
        } catch (ConfigException e) {
            throw new ConfigException(configFile + ": " + e.getMessage(), e);
        }
        Map<Target, float[]> vectors = new TreeMap<>();
        try (SafeTensors st = SafeTensors.open(weightsFile)) {
            for (TensorInfo info : st.tensors().values()) {
                Matcher m = KEY.matcher(info.name());
                if (!m.matches())
                    throw new FormatException(weightsFile + ": tensor '" + info.name() + "' is not a decoder layer's ia3_l vector; peft4j loads IA3 vectors on linear layers only");
                Target t;
                try { t = new Target(Integer.parseInt(m.group(1)), m.group(3)); }
                catch (ConfigException e) { throw new FormatException(weightsFile + ": tensor '" + info.name() + "': " + e.getMessage()); }
                if (!Projection.of(t.module()).parent.equals(m.group(2)))
                    throw new FormatException(weightsFile + ": tensor '" + info.name() + "' puts " + t.module() + " under " + m.group(2));
                long[] s = info.shape();
                boolean ff = config.feedforward(t.path());
                if (s.length != 2 || (ff ? s[0] != 1 : s[1] != 1))
                    throw new FormatException(weightsFile + ": tensor '" + info.name() + "' has shape " + Arrays.toString(s) + ", expected "
                            + (ff ? "[1, in] (a feed-forward module)" : "[out, 1]") + " as PEFT's IA3Layer; feedforward_modules " + config.feedforwardModules());
                vectors.put(t, st.readFloats(info.name()));
            }
        }
        if (vectors.isEmpty()) throw new FormatException(weightsFile + " holds no ia3_l tensor");
        try {
            return new Ia3Adapter(config, text(root, "base_model_name_or_path"), text(root, "revision"), vectors);
        } catch (ConfigException e) {
            throw new FormatException(weightsFile + " does not match " + configFile + ": " + e.getMessage(), e);
        }
    }

    // ---------------------------------------------------------------- write

    /// Writes `adapter_model.safetensors` (metadata {"format": "pt"}) and `adapter_config.json` (sorted keys, 2-space
    /// indent, as PEFT's save_pretrained), each atomically.
    public void write(Path dir, DType dtype) {
        try {
            Files.createDirectories(dir);
            List<SafeTensors.Entry> entries = new ArrayList<>();
            for (var e : vectors.entrySet()) {
                Target t = e.getKey();
                float[] v = e.getValue();
                long[] shape = config.feedforward(t.path()) ? new long[]{1, v.length} : new long[]{v.length, 1};
                entries.add(SafeTensors.Entry.ofFloats(t.key(SUFFIX), shape, v, dtype));
            }
            SafeTensors.write(dir.resolve(PeftAdapter.WEIGHTS_FILE), entries, Map.of("format", "pt"));
            Path tmp = dir.resolve("." + PeftAdapter.CONFIG_FILE + ".tmp");
            Files.writeString(tmp, configJson(), StandardCharsets.UTF_8);
            Files.move(tmp, dir.resolve(PeftAdapter.CONFIG_FILE), StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
        } catch (IOException e) {
            throw new FormatException("cannot write adapter to " + dir + ": " + e.getMessage(), e);
        }
    }

    /// adapter_config.json as PEFT writes an `IA3Config` (json.dumps(indent=2, sort_keys=True)); only keys PEFT has
    /// known since 0.6 (no exclude_modules / peft_version, which older releases reject).
    public String configJson() {
        Map<String, Object> m = new TreeMap<>();
        m.put("auto_mapping", null);
        m.put("base_model_name_or_path", baseModelNameOrPath);
        m.put("fan_in_fan_out", false);
        m.put("feedforward_modules", config.feedforwardModules());
        m.put("inference_mode", true);
        m.put("init_ia3_weights", config.initIa3Weights());
        m.put("modules_to_save", null);
        m.put("peft_type", "IA3");
        m.put("revision", revision);
        m.put("target_modules", config.targetModules());
        m.put("task_type", "CAUSAL_LM");
        return PyJson.dumps(m, true, 2, null, null, true);
    }

    // ---------------------------------------------------------------- helpers

    private static JsonNode parse(Path file) {
        try {
            JsonNode root = new ObjectMapper().readTree(Files.readString(file, StandardCharsets.UTF_8));
            if (root == null || !root.isObject()) throw new FormatException(file + ": expected a JSON object");
            return root;
        } catch (IOException e) {
            throw new FormatException(file + ": cannot read JSON: " + e.getMessage(), e);
        }
    }

    private static String text(JsonNode root, String key) {
        JsonNode v = root.get(key);
        return v == null || v.isNull() ? null : v.asText();
    }

    /// A list of module names; a single string is one name (PEFT also takes a regex there, which peft4j refuses).
    private static List<String> names(JsonNode v, String key, List<String> fallback) {
        if (v == null || v.isNull()) return fallback;
        if (v.isTextual()) {
            if (Projection.byName(v.asText()) != null) return List.of(v.asText());
            throw new ConfigException(key + " is the regex '" + v.asText() + "', which peft4j does not match; list the module names instead, e.g. [\"k_proj\", \"v_proj\", \"down_proj\"]");
        }
        if (!v.isArray()) throw new ConfigException(key + " = " + v + " should be a list of module names");
        List<String> out = new ArrayList<>();
        for (JsonNode s : v) out.add(s.asText());
        return out;
    }
}
