package org.peft4j.cli;

import org.peft4j.core.DType;
import org.peft4j.core.Gemms;
import org.peft4j.core.Peft4jException.ConfigException;
import org.peft4j.model.Models;
import org.peft4j.model.adapter.lora.PeftAdapter;
import org.peft4j.model.quant.QuantizedModel;
import org.peft4j.quant.QuantType;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.List;
import java.util.concurrent.Callable;

/// `peft4j quantize`: writes a bitsandbytes 4-bit Hugging Face folder (the keys, quant_state JSON and
/// quantization_config that transformers writes), optionally merging a LoRA adapter first (into a float base, or by
/// dequantize-merge-requantize into an already 4-bit base, reporting the error that requantization adds).
@Command(name = "quantize", mixinStandardHelpOptions = true, description = "Quantize a model to bitsandbytes 4-bit (NF4/FP4), optionally merging a LoRA adapter.")
final class QuantizeCommand implements Callable<Integer> {
    @Option(names = "--model", required = true, paramLabel = "DIR", description = "Model folder (float, or already 4-bit with --adapter).") String model;
    @Option(names = "--out", required = true, paramLabel = "DIR", description = "Output folder.") Path out;
    @Option(names = "--overwrite", description = "Write over an existing, non-empty --out folder.") boolean overwrite;
    @Option(names = "--quant", defaultValue = "nf4", description = "nf4 or fp4 (default: ${DEFAULT-VALUE}).") String quant;
    @Option(names = "--double-quant", negatable = true, defaultValue = "true", fallbackValue = "true",
            description = "Quantize the absmax values too (default: ${DEFAULT-VALUE}).") boolean doubleQuant;
    @Option(names = "--blocksize", defaultValue = "64", description = "Block size, 32..4096 (default: ${DEFAULT-VALUE}).") int blockSize;
    @Option(names = "--compute-dtype", defaultValue = "BF16", description = "bnb_4bit_compute_dtype and non-quantized tensors: F32, BF16 or F16 (default: ${DEFAULT-VALUE}).") DType dtype;
    @Option(names = "--adapter", paramLabel = "DIR", description = "A LoRA adapter to merge before (or into) the 4-bit weights.") Path adapter;

    @Override
    public Integer call() throws Exception {
        Path dir = ModelResolver.resolve(model);
        if (out.toAbsolutePath().normalize().equals(dir.toAbsolutePath().normalize())) throw new ConfigException("--out must differ from --model");
        ModelOptions.refuseExistingOutput(out, "--out", overwrite);
        QuantizedModel q;
        if (QuantizedModel.isQuantized(dir)) {
            if (adapter == null) throw new ConfigException(dir + " is already 4-bit; pass --adapter to merge an adapter into it, or quantize a float model");
            QuantizedModel.Merged m = QuantizedModel.load(dir).mergeAdapter(PeftAdapter.read(adapter), Gemms.get("auto"));
            System.err.printf("merged %s into the 4-bit base (%,d weights requantized): requantization error max %.3g, RMS %.3g%n",
                    adapter, m.mergedParameters(), m.maxError(), m.rmsError());
            q = m.model();
        } else if (adapter == null) {   // streamed: memory bounded by the largest tensor, not the model
            double bits = QuantizedModel.quantizeStreamed(dir, out, QuantType.of(quant), blockSize, doubleQuant, dtype);
            copyTokenizer(dir);
            System.err.printf("wrote %s: %s, block %d, %s, %.3f bits per quantized parameter%n", out, quant.toLowerCase(), blockSize,
                    doubleQuant ? "double quantization" : "plain absmax", bits);
            System.out.println(out);
            return 0;
        } else {
            var w = Models.loadWeights(dir);
            if (adapter != null) {
                var lm = new org.peft4j.model.llama.LlamaModel(w, Gemms.get("auto"));
                lm.loadAdapter("merge", adapter);
                lm.merge("merge");
            }
            q = QuantizedModel.quantize(w, QuantType.of(quant), blockSize, doubleQuant);
        }
        q.save(out, dtype);
        copyTokenizer(dir);
        System.err.printf("wrote %s: %s, block %d, %s, %.3f bits per quantized parameter%n", out, q.type.name().toLowerCase(), blockSize,
                q.doubleQuant ? "double quantization" : "plain absmax", q.bitsPerParameter());
        System.out.println(out);
        return 0;
    }

    private void copyTokenizer(Path dir) throws java.io.IOException {
        for (String f : List.of("tokenizer.json", "tokenizer.model", "tokenizer_config.json", "special_tokens_map.json", "generation_config.json", "chat_template.jinja"))
            if (Files.exists(dir.resolve(f))) Files.copy(dir.resolve(f), out.resolve(f), StandardCopyOption.REPLACE_EXISTING);
    }
}
