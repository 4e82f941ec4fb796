package org.peft4j.cli;

import org.peft4j.core.Peft4jException.ConfigException;
import org.peft4j.formats.gguf.GgmlType;
import org.peft4j.model.adapter.LoadedAdapter;
import org.peft4j.model.gguf.GgufAdapter;
import org.peft4j.model.gguf.GgufModel;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Locale;
import java.util.concurrent.Callable;

/// `peft4j export-adapter`: a PEFT LoRA adapter as a llama.cpp GGUF adapter (`llama-cli --lora FILE`), what
/// convert_lora_to_gguf.py writes.
@Command(name = "export-adapter", mixinStandardHelpOptions = true,
        description = "Write a LoRA adapter (PEFT folder) as a GGUF adapter file that llama.cpp loads with --lora.")
final class ExportAdapterCommand implements Callable<Integer> {
    @Option(names = "--model", paramLabel = "DIR|FILE.gguf", description = "The base model (its config gives the architecture and head counts; default: the bundled model).") String model;
    @Option(names = "--adapter", required = true, paramLabel = "DIR", description = "The LoRA adapter folder (adapter_config.json, adapter_model.safetensors).") Path adapter;
    @Option(names = "--out", required = true, paramLabel = "FILE.gguf", description = "The GGUF file to write.") Path out;
    @Option(names = "--format", defaultValue = "gguf", paramLabel = "FORMAT", description = "gguf (the only format; default: ${DEFAULT-VALUE}).") String format;
    @Option(names = "--type", defaultValue = "f32", paramLabel = "TYPE", description = "f32, f16 or bf16 (default: ${DEFAULT-VALUE}).") String type;

    @Override
    public Integer call() throws Exception {
        if (!format.equals("gguf")) throw new ConfigException("--format '" + format + "': export-adapter writes gguf (a PEFT folder is already the other format)");
        GgmlType t = switch (type.toLowerCase(Locale.ROOT)) {
            case "f32" -> GgmlType.F32;
            case "f16" -> GgmlType.F16;
            case "bf16" -> GgmlType.BF16;
            default -> throw new ConfigException("--type '" + type + "' must be f32, f16 or bf16");
        };
        Path base = model != null ? ModelResolver.resolve(model) : ModelOptions.defaultModel();
        var config = GgufModel.config(base);
        LoadedAdapter a = LoadedAdapter.read("export", adapter, config);
        if (a.prompt != null)
            throw new ConfigException(adapter + " is a prompt-tuning adapter; llama.cpp's GGUF adapters are LoRA only, and prompt tuning has no weights to merge: use it with peft4j (--adapter)");
        if (a.prefix != null)
            throw new ConfigException(adapter + " is a prefix-tuning adapter; llama.cpp's GGUF adapters are LoRA only, and prefix tuning has no weights to merge: use it with peft4j (--adapter)");
        if (a.ia3 != null)
            throw new ConfigException(adapter + " is an IA3 adapter; llama.cpp's GGUF adapters are LoRA only: merge it into the model instead "
                    + "(peft4j export --adapter_name_or_path " + adapter + " ...) and convert the merged model");
        if (out.toAbsolutePath().getParent() != null) Files.createDirectories(out.toAbsolutePath().getParent());
        GgufAdapter.writer(a, t).write(out);
        System.err.println("exported adapter " + adapter + " (" + a.modules().size() + " modules) to " + out + " (GGUF LoRA, " + type + ")");
        System.out.println(out);
        return 0;
    }
}
