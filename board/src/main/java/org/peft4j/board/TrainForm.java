package org.peft4j.board;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import org.peft4j.core.Peft4jException.ConfigException;
import org.peft4j.train.TrainConfig;
import org.peft4j.train.data.SlotTemplate;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;

/// The Train tab's form over the key table ([TrainConfig#KEYS]): every key as a field with its type, default, help
/// and LlamaBoard's group; the page's values turned into a [TrainConfig] by the CLI's own parsing and validation
/// (`TrainConfig.load(null, flags)`), with paths resolved under the board's [Roots]; and the preview: the YAML and the
/// `./peft4j train` command line that reproduce the run. A refused value comes back as a [BoardException] naming its
/// field, with the CLI's message.
public final class TrainForm {
    private static final ObjectMapper JSON = new ObjectMapper();

    /// LlamaBoard's sections, in its order; keys not named here go to "other".
    static final Map<String, List<String>> GROUPS = new LinkedHashMap<>();
    static {
        GROUPS.put("model", List.of("model_name_or_path", "adapter_name_or_path", "finetuning_type", "quantization_bit", "quantization_type",
                "double_quantization", "template"));
        GROUPS.put("train", List.of("stage", "dataset_dir", "dataset", "eval_dataset", "learning_rate", "num_train_epochs", "max_steps", "max_grad_norm",
                "max_samples", "cutoff_len", "per_device_train_batch_size", "gradient_accumulation_steps", "val_size", "lr_scheduler_type"));
        GROUPS.put("extra", List.of("logging_steps", "save_steps", "save_total_limit", "warmup_steps", "warmup_ratio", "neftune_noise_alpha", "optim",
                "optim_memory_budget_mb", "packing", "train_on_prompt", "mask_history", "default_system", "gradient_checkpointing", "weight_decay",
                "adam_beta1", "adam_beta2", "adam_epsilon", "seed", "eval_strategy", "eval_steps", "per_device_eval_batch_size", "do_train", "do_eval",
                "plot_loss", "compare_prompts", "forgetting_text", "threads", "gemm"));
        GROUPS.put("freeze", List.of("freeze_trainable_layers", "freeze_trainable_modules"));
        GROUPS.put("lora", List.of("lora_rank", "lora_alpha", "lora_dropout", "lora_target", "use_rslora", "use_dora", "loraplus_lr_ratio",
                "pissa_init", "pissa_iter", "pissa_convert"));
        GROUPS.put("rlhf", List.of("pref_beta", "pref_loss", "pref_ftx", "dpo_label_smoothing", "simpo_gamma", "kto_chosen_weight", "kto_rejected_weight", "ref_model", "ref_model_adapters",
                "ref_model_quantization_bit", "pref_bco_weight", "ld_alpha"));
        GROUPS.put("output", List.of("output_dir", "overwrite_output_dir", "resume_from_checkpoint"));
    }

    /// Fields whose value is a path, and the root it lies under.
    enum PathKind { MODEL, SAVES, DATA }
    static final Map<String, PathKind> PATHS = Map.of("model_name_or_path", PathKind.MODEL, "adapter_name_or_path", PathKind.SAVES,
            "output_dir", PathKind.SAVES, "resume_from_checkpoint", PathKind.SAVES, "dataset_dir", PathKind.DATA, "forgetting_text", PathKind.DATA,
            "ref_model", PathKind.MODEL, "ref_model_adapters", PathKind.SAVES);

    /// Closed choices, shown as selects.
    static final Map<String, List<String>> CHOICES = Map.of(
            "stage", List.of("sft", "pt", "dpo", "kto"),
            "finetuning_type", List.of("lora", "freeze", "full", "ia3", "prompt", "ptuning"),
            "quantization_bit", List.of("", "4"),
            "quantization_type", List.of("nf4", "fp4"),
            "template", concat(SlotTemplate.NAMES, List.of("model")),
            "lr_scheduler_type", List.of("linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup"),
            "optim", List.of("adamw_torch", "adamw_8bit", "paged_adamw_32bit", "paged_adamw_8bit", "sgd"),
            "eval_strategy", List.of("no", "steps", "epoch"),
            "pref_loss", List.of("sigmoid", "hinge", "ipo", "orpo", "simpo"),
            "gemm", List.of("auto", "java", "openblas", "scalar"));

    /// Keys the form leaves out: an old alias of another key.
    private static final Set<String> HIDDEN = Set.of("evaluation_strategy");

    private final Roots roots;

    TrainForm(Roots roots) { this.roots = roots; }

    /// What a page needs to draw the form: groups of fields (name, type, default, help, support, choices, path root).
    public ObjectNode describe(String defaultModel) {
        ObjectNode out = JSON.createObjectNode();
        ArrayNode groups = out.putArray("groups");
        Map<String, List<String>> grouped = new LinkedHashMap<>(GROUPS);
        List<String> other = new ArrayList<>();
        for (String k : TrainConfig.KEYS.keySet())
            if (!HIDDEN.contains(k) && GROUPS.values().stream().noneMatch(l -> l.contains(k))) other.add(k);
        grouped.put("other", other);
        for (var g : grouped.entrySet()) {
            ObjectNode group = groups.addObject().put("name", g.getKey());
            ArrayNode fields = group.putArray("fields");
            for (String k : g.getValue()) {
                TrainConfig.Key key = TrainConfig.KEYS.get(k);
                ObjectNode f = fields.addObject().put("name", k).put("type", key.type().name().toLowerCase())
                        .put("help", key.help()).put("support", key.support().name().toLowerCase());
                f.set("default", JSON.valueToTree(formDefault(k, defaultModel)));
                if (CHOICES.containsKey(k)) f.set("choices", JSON.valueToTree(CHOICES.get(k)));
                if (PATHS.containsKey(k)) f.put("root", PATHS.get(k).name().toLowerCase());
            }
        }
        return out;
    }

    /// The form's starting value of `key`: the key table's default, except the paths, which are relative to the roots.
    static Object formDefault(String key, String defaultModel) {
        return switch (key) {
            case "model_name_or_path" -> defaultModel;
            case "dataset_dir" -> ".";
            default -> TrainConfig.KEYS.get(key).defaultValue();
        };
    }

    /// The page's values (key to text; blank = the default) as the CLI would resolve them.
    public TrainConfig config(Map<String, String> values) {
        return load(flags(values));
    }

    /// `--key value` flags from the page's values, in key-table order, paths resolved under the roots.
    public List<String> flags(Map<String, String> values) {
        for (String k : values.keySet())
            if (!TrainConfig.KEYS.containsKey(k)) load(List.of("--" + k, values.get(k)));   // the CLI's unknown-key message
        List<String> flags = new ArrayList<>();
        for (String k : TrainConfig.KEYS.keySet()) {
            String v = values.get(k);
            if (v == null || v.isBlank()) {
                if (k.equals("dataset_dir")) v = ".";
                else continue;
            }
            v = v.strip();
            PathKind kind = PATHS.get(k);
            if (kind != null && !(k.equals("resume_from_checkpoint") && (v.equals("true") || v.equals("last")))) v = resolve(kind, v, k).toString();
            flags.add("--" + k);
            flags.add(v);
        }
        return flags;
    }

    Path resolve(PathKind kind, String value, String field) {
        return switch (kind) {
            case MODEL -> roots.model(value, field);
            case SAVES -> roots.inSaves(value, field);
            case DATA -> roots.inData(value, field);
        };
    }

    /// TrainConfig.load with the typed view built too (derived defaults, lora_target names), its messages mapped to fields.
    static TrainConfig load(List<String> flags) {
        try {
            TrainConfig c = TrainConfig.load(null, flags);
            c.args().finetuning().method();
            return c;
        } catch (ConfigException e) {
            throw BoardException.invalid(fieldOf(e.getMessage()), e.getMessage());
        }
    }

    /// The key a message is about: the earliest key named in it (quoted or as a word), the longest at a tie.
    static String fieldOf(String message) {
        String best = null;
        int at = Integer.MAX_VALUE;
        for (String k : TrainConfig.KEYS.keySet()) {
            int i = indexOfWord(message, k);
            if (i >= 0 && (i < at || i == at && k.length() > best.length())) { best = k; at = i; }
        }
        return best != null && best.equals("evaluation_strategy") ? "eval_strategy" : best;
    }

    private static int indexOfWord(String s, String word) {
        for (int i = s.indexOf(word); i >= 0; i = s.indexOf(word, i + 1)) {
            int end = i + word.length();
            boolean before = i == 0 || !isWordChar(s.charAt(i - 1)), after = end == s.length() || !isWordChar(s.charAt(end));
            if (before && after) return i;
        }
        return -1;
    }

    private static boolean isWordChar(char c) { return Character.isLetterOrDigit(c) || c == '_'; }

    /// The preview of a config: the keys that differ from their defaults as LLaMA-Factory-style YAML (grouped, with
    /// `###` headings) and as the equivalent command line, plus every resolved key (training_args.json's content).
    public record Preview(String yaml, List<String> args, String command, String resolved, List<String> notes) {}

    public Preview preview(TrainConfig c) {
        Map<String, Object> changed = c.changed();
        StringBuilder yaml = new StringBuilder();
        List<String> args = new ArrayList<>(List.of("./peft4j", "train"));
        Map<String, List<String>> grouped = new LinkedHashMap<>(GROUPS);
        grouped.put("other", new ArrayList<>(TrainConfig.KEYS.keySet()));
        Set<String> done = new java.util.HashSet<>();
        for (var g : grouped.entrySet()) {
            boolean heading = false;
            for (String k : g.getValue()) {
                if (!changed.containsKey(k) || !done.add(k)) continue;
                if (!heading) { yaml.append(yaml.isEmpty() ? "" : "\n").append("### ").append(g.getKey()).append('\n'); heading = true; }
                Object v = changed.get(k);
                yaml.append(k).append(": ").append(scalar(v)).append('\n');
                args.add("--" + k);
                args.add(String.valueOf(v));
            }
        }
        StringBuilder cmd = new StringBuilder();
        for (String a : args) cmd.append(cmd.isEmpty() ? "" : " ").append(shellQuote(a));
        return new Preview(yaml.toString(), args, cmd.toString(), c.toJson(), c.notes());
    }

    /// A YAML scalar that reads back as the same typed value: numbers and booleans plain, strings double-quoted.
    static String scalar(Object v) {
        if (v == null) return "null";
        if (v instanceof Number || v instanceof Boolean) return v.toString();
        try {
            return JSON.writeValueAsString(v.toString());
        } catch (JsonProcessingException e) {
            throw new IllegalStateException(e);
        }
    }

    /// POSIX shell quoting: plain words as they are, anything else in single quotes.
    static String shellQuote(String s) {
        if (!s.isEmpty() && s.matches("[A-Za-z0-9_./:=,+@%-]+")) return s;
        return "'" + s.replace("'", "'\\''") + "'";
    }

    private static List<String> concat(List<String> a, List<String> b) {
        List<String> out = new ArrayList<>(a);
        out.addAll(b);
        return List.copyOf(out);
    }
}
