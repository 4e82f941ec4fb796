package org.peft4j.model.adapter.lora;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import org.peft4j.core.DType;
import org.peft4j.core.Peft4jException.ConfigException;
import org.peft4j.model.llama.Projection;
import org.peft4j.core.Peft4jException.FormatException;
import org.peft4j.formats.json.PyJson;
import org.peft4j.formats.safetensors.SafeTensors;
import org.peft4j.formats.safetensors.TensorInfo;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.ArrayList;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/// A Hugging Face PEFT LoRA adapter directory: `adapter_config.json` + `adapter_model.safetensors` (specs §2.1, §2.2).
/// Written as PEFT's `save_pretrained` writes them, so PEFT loads ours; read tolerantly, so PEFT's (any version) load.
/// Owns the JSON key mapping and the tensor names; the math is [LoraLinear] / [DoraLinear].
///
/// @param config              the LoRA hyper-parameters
/// @param baseModelNameOrPath HF id or path of the base model, or null
/// @param revision            its revision, or null
/// @param weights             per (layer, module) tensors, ordered by layer then [LoraConfig#ALL_LINEAR] order
public record PeftAdapter(LoraConfig config, String baseModelNameOrPath, String revision, Map<Target, LoraWeights> weights) {
    public static final String CONFIG_FILE = "adapter_config.json";
    public static final String WEIGHTS_FILE = "adapter_model.safetensors";
    private static final System.Logger LOG = System.getLogger(PeftAdapter.class.getName());

    /// One adapted module: decoder layer index and module name ("q_proj", …, "down_proj").
    public record Target(int layer, String module) implements Comparable<Target> {
        public Target {
            if (layer < 0) throw new ConfigException("layer index " + layer + " must be ≥ 0");
            parent(module);
        }

        /// The module's dotted path in transformers' LlamaForCausalLM, e.g. "model.layers.3.self_attn.q_proj"
        /// (what rank_pattern / alpha_pattern keys are matched against).
        public String path() { return "model.layers." + layer + "." + parent(module) + "." + module; }

        /// PEFT's saved key: "base_model.model." + path + "." + suffix (adapter name "default" removed).
        public String key(String suffix) { return "base_model.model." + path() + "." + suffix; }

        @Override public int compareTo(Target o) {
            return layer != o.layer ? Integer.compare(layer, o.layer)
                    : Integer.compare(LoraConfig.ALL_LINEAR.indexOf(module), LoraConfig.ALL_LINEAR.indexOf(o.module));
        }
    }

    public static final String A = "lora_A.weight", B = "lora_B.weight", MAGNITUDE = "lora_magnitude_vector";

    public PeftAdapter {
        weights = Collections.unmodifiableMap(new TreeMap<>(weights));
        for (var e : weights.entrySet()) {
            Target t = e.getKey();
            LoraWeights w = e.getValue();
            int r = config.rank(t.path());
            if (w.r() != r) throw new ConfigException(t.path() + ": adapter rank " + w.r() + " differs from the config's r = " + r + " (rank_pattern included)");
            if ((w.magnitude() != null) != config.useDora())
                throw new ConfigException(t.path() + ": " + (config.useDora() ? "use_dora is true but the DoRA magnitude vector is missing" : "has a DoRA magnitude vector but use_dora is false"));
        }
    }

    // ---------------------------------------------------------------- read

    /// Reads a PEFT adapter directory. Unknown config keys are logged (WARNING), never fatal; tensors other than
    /// decoder-layer lora_A / lora_B / lora_magnitude_vector are a FormatException naming them.
    public static PeftAdapter read(Path dir) {
        Path configFile = dir.resolve(CONFIG_FILE), weightsFile = dir.resolve(WEIGHTS_FILE);
        if (!Files.exists(configFile)) throw new ConfigException(configFile + " does not exist; is " + dir + " a PEFT adapter directory?");
        if (!Files.exists(weightsFile)) {
            String hint = Files.exists(dir.resolve("adapter_model.bin"))
                    ? "; only adapter_model.bin (pickle) is there: convert it with safetensors.torch.save_file" : "";
            throw new FormatException(weightsFile + " does not exist" + hint);
        }
        JsonNode root = parse(configFile);
        LoraConfig config = readConfig(root, configFile);
        Map<Target, LoraWeights> weights = readWeights(weightsFile, config);
        try {
            return new PeftAdapter(config, text(root, "base_model_name_or_path", configFile), text(root, "revision", configFile), weights);
        } catch (ConfigException e) {
            throw new FormatException(weightsFile + " does not match " + configFile + ": " + e.getMessage(), e);
        }
    }

    /// Reads only the hyper-parameters of an `adapter_config.json`.
    public static LoraConfig readConfig(Path file) { return readConfig(parse(file), file); }

    private static final Set<String> KNOWN_KEYS = Set.of(
            "peft_type", "task_type", "base_model_name_or_path", "revision", "inference_mode", "peft_version",
            "auto_mapping", "r", "lora_alpha", "lora_dropout", "target_modules", "exclude_modules", "fan_in_fan_out",
            "bias", "use_rslora", "modules_to_save", "init_lora_weights", "layers_to_transform", "layers_pattern",
            "rank_pattern", "alpha_pattern", "use_dora", "lora_bias", "megatron_config", "megatron_core",
            "loftq_config", "layer_replication", "trainable_token_indices", "target_parameters", "eva_config",
            "corda_config", "lora_ga_config", "use_qalora", "qalora_group_size", "alora_invocation_tokens",
            "arrow_config", "use_bdlora", "ensure_weight_tying", "runtime_config");

    /// Known PEFT features that change the forward or add tensors: accepted only at their off value.
    private static final List<String> UNSUPPORTED_IF_SET = List.of(
            "lora_bias", "layer_replication", "use_qalora", "trainable_token_indices", "target_parameters",
            "alora_invocation_tokens", "arrow_config", "use_bdlora");

    private static LoraConfig readConfig(JsonNode root, Path file) {
        for (var e : root.properties())
            if (!KNOWN_KEYS.contains(e.getKey()))
                LOG.log(System.Logger.Level.WARNING, "{0}: ignoring unknown key ''{1}'' (from a newer PEFT?)", file, e.getKey());
        String peftType = text(root, "peft_type", file);
        if (peftType == null) throw missing(file, "peft_type", "\"LORA\"");
        if (peftType.equals("OFT"))
            throw new ConfigException(file + ": an OFT adapter (peft_type \"OFT\"); generate, chat, serve and --adapter here apply LoRA adapters only. "
                    + "Merge it into the model first: peft4j export --model_name_or_path BASE --adapter_name_or_path " + file.getParent()
                    + " --export_dir DIR, then use DIR as the model");
        if (!peftType.equals("LORA"))
            throw new ConfigException(file + ": peft_type '" + peftType + "' is not supported here; this reads LoRA adapters (peft_type \"LORA\")"
                    + (peftType.equals("IA3") ? "; IA3 adapters load for generate, chat, serve, eval and export (merge), not for this command" : ""));
        for (String key : UNSUPPORTED_IF_SET)
            if (isSet(root.get(key)))
                throw new ConfigException(file + ": '" + key + "' = " + root.get(key) + " is not supported by peft4j; save the adapter without it");
        if (!root.hasNonNull("r")) throw missing(file, "r", "the LoRA rank, e.g. 8");
        int r = integer(root, "r", file);
        double alpha = root.hasNonNull("lora_alpha") ? number(root.get("lora_alpha"), "lora_alpha", file) : 8.0; // PEFT default
        double dropout = root.hasNonNull("lora_dropout") ? number(root.get("lora_dropout"), "lora_dropout", file) : 0.0;
        try {
            return new LoraConfig(r, alpha, dropout, targetModules(root.get("target_modules"), file),
                    bool(root, "use_rslora", file), bool(root, "use_dora", file), init(root.get("init_lora_weights"), file),
                    root.hasNonNull("bias") ? text(root, "bias", file) : "none", bool(root, "fan_in_fan_out", file),
                    strings(root.get("modules_to_save"), "modules_to_save", file),
                    pattern(root.get("rank_pattern"), "rank_pattern", file, true),
                    pattern(root.get("alpha_pattern"), "alpha_pattern", file, false),
                    layers(root.get("layers_to_transform"), file));
        } catch (ConfigException e) {
            throw new ConfigException(file + ": " + e.getMessage(), e);
        }
    }

    private static final Pattern KEY = Pattern.compile(
            "base_model\\.model\\.model\\.layers\\.(\\d+)\\.(self_attn|mlp)\\.(\\w+)\\.(lora_A\\.weight|lora_B\\.weight|lora_magnitude_vector(?:\\.weight)?)");

    private static Map<Target, LoraWeights> readWeights(Path file, LoraConfig config) {
        Map<Target, float[][]> parts = new TreeMap<>(); // {A, B, magnitude}
        Map<Target, long[][]> shapes = new TreeMap<>();
        try (SafeTensors st = SafeTensors.open(file)) {
            for (TensorInfo info : st.tensors().values()) {
                Matcher m = KEY.matcher(info.name());
                if (!m.matches())
                    throw new FormatException(file + ": tensor '" + info.name() + "' is not a decoder-layer lora_A / lora_B / "
                            + "lora_magnitude_vector; peft4j does not support lora_bias, modules_to_save, embedding LoRA or trained biases");
                Target t;
                try { t = new Target(Integer.parseInt(m.group(1)), m.group(3)); }
                catch (ConfigException e) { throw new FormatException(file + ": tensor '" + info.name() + "': " + e.getMessage()); }
                if (!parent(t.module()).equals(m.group(2)))
                    throw new FormatException(file + ": tensor '" + info.name() + "' puts " + t.module() + " under " + m.group(2) + ", expected " + parent(t.module()));
                int slot = m.group(4).startsWith("lora_A") ? 0 : m.group(4).startsWith("lora_B") ? 1 : 2;
                parts.computeIfAbsent(t, k -> new float[3][])[slot] = st.readFloats(info.name());
                shapes.computeIfAbsent(t, k -> new long[3][])[slot] = info.shape();
            }
        }
        Map<Target, LoraWeights> out = new TreeMap<>();
        for (var e : parts.entrySet()) {
            Target t = e.getKey();
            float[][] p = e.getValue();
            long[][] sh = shapes.get(t);
            if (p[0] == null || p[1] == null)
                throw new FormatException(file + ": " + t.key(p[0] == null ? A : B) + " is missing (its partner is present)");
            if (sh[0].length != 2 || sh[1].length != 2 || sh[0][0] != sh[1][1] || (p[2] != null && (sh[2].length != 1 || sh[2][0] != sh[1][0])))
                throw new FormatException(file + ": " + t.path() + " has inconsistent shapes lora_A " + java.util.Arrays.toString(sh[0])
                        + ", lora_B " + java.util.Arrays.toString(sh[1]) + (p[2] == null ? "" : ", magnitude " + java.util.Arrays.toString(sh[2]))
                        + "; expected (r, in), (out, r), (out)");
            out.put(t, new LoraWeights((int) sh[0][0], (int) sh[0][1], (int) sh[1][0], p[0], p[1], p[2]));
        }
        return out;
    }

    // ---------------------------------------------------------------- write

    /// Writes `adapter_model.safetensors` (tensors in `dtype`: F32, BF16 or F16; metadata {"format": "pt"}) and then
    /// `adapter_config.json` (sorted keys, 2-space indent, as PEFT), each atomically (temp file + rename).
    public void write(Path dir, DType dtype) {
        try {
            Files.createDirectories(dir);
            List<SafeTensors.Entry> entries = new ArrayList<>();
            for (var e : weights.entrySet()) {
                Target t = e.getKey();
                LoraWeights w = e.getValue();
                entries.add(SafeTensors.Entry.ofFloats(t.key(A), new long[]{w.r(), w.in()}, w.a(), dtype));
                entries.add(SafeTensors.Entry.ofFloats(t.key(B), new long[]{w.out(), w.r()}, w.b(), dtype));
                if (w.magnitude() != null)
                    entries.add(SafeTensors.Entry.ofFloats(t.key(MAGNITUDE), new long[]{w.out()}, w.magnitude(), dtype));
            }
            SafeTensors.write(dir.resolve(WEIGHTS_FILE), entries, Map.of("format", "pt"));
            Path tmp = dir.resolve("." + CONFIG_FILE + ".tmp");
            Files.writeString(tmp, configJson(), StandardCharsets.UTF_8);
            Files.move(tmp, dir.resolve(CONFIG_FILE), StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
        } catch (IOException e) {
            throw new FormatException("cannot write adapter to " + dir + ": " + e.getMessage(), e);
        }
    }

    /// adapter_config.json text as PEFT's `save_pretrained` writes it (json.dumps(indent=2, sort_keys=True)).
    /// Only keys every PEFT since use_dora (0.9) knows: older releases reject unknown keys, newer default missing
    /// ones (so no lora_bias / peft_version).
    public String configJson() {
        Map<String, Object> m = new TreeMap<>();
        m.put("alpha_pattern", patternJson(config.alphaPattern()));
        m.put("auto_mapping", null);
        m.put("base_model_name_or_path", baseModelNameOrPath);
        m.put("bias", config.bias());
        m.put("fan_in_fan_out", config.fanInFanOut());
        m.put("inference_mode", true);
        m.put("init_lora_weights", config.initPeftValue());
        m.put("layers_pattern", null);
        m.put("layers_to_transform", config.layersToTransform());
        m.put("lora_alpha", intIfIntegral(config.loraAlpha()));
        m.put("lora_dropout", config.loraDropout());
        m.put("modules_to_save", config.modulesToSave());
        m.put("peft_type", "LORA");
        m.put("r", config.r());
        m.put("rank_pattern", config.rankPattern());
        m.put("revision", revision);
        m.put("target_modules", config.targetModules());
        m.put("task_type", "CAUSAL_LM");
        m.put("use_dora", config.useDora());
        m.put("use_rslora", config.useRslora());
        return PyJson.dumps(m, true, 2, null, null, true);
    }

    // ---------------------------------------------------------------- helpers

    /// The transformers submodule holding a Llama linear layer.
    static String parent(String module) {
        return Projection.of(module).parent;
    }

    /// An adapter_config.json (or any JSON object file), refused with the file's name when unreadable or not an object.
    public static JsonNode parse(Path file) {
        try {
            JsonNode root = new ObjectMapper().readTree(Files.readString(file, StandardCharsets.UTF_8));
            if (root == null || !root.isObject()) throw new FormatException(file + ": expected a JSON object");
            return root;
        } catch (IOException e) {
            throw new FormatException(file + ": cannot read JSON: " + e.getMessage(), e);
        }
    }

    private static ConfigException missing(Path file, String key, String what) {
        return new ConfigException(file + ": required key '" + key + "' is missing; add \"" + key + "\": " + what);
    }

    private static ConfigException mistyped(Path file, String key, JsonNode v, String expected) {
        return new ConfigException(file + ": '" + key + "' = " + v + " should be " + expected);
    }

    private static boolean isSet(JsonNode v) {
        return v != null && !v.isNull() && !(v.isBoolean() && !v.asBoolean()) && !(v.isContainerNode() && v.isEmpty());
    }

    private static String text(JsonNode root, String key, Path file) {
        JsonNode v = root.get(key);
        if (v == null || v.isNull()) return null;
        if (!v.isTextual()) throw mistyped(file, key, v, "a string");
        return v.asText();
    }

    private static boolean bool(JsonNode root, String key, Path file) {
        JsonNode v = root.get(key);
        if (v == null || v.isNull()) return false;
        if (!v.isBoolean()) throw mistyped(file, key, v, "true or false");
        return v.asBoolean();
    }

    private static int integer(JsonNode root, String key, Path file) {
        JsonNode v = root.get(key);
        if (!v.isIntegralNumber() || !v.canConvertToInt()) throw mistyped(file, key, v, "an integer");
        return v.asInt();
    }

    private static double number(JsonNode v, String key, Path file) {
        if (!v.isNumber()) throw mistyped(file, key, v, "a number");
        return v.asDouble();
    }

    private static List<String> strings(JsonNode v, String key, Path file) {
        if (v == null || v.isNull()) return null;
        if (!v.isArray()) throw mistyped(file, key, v, "a list of strings");
        List<String> out = new ArrayList<>();
        for (JsonNode s : v) {
            if (!s.isTextual()) throw mistyped(file, key, v, "a list of strings");
            out.add(s.asText());
        }
        return out;
    }

    private static List<String> targetModules(JsonNode v, Path file) {
        if (v == null || v.isNull()) return List.of("q_proj", "v_proj"); // PEFT's default for llama / qwen2
        if (v.isTextual()) {
            if (v.asText().equals("all-linear")) return LoraConfig.ALL_LINEAR;
            throw new ConfigException(file + ": target_modules is the regex '" + v.asText() + "', which peft4j does not match; "
                    + "list the module names instead, e.g. [\"q_proj\", \"v_proj\"]");
        }
        return strings(v, "target_modules", file);
    }

    private static LoraConfig.Init init(JsonNode v, Path file) {
        if (v == null || v.isNull() || v.isBoolean() && v.asBoolean()) return LoraConfig.Init.KAIMING_UNIFORM;
        if (v.isBoolean()) return LoraConfig.Init.NO_INIT;
        if (v.isTextual() && v.asText().equals("gaussian")) return LoraConfig.Init.GAUSSIAN;
        throw new ConfigException(file + ": init_lora_weights = " + v + " is not supported (peft4j: true, false, \"gaussian\"). "
                + "PiSSA/OLoRA/LoftQ adapters need their modified base model; convert to plain LoRA with PEFT's "
                + "save_pretrained(path_initial_model_for_weight_conversion=...), or use the pissa_converted/ folder that "
                + "training with pissa_convert: true writes");
    }

    @SuppressWarnings("unchecked")
    private static <V> Map<String, V> pattern(JsonNode v, String key, Path file, boolean integral) {
        if (v == null || v.isNull()) return Map.of();
        if (!v.isObject()) throw mistyped(file, key, v, "an object of module pattern → value");
        Map<String, Object> out = new LinkedHashMap<>();
        for (var e : v.properties()) {
            JsonNode x = e.getValue();
            if (integral ? !x.isIntegralNumber() : !x.isNumber()) throw mistyped(file, key + "." + e.getKey(), x, integral ? "an integer" : "a number");
            out.put(e.getKey(), integral ? (Object) x.asInt() : (Object) x.asDouble());
        }
        return (Map<String, V>) out;
    }

    private static List<Integer> layers(JsonNode v, Path file) {
        if (v == null || v.isNull()) return null;
        if (v.isIntegralNumber()) return List.of(v.asInt()); // PEFT accepts a single int
        if (!v.isArray()) throw mistyped(file, "layers_to_transform", v, "an integer or a list of integers");
        List<Integer> out = new ArrayList<>();
        for (JsonNode x : v) {
            if (!x.isIntegralNumber()) throw mistyped(file, "layers_to_transform", v, "a list of integers");
            out.add(x.asInt());
        }
        return out;
    }

    private static Object intIfIntegral(double x) { return x == Math.rint(x) && Math.abs(x) < 1 << 30 ? (Object) (int) x : (Object) x; }

    private static Map<String, Object> patternJson(Map<String, Double> p) {
        Map<String, Object> out = new LinkedHashMap<>();
        p.forEach((k, v) -> out.put(k, intIfIntegral(v)));
        return out;
    }
}
