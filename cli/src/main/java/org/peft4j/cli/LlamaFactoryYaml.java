package org.peft4j.cli;

import org.peft4j.core.Peft4jException.ConfigException;
import org.peft4j.train.TrainConfig;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/// LLaMA-Factory's `llamafactory-cli export config.yaml` and `llamafactory-cli chat config.yaml` (its `merge_lora/` and
/// `inference/` examples): `peft4j export|chat FILE.yaml [flags]` reads the file's keys as the flags they name, put
/// before the command line's own (so flags override the file, as in `train`). Keys that change nothing peft4j does
/// are accepted with a note on stderr; keys whose effect peft4j does not have are refused naming them; anything
/// else is an error naming the keys each command takes.
final class LlamaFactoryYaml {
    private LlamaFactoryYaml() {}

    /// A key: the flag it becomes (null: accepted with `note`), or a refusal (`refusal` non-null).
    private record Rule(String flag, String note, String refusal) {
        static Rule flag(String f) { return new Rule(f, null, null); }
        static Rule note(String n) { return new Rule(null, n, null); }
        static Rule refuse(String r) { return new Rule(null, null, r); }
    }

    private static final Map<String, Rule> COMMON = new LinkedHashMap<>();
    private static final Map<String, Rule> EXPORT = new LinkedHashMap<>();
    private static final Map<String, Rule> CHAT = new LinkedHashMap<>();

    static {
        COMMON.put("trust_remote_code", Rule.note("peft4j runs no model code from the Hub"));
        COMMON.put("cache_dir", Rule.note("see HF_HOME for the Hub cache"));
        COMMON.put("quantization_bit", Rule.refuse("LLaMA-Factory merges and chats with the base as loaded; peft4j does not quantize on load here: "
                + "quantize with `peft4j quantize` and pass that folder as model_name_or_path"));
        COMMON.put("finetuning_type", Rule.note("peft4j reads the adapter's adapter_config.json (LoRA) or the full model"));

        EXPORT.put("model_name_or_path", Rule.flag("--model_name_or_path"));
        EXPORT.put("adapter_name_or_path", Rule.flag("--adapter_name_or_path"));
        EXPORT.put("template", Rule.flag("--template"));
        EXPORT.put("export_dir", Rule.flag("--export_dir"));
        EXPORT.put("export_size", Rule.flag("--export_size"));
        EXPORT.put("infer_dtype", Rule.flag("--export_dtype"));
        EXPORT.put("export_device", Rule.note("peft4j merges on the CPU"));
        EXPORT.put("export_legacy_format", Rule.flag("--export_legacy_format"));
        EXPORT.put("export_hub_model_id", Rule.refuse("peft4j does not upload to the Hub; upload export_dir with huggingface-cli"));
        for (String k : List.of("export_quantization_bit", "export_quantization_dataset", "export_quantization_nsamples", "export_quantization_maxlen"))
            EXPORT.put(k, Rule.refuse("GPTQ quantization on export is not supported; `peft4j quantize` writes bitsandbytes 4-bit from the exported folder"));

        CHAT.put("model_name_or_path", Rule.flag("--model"));
        CHAT.put("adapter_name_or_path", Rule.flag("--adapter"));
        CHAT.put("template", Rule.flag("--template"));
        CHAT.put("default_system", Rule.flag("--system"));
        CHAT.put("enable_thinking", Rule.flag("--enable-thinking"));
        CHAT.put("temperature", Rule.flag("--temperature"));
        CHAT.put("top_p", Rule.flag("--top-p"));
        CHAT.put("top_k", Rule.flag("--top-k"));
        CHAT.put("max_new_tokens", Rule.flag("--max-new-tokens"));
        CHAT.put("repetition_penalty", Rule.flag("--repetition-penalty"));
        CHAT.put("do_sample", Rule.flag("--do-sample"));
        CHAT.put("infer_backend", Rule.note("peft4j generates with its own engine (the answers of the huggingface backend)"));
        CHAT.put("infer_dtype", Rule.note("peft4j computes in float32"));
        CHAT.put("skip_special_tokens", Rule.note("answers are printed without special tokens"));
    }

    /// `args` with a leading `export FILE.yaml` or `chat FILE.yaml` replaced by the file's flags; other command lines
    /// are returned as they are. Notes go to `err`.
    static String[] expand(String[] args, java.io.PrintStream err) {
        if (args.length < 2 || !(args[0].equals("export") || args[0].equals("chat"))) return args;
        String file = args[1];
        if (!(file.endsWith(".yaml") || file.endsWith(".yml"))) return args;
        Map<String, Rule> rules = new LinkedHashMap<>(args[0].equals("export") ? EXPORT : CHAT);
        COMMON.forEach(rules::putIfAbsent);
        List<String> out = new ArrayList<>(List.of(args[0]));
        for (Map.Entry<String, String> e : TrainConfig.readYaml(Path.of(file)).entrySet()) {
            String key = e.getKey(), value = e.getValue();
            Rule r = rules.get(key);
            if (r == null)
                throw new ConfigException(file + ": '" + key + "' is not a key of " + args[0] + "; it takes " + String.join(", ", rules.keySet()));
            if (value == null || r.refusal() != null && value.equals("false")) continue;
            if (r.refusal() != null) throw new ConfigException(file + ": " + key + ": " + r.refusal());
            if (r.flag() == null) err.println("note: " + key + "=" + value + ": accepted; " + r.note());
            else { out.add(r.flag()); out.add(value); }
        }
        out.addAll(List.of(args).subList(2, args.length));
        return out.toArray(String[]::new);
    }

}
