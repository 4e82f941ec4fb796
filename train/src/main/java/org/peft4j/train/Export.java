package org.peft4j.train;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import com.fasterxml.jackson.databind.node.ObjectNode;
import org.peft4j.core.DType;
import org.peft4j.core.Gemm;
import org.peft4j.core.Peft4jException.ConfigException;
import org.peft4j.formats.safetensors.SafeTensors;
import org.peft4j.formats.safetensors.ShardedSafeTensors;
import org.peft4j.formats.gguf.GgufFile;
import org.peft4j.formats.gguf.GgufWriter;
import org.peft4j.model.Models;
import org.peft4j.model.gguf.GgufModel;
import org.peft4j.tokenizer.GgufVocab;
import org.peft4j.model.adapter.AdapterSet;
import org.peft4j.model.adapter.LoadedAdapter;
import org.peft4j.model.llama.LlamaWeights;
import org.peft4j.model.quant.QuantizedModel;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;

/// LLaMA-Factory's `export`: the base model with a LoRA adapter merged (W0 + s·B·A) written as a Hugging Face folder
/// (config.json with torch_dtype, safetensors shards of at most `export_size` GB, tokenizer and generation files).
public final class Export {
    static final List<String> COPIED = List.of("tokenizer.json", "tokenizer.model", "tokenizer_config.json",
            "special_tokens_map.json", "generation_config.json", "chat_template.jinja");

    private Export() {}



    /// The merged model (or the base alone when `adapterDir` is null) as one GGUF file that llama.cpp loads:
    /// `quant` f32, f16, bf16, q8_0 or q4_0 ([GgufModel#writer]), the tokenizer and chat template from the model
    /// folder's files ([GgufVocab]) or, for a GGUF source, its `tokenizer.*` keys. `out` is the file when it ends in
    /// `.gguf`, else a folder that receives `model-<quant>.gguf`. Returns the file written.
    public static Path mergedGguf(Path model, Path adapterDir, Path out, String quant, Gemm gemm) {
        GgufModel.Quant q = GgufModel.Quant.of(quant);
        Path file = out.getFileName() != null && out.getFileName().toString().endsWith(".gguf") ? out
                : out.resolve("model-" + q.name().toLowerCase(java.util.Locale.ROOT) + ".gguf");
        if (file.toAbsolutePath().normalize().equals(model.toAbsolutePath().normalize()))
            throw new ConfigException("export_dir must not be the model file " + model);
        LlamaWeights base = QuantizedModel.isQuantized(model) ? QuantizedModel.load(model).dequantizedWeights() : Models.loadWeights(model);
        LlamaWeights merged = adapterDir == null ? base
                : AdapterSet.mergedCopy(gemm, base, LoadedAdapter.read("export", adapterDir, base.config));
        String name = (model.getFileName() == null ? "model" : model.getFileName().toString()).replaceFirst("\\.gguf$", "");
        GgufWriter w = GgufModel.writer(merged, q, name);
        if (GgufModel.isGguf(model)) {
            try (GgufFile src = GgufFile.open(model)) {
                src.metadata().forEach((k, v) -> { if (k.startsWith("tokenizer.")) w.put(k, v); });
            }
        } else {
            GgufVocab.put(w, model, merged.config.vocabSize());
        }
        try {
            Files.createDirectories(file.toAbsolutePath().getParent());
        } catch (IOException e) {
            throw new UncheckedIOException("cannot create " + file.getParent() + ": " + e.getMessage(), e);
        }
        w.write(file);
        return file;
    }

    /// dtype: float32, float16 or bfloat16 (HF names) · exportSizeGb: shard limit in GB (10⁹ bytes), as export_size.
    public static List<Path> merged(Path modelDir, Path adapterDir, Path exportDir, String dtype, int exportSizeGb, Gemm gemm) {
        DType dt = switch (dtype) {
            case "float32", "fp32" -> DType.F32;
            case "float16", "fp16" -> DType.F16;
            case "bfloat16", "bf16" -> DType.BF16;
            default -> throw new ConfigException("export_dtype '" + dtype + "' must be float32, float16 or bfloat16");
        };
        if (exportSizeGb < 1) throw new ConfigException("export_size must be >= 1 (GB), got " + exportSizeGb);
        if (exportDir.toAbsolutePath().normalize().equals(modelDir.toAbsolutePath().normalize()))
            throw new ConfigException("export_dir must differ from the model folder " + modelDir);
        // A 4-bit (QLoRA) base is dequantized first: the merged model is exported in float, as LLaMA-Factory does.
        LlamaWeights base = QuantizedModel.isQuantized(modelDir) ? QuantizedModel.load(modelDir).dequantizedWeights()
                : Models.loadWeights(modelDir);
        LlamaWeights merged = adapterDir == null ? base
                : AdapterSet.mergedCopy(gemm, base, LoadedAdapter.read("export", adapterDir, base.config));
        try {
            Files.createDirectories(exportDir);
            ObjectNode cfg = (ObjectNode) new ObjectMapper().readTree(merged.config.toJson());
            cfg.remove("quantization_config");
            cfg.put("torch_dtype", dtype.startsWith("b") ? "bfloat16" : dtype.endsWith("16") ? "float16" : "float32");
            Checkpoint.writeAtomically(exportDir.resolve("config.json"),
                    new ObjectMapper().enable(SerializationFeature.INDENT_OUTPUT).writeValueAsString(cfg) + "\n");
            for (String f : COPIED)
                if (Files.exists(modelDir.resolve(f))) Files.copy(modelDir.resolve(f), exportDir.resolve(f), StandardCopyOption.REPLACE_EXISTING);
        } catch (IOException e) {
            throw new UncheckedIOException("cannot write " + exportDir + ": " + e.getMessage(), e);
        }
        Map<String, long[]> shapes = LlamaWeights.expectedShapes(merged.config);
        List<SafeTensors.Entry> entries = new ArrayList<>();
        for (var e : merged.tensors().entrySet()) entries.add(SafeTensors.Entry.ofFloats(e.getKey(), shapes.get(e.getKey()), e.getValue(), dt));
        return ShardedSafeTensors.write(exportDir, entries, exportSizeGb * 1_000_000_000L, Map.of("format", "pt"));
    }
}
