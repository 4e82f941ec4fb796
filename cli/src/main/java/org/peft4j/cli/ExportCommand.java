package org.peft4j.cli;

import org.peft4j.core.Gemms;
import org.peft4j.core.Peft4jException.ConfigException;
import org.peft4j.train.Export;
import org.peft4j.train.data.SlotTemplate;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

import java.nio.file.Path;
import java.util.concurrent.Callable;

/// `peft4j export`: LLaMA-Factory's `llamafactory-cli export` (merge a LoRA adapter into the base and save).
@Command(name = "export", mixinStandardHelpOptions = true, description = {"Merge a LoRA adapter into its base model and write a Hugging Face folder or a GGUF file.",
        "peft4j export CONFIG.yaml [flags] reads LLaMA-Factory's export YAML (its merge_lora/ examples); flags override it."})
final class ExportCommand implements Callable<Integer> {
    @Option(names = "--model_name_or_path", required = true, paramLabel = "DIR", description = "The base model folder or Hub repo id.") String model;
    @Option(names = "--adapter_name_or_path", paramLabel = "DIR", description = "The LoRA or OFT adapter (PEFT folder) to merge.") Path adapter;
    @Option(names = "--export_dir", required = true, paramLabel = "DIR", description = "Where to write the merged model.") Path exportDir;
    @Option(names = "--overwrite", description = "Write over an existing, non-empty --export_dir.") boolean overwrite;
    @Option(names = "--export_size", defaultValue = "5", paramLabel = "GB", description = "Largest shard in GB (default: ${DEFAULT-VALUE}).") int exportSize;
    @Option(names = "--export_dtype", defaultValue = "float32", paramLabel = "DTYPE", description = "float32, float16 or bfloat16 (default: ${DEFAULT-VALUE}).") String dtype;
    @Option(names = "--template", paramLabel = "NAME", description = "LLaMA-Factory template whose Jinja the exported tokenizer_config.json gets when the model has no chat template (as LLaMA-Factory's export).") String template;
    @Option(names = "--export_legacy_format", defaultValue = "false", arity = "1", paramLabel = "BOOL", description = "LLaMA-Factory's .bin format; only false (safetensors) is supported.") boolean legacy;
    @Option(names = "--export_format", defaultValue = "safetensors", paramLabel = "FORMAT", description = "safetensors (a Hugging Face folder) or gguf (one llama.cpp file) (default: ${DEFAULT-VALUE}).") String format;
    @Option(names = "--export_quant", paramLabel = "TYPE", description = "GGUF tensor type of the linear weights: f32, f16, bf16, q8_0, q4_0 or q4_k (default: f32; gguf only).") String quant;
    @Option(names = "--gemm", defaultValue = "auto", hidden = true) String gemm;

    @Override
    public Integer call() {
        if (legacy) throw new ConfigException("export_legacy_format: true writes PyTorch .bin files, which peft4j does not; set it to false (safetensors)");
        ModelOptions.refuseExistingOutput(exportDir, "--export_dir", overwrite);
                if (dtype.equals("auto")) dtype = "float32";   // LLaMA-Factory's infer_dtype auto; peft4j's weights are float32
        switch (format) {
            case "gguf" -> {
                Path file = Export.mergedGguf(ModelResolver.resolve(model), adapter, exportDir, quant == null ? "f32" : quant, Gemms.get(gemm));
                System.err.println("exported " + (adapter != null ? "merged " : "") + "model to " + file + " (GGUF, " + (quant == null ? "f32" : quant) + ")");
                System.out.println(file);
                return 0;
            }
            case "safetensors" -> {
                if (quant != null) throw new ConfigException("--export_quant applies to --export_format gguf; for safetensors use --export_dtype");
            }
            default -> throw new ConfigException("--export_format '" + format + "' must be safetensors or gguf");
        }
        var files = Export.merged(ModelResolver.resolve(model), adapter, exportDir, dtype, exportSize, Gemms.get(gemm),
                template == null ? null : SlotTemplate.named(template));
        System.err.println("exported " + (adapter != null ? "merged " : "") + "model to " + exportDir + " (" + files.size() + " safetensors file" + (files.size() == 1 ? "" : "s") + ", " + dtype + ")");
        System.out.println(exportDir);
        return 0;
    }
}
