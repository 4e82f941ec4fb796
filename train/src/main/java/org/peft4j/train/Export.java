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
import org.peft4j.train.data.SlotTemplate;
import org.peft4j.train.data.Template;

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
    public static final List<String> COPIED = List.of("tokenizer.json", "tokenizer.model", "tokenizer_config.json",
            "special_tokens_map.json", "generation_config.json", "chat_template.jinja");

    private Export() {}

    /// The tokenizer files of `modelDir` copied into `dir`, as LLaMA-Factory saves the tokenizer beside every model,
    /// adapter and checkpoint it writes. When the model has no chat template of its own and `template` is one of
    /// LLaMA-Factory's named templates, tokenizer_config.json gets that template as Jinja (LLaMA-Factory
    /// `fix_jinja_template`), so the saved folder chats as it was trained. `template` may be null (files copied as they are).
    public static void saveTokenizer(Path modelDir, Path dir, Template template) {
        try {
            Files.createDirectories(dir);
            if (GgufModel.isGguf(modelDir)) {   // a GGUF model: the tokenizer files from its metadata
                try (GgufFile f = GgufFile.open(modelDir)) { GgufVocab.writeHf(f, dir); }
            } else {
                for (String f : COPIED)   // each through a temporary file and a rename: a kill never leaves half a tokenizer.json
                    if (Files.exists(modelDir.resolve(f))) {
                        Path tmp = dir.resolve("." + f + ".tmp");
                        Files.copy(modelDir.resolve(f), tmp, StandardCopyOption.REPLACE_EXISTING);
                        Files.move(tmp, dir.resolve(f), StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
                    }
            }
            Path tc = dir.resolve("tokenizer_config.json");
            if (template instanceof SlotTemplate st && Files.exists(tc) && !TrainData.hasChatTemplate(modelDir)) {
                ObjectNode cfg = (ObjectNode) new ObjectMapper().readTree(tc.toFile());
                String eos = st.replaceEos() ? st.stopWords().getFirst() : token(cfg.get("eos_token"));
                String jinja = st.jinja(token(cfg.get("bos_token")), eos);
                if (jinja != null) cfg.put("chat_template", jinja);
                Checkpoint.writeAtomically(tc, new ObjectMapper().enable(SerializationFeature.INDENT_OUTPUT).writeValueAsString(cfg) + "\n");
            }
        } catch (IOException e) {
            throw new UncheckedIOException("cannot write the tokenizer files into " + dir + ": " + e.getMessage(), e);
        }
    }

    /// A special token of tokenizer_config.json: a string, or an AddedToken object's "content"; null when absent.
    private static String token(com.fasterxml.jackson.databind.JsonNode n) {
        if (n == null || n.isNull()) return null;
        return n.isObject() ? n.path("content").asText(null) : n.asText();
    }

    /// The merged model (or the base alone when `adapterDir` is null) as one GGUF file that llama.cpp loads:
    /// `quant` f32, f16, bf16, q8_0, q4_0 or q4_k ([GgufModel#writer]), the tokenizer and chat template from the model
    /// folder's files ([GgufVocab]) or, for a GGUF source, its `tokenizer.*` keys. `out` is the file when it ends in
    /// `.gguf`, else a folder that receives `model-<quant>.gguf`. Returns the file written.
    public static Path mergedGguf(Path model, Path adapterDir, Path out, String quant, Gemm gemm) {
        GgufModel.Quant q = GgufModel.Quant.of(quant);
        Path file = out.getFileName() != null && out.getFileName().toString().endsWith(".gguf") ? out
                : out.resolve("model-" + q.name().toLowerCase(java.util.Locale.ROOT) + ".gguf");
        if (file.toAbsolutePath().normalize().equals(model.toAbsolutePath().normalize()))
            throw new ConfigException("export_dir must not be the model file " + model);
        LlamaWeights base = QuantizedModel.isQuantized(model) ? QuantizedModel.load(model).dequantizedWeights() : Models.loadWeights(model);
        LlamaWeights merged = adapterDir == null ? base : mergedWith(base, adapterDir, gemm);
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

    /// `base` with the adapter in `adapterDir` merged: LoRA into a copy; OFT (peft_type "OFT") in place as PEFT's
    /// `Linear.merge`, W ← W·R_bdᵀ ([org.peft4j.model.adapter.oft.OftAdapter#mergeInto]; `base` is a fresh load here).
    static LlamaWeights mergedWith(LlamaWeights base, Path adapterDir, Gemm gemm) {
        if (org.peft4j.model.adapter.oft.OftAdapter.isOft(adapterDir)) {
            org.peft4j.model.adapter.oft.OftAdapter.read(adapterDir, base.config).mergeInto(base);
            return base;
        }
        return AdapterSet.mergedCopy(gemm, base, LoadedAdapter.read("export", adapterDir, base.config));
    }

    /// dtype: float32, float16 or bfloat16 (HF names) · exportSizeGb: shard limit in GB (10⁹ bytes), as export_size.
    public static List<Path> merged(Path modelDir, Path adapterDir, Path exportDir, String dtype, int exportSizeGb, Gemm gemm) {
        return merged(modelDir, adapterDir, exportDir, dtype, exportSizeGb, gemm, null);
    }

    /// As above; `template` (may be null) is the chat template the tokenizer gets when the model has none ([#saveTokenizer]).
    public static List<Path> merged(Path modelDir, Path adapterDir, Path exportDir, String dtype, int exportSizeGb, Gemm gemm, Template template) {
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
        LlamaWeights merged = adapterDir == null ? base : mergedWith(base, adapterDir, gemm);
        try {
            Files.createDirectories(exportDir);
            ObjectNode cfg = (ObjectNode) new ObjectMapper().readTree(merged.config.toJson());
            cfg.remove("quantization_config");
            cfg.put("torch_dtype", dtype.startsWith("b") ? "bfloat16" : dtype.endsWith("16") ? "float16" : "float32");
            Checkpoint.writeAtomically(exportDir.resolve("config.json"),
                    new ObjectMapper().enable(SerializationFeature.INDENT_OUTPUT).writeValueAsString(cfg) + "\n");
        } catch (IOException e) {
            throw new UncheckedIOException("cannot write " + exportDir + ": " + e.getMessage(), e);
        }
        saveTokenizer(modelDir, exportDir, template);
        Map<String, long[]> shapes = LlamaWeights.expectedShapes(merged.config);
        List<SafeTensors.Entry> entries = new ArrayList<>();
        for (var e : merged.tensors().entrySet()) entries.add(SafeTensors.Entry.ofFloats(e.getKey(), shapes.get(e.getKey()), e.getValue(), dt));
        return ShardedSafeTensors.write(exportDir, entries, exportSizeGb * 1_000_000_000L, Map.of("format", "pt"));
    }
}
