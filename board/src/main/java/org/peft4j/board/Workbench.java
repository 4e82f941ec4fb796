package org.peft4j.board;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import org.peft4j.core.DType;
import org.peft4j.core.Gemms;
import org.peft4j.core.Peft4jException;
import org.peft4j.model.LlamaConfig;
import org.peft4j.model.Models;
import org.peft4j.model.adapter.AdapterSet;
import org.peft4j.model.adapter.LoadedAdapter;
import org.peft4j.model.llama.LlamaModel;
import org.peft4j.model.llama.LlamaWeights;
import org.peft4j.model.quant.QuantizedModel;
import org.peft4j.quant.QuantType;
import org.peft4j.tokenizer.Tokenizer;
import org.peft4j.train.Evaluation;
import org.peft4j.train.Export;
import org.peft4j.train.TrainArgs;
import org.peft4j.train.TrainConfig;
import org.peft4j.train.TrainData;
import org.peft4j.train.data.Conversation;
import org.peft4j.train.data.DatasetInfo;
import org.peft4j.train.data.DatasetLoader;
import org.peft4j.train.data.DatasetSpec;
import org.peft4j.train.data.EncodedTurn;
import org.peft4j.train.data.Feedback;
import org.peft4j.train.data.Template;
import org.peft4j.train.data.TextEncoder;
import org.peft4j.train.data.TokenizedExample;
import org.peft4j.train.estimate.MemoryEstimate;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.lang.management.ManagementFactory;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

/// The board's one-shot actions, each a thin caller of the library function the CLI command calls: the datasets of
/// a dataset_info.json and a preview of their rows as the template renders them (`TrainData`, as training encodes
/// them), the memory estimate of a config (`peft4j estimate`'s [MemoryEstimate]), loss and perplexity of a base and of
/// adapters (`peft4j eval`'s [Evaluation]), and export (`peft4j export`'s [Export#merged], `peft4j quantize`'s
/// [QuantizedModel]).
public final class Workbench {
    private static final ObjectMapper JSON = new ObjectMapper();

    private final Roots roots;
    private final TrainForm form;
    private final String gemm;

    Workbench(Roots roots, TrainForm form, String gemm) {
        this.roots = roots;
        this.form = form;
        this.gemm = gemm;
    }

    // ---- datasets

    /// The datasets of `datasetDir` (inside the data folder): name, format, whether it holds preference pairs.
    public ArrayNode datasets(String datasetDir) {
        Path dir = roots.inData(datasetDir == null || datasetDir.isBlank() ? "." : datasetDir, "dataset_dir");
        DatasetInfo info;
        try {
            info = DatasetInfo.load(dir);
        } catch (Peft4jException e) {
            throw BoardException.invalid("dataset_dir", e.getMessage());
        }
        ArrayNode out = JSON.createArrayNode();
        for (DatasetSpec s : info.specs().values())
            out.addObject().put("name", s.name()).put("formatting", s.formatting().name().toLowerCase()).put("ranking", s.ranking())
                    .put("file", s.file().getFileName().toString());
        return out;
    }

    /// The first `rows` rows of each dataset of the form, as the template renders them: per turn the prompt and the
    /// response text with their token counts (what training masks and what it learns); stage pt shows the texts,
    /// ranking datasets the rejected answer too, KTO datasets each row's label.
    public ObjectNode preview(Map<String, String> values, int rows) {
        if (rows < 1 || rows > 50) throw BoardException.invalid("rows", "rows must be in [1, 50], got " + rows);
        TrainConfig c = form.config(withOutputDir(values));
        TrainArgs a = c.args();
        Path modelDir = Path.of(a.model().nameOrPath());
        Tokenizer tok = Tokenizer.load(modelDir);
        TextEncoder enc = TrainData.encoder(tok);
        ObjectNode out = JSON.createObjectNode();
        ArrayNode sets = out.putArray("datasets");
        try {
            Template template = TrainData.template(a.data(), modelDir);
            DatasetInfo info = DatasetInfo.load(a.data().datasetDir());
            out.put("template", template.name());
            for (String name : DatasetLoader.parseNames(a.data().dataset())) {
                ObjectNode set = sets.addObject().put("name", name);
                ArrayNode list = set.putArray("rows");
                long seed = a.training().seed();
                if (a.finetuning().stage().equals("pt")) {
                    for (String t : DatasetLoader.loadTexts(info, List.of(name), rows, seed))
                        list.addObject().putArray("turns").addObject().put("prompt", "").put("prompt_tokens", 0)
                                .put("response", t).put("response_tokens", tok.encode(t, false).length);
                } else if (info.get(name).columns().ktoTag() != null) {
                    for (Feedback.Labelled f : DatasetLoader.loadFeedback(info, List.of(name), rows, seed))
                        list.addObject().put("label", f.desirable() ? "desirable" : "undesirable").set("turns", turns(template, enc, tok, f.conversation()));
                } else if (info.get(name).ranking()) {
                    for (Conversation[] p : DatasetLoader.loadPairs(info, List.of(name), rows, seed)) {
                        ObjectNode row = list.addObject();
                        row.set("turns", turns(template, enc, tok, p[0]));
                        row.set("rejected", turns(template, enc, tok, p[1]));
                    }
                } else {
                    for (Conversation conv : DatasetLoader.loadConversations(info, List.of(name), rows, seed))
                        list.addObject().set("turns", turns(template, enc, tok, conv));
                }
            }
        } catch (BoardException e) {
            throw e;
        } catch (Peft4jException e) {
            throw BoardException.invalid(fieldOr(e.getMessage(), "dataset"), e.getMessage());
        }
        return out;
    }

    private static ArrayNode turns(Template template, TextEncoder enc, Tokenizer tok, Conversation c) {
        ArrayNode out = JSON.createArrayNode();
        for (EncodedTurn t : template.encodeMultiturn(enc, c))
            out.addObject().put("prompt", tok.decode(t.prompt(), false)).put("prompt_tokens", t.prompt().length)
                    .put("response", tok.decode(t.response(), false)).put("response_tokens", t.response().length);
        return out;
    }

    // ---- memory

    /// The predicted peak memory of the form's run (the planned sequence length: the longest example, at most
    /// cutoff_len) against this JVM's heap limit, where the board trains; `fits` false comes with a warning.
    public ObjectNode estimate(Map<String, String> values) {
        TrainConfig c = form.config(withOutputDir(values));
        TrainArgs a = c.args();
        Path modelDir = Path.of(a.model().nameOrPath());
        LlamaConfig lc = LlamaConfig.read(modelDir.resolve("config.json"));
        boolean quantized = a.model().quantizationBit() != null || QuantizedModel.isQuantized(modelDir);
        int seq;
        try {
            seq = Math.min(a.data().cutoffLen(), TrainData.prepare(a, Tokenizer.load(modelDir), modelDir).maxLength());
        } catch (Peft4jException e) {
            throw BoardException.invalid(fieldOr(e.getMessage(), "dataset"), e.getMessage());
        }
        int batch = a.training().perDeviceTrainBatchSize();   // pairs for stage dpo, which runs two rows each
        MemoryEstimate e;
        try {
            e = MemoryEstimate.of(a, lc, a.finetuning().method(), quantized, seq);
        } catch (Peft4jException ex) {
            throw BoardException.invalid(fieldOr(ex.getMessage(), "per_device_train_batch_size"), ex.getMessage());
        }
        long heap = Runtime.getRuntime().maxMemory();
        ObjectNode out = JSON.createObjectNode().put("batch", batch).put("seq", seq);
        ObjectNode parts = out.putObject("components");
        parts.put("weights", e.weights()).put("adapters", e.adapters()).put("gradients", e.gradients()).put("optimizer", e.optimizer())
                .put("activations", e.activations()).put("logits", e.logits()).put("scratch", e.scratch()).put("runtime", e.runtime());
        out.put("total", e.total()).put("heap_limit", heap).put("fits", e.total() <= heap).put("table", e.toTable());
        if (ManagementFactory.getOperatingSystemMXBean() instanceof com.sun.management.OperatingSystemMXBean os)
            out.put("physical_memory", os.getTotalMemorySize());
        if (e.total() > heap)
            out.put("warning", String.format("the run needs about %.0f MiB, over this board's heap limit of %.0f MiB; lower per_device_train_batch_size "
                    + "or cutoff_len, turn on gradient_checkpointing, use quantization_bit 4, or restart the board with a larger -Xmx",
                    e.total() / 1048576.0, heap / 1048576.0));
        return out;
    }

    // ---- evaluation

    /// Loss and perplexity on a dataset (rendered with the template) and/or a plain-text file (the forgetting check),
    /// of the base and of each adapter; `body`: model, adapters [..], dataset, dataset_dir, template, cutoff_len,
    /// max_samples, text.
    public ObjectNode evaluate(JsonNode body) {
        Path modelDir = roots.model(text(body, "model"), "model");
        List<Path> adapters = new ArrayList<>();
        if (body.has("adapters")) for (JsonNode n : body.get("adapters")) if (!n.asText().isBlank()) adapters.add(adapter(n.asText(), "adapters"));
        String dataset = text(body, "dataset"), textFile = text(body, "text");
        if (dataset == null && textFile == null) throw BoardException.invalid("dataset", "choose a dataset and/or a text file to evaluate on");
        LlamaModel model = Models.load(modelDir, Gemms.get(gemm));
        Tokenizer tok = Tokenizer.load(modelDir);
        List<String> names = new ArrayList<>();
        List<List<TokenizedExample>> sets = new ArrayList<>();
        if (dataset != null) {
            Map<String, String> v = new HashMap<>();
            v.put("model_name_or_path", modelDir.toString());
            v.put("dataset", dataset);
            for (String k : List.of("dataset_dir", "template", "cutoff_len", "max_samples")) if (text(body, k) != null) v.put(k, text(body, k));
            try {
                sets.add(TrainData.prepare(form.config(withOutputDir(v)), tok, modelDir).train());
            } catch (BoardException e) {
                throw e;
            } catch (Peft4jException e) {
                throw BoardException.invalid(fieldOr(e.getMessage(), "dataset"), e.getMessage());
            }
            names.add(dataset);
        }
        if (textFile != null) {
            Path f = roots.inData(textFile, "text");
            if (!Files.isRegularFile(f)) throw BoardException.invalid("text", "'" + textFile + "' is not a file in the data folder");
            try {
                sets.add(Evaluation.texts(Files.readAllLines(f), t -> tok.encode(t, true)));
            } catch (IOException e) {
                throw BoardException.invalid("text", "cannot read " + textFile + ": " + e.getMessage());
            }
            names.add(textFile);
        }
        ObjectNode out = JSON.createObjectNode();
        ArrayNode models = out.putArray("models").add("base");
        List<LoadedAdapter> loaded = new ArrayList<>();
        for (Path a : adapters) {
            loaded.add(LoadedAdapter.read(roots.show(a), a, model.config));
            models.add(roots.show(a));
        }
        ArrayNode rows = out.putArray("rows");
        for (int i = 0; i < sets.size(); i++) {
            ObjectNode row = rows.addObject().put("data", names.get(i));
            ArrayNode results = row.putArray("results");
            results.add(result(Evaluation.evaluate(model, sets.get(i))));
            for (LoadedAdapter a : loaded) results.add(result(Evaluation.evaluate(model, a, sets.get(i))));
        }
        return out;
    }

    private static ObjectNode result(Evaluation.Result r) {
        return JSON.createObjectNode().put("loss", r.loss()).put("perplexity", r.perplexity()).put("tokens", r.tokens());
    }

    // ---- export

    /// Merges the adapter (if any) into the base and writes `export_dir` (inside the saves folder): a Hugging Face
    /// folder in export_dtype with shards of at most export_size GB (export_format hf), a bitsandbytes 4-bit folder (nf4,
    /// fp4), or one llama.cpp GGUF file with export_quant f32, f16, bf16, q8_0 or q4_0 (gguf).
    public ObjectNode export(JsonNode body) {
        Path modelDir = roots.model(text(body, "model"), "model");
        String a = text(body, "adapter");
        Path adapter = a == null ? null : adapter(a, "adapter");
        String dir = text(body, "export_dir");
        if (dir == null) throw BoardException.invalid("export_dir", "choose an export folder (inside the saves folder)");
        Path out = roots.inSaves(dir, "export_dir");
        if (out.equals(roots.saves())) throw BoardException.invalid("export_dir", "choose a folder inside the saves folder, not the folder itself");
        if (Files.isRegularFile(out.resolve("training_args.json")) || Files.isRegularFile(out.resolve("adapter_config.json")) || nonEmptyNonModel(out))
            throw BoardException.invalid("export_dir", "'" + dir + "' already holds files that are not an exported model (a run?); choose a new or empty folder");
        String format = text(body, "export_format") == null ? "hf" : text(body, "export_format");
        List<String> applies = switch (format) {
            case "hf" -> List.of("export_dtype", "export_size");
            case "gguf" -> List.of("export_quant");
            default -> List.of();
        };
        for (String k : List.of("export_dtype", "export_size", "export_quant"))
            if (text(body, k) != null && !applies.contains(k))
                throw BoardException.invalid(k, k + " does not apply to export_format " + format + (applies.isEmpty() ? "" : "; it takes " + String.join(", ", applies)));
        String dtype = text(body, "export_dtype") == null ? "float32" : text(body, "export_dtype");
        int size = number(body, "export_size", 5);
        List<Path> files;
        try {
            switch (format) {
                case "hf" -> files = Export.merged(modelDir, adapter, out, dtype, size, Gemms.get(gemm));
                case "nf4", "fp4" -> files = quantized(modelDir, adapter, out, QuantType.of(format));
                case "gguf" -> files = List.of(Export.mergedGguf(modelDir, adapter, out, text(body, "export_quant") == null ? "f32" : text(body, "export_quant"),
                        Gemms.get(gemm)));
                default -> throw BoardException.invalid("export_format", "export_format must be hf, nf4, fp4 or gguf, got '" + format + "'");
            }
        } catch (BoardException e) {
            throw e;
        } catch (Peft4jException e) {
            String m = e.getMessage();
            throw BoardException.invalid(m.startsWith("export_size") ? "export_size" : m.startsWith("export_dtype") ? "export_dtype"
                    : m.toLowerCase().contains("quant") && format.equals("gguf") ? "export_quant" : null, m);
        }
        ObjectNode o = JSON.createObjectNode().put("export_dir", roots.show(out)).put("format", format);
        ArrayNode f = o.putArray("files");
        try (var s = Files.list(out)) {
            s.map(p -> p.getFileName().toString()).sorted().forEach(f::add);
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
        o.put("shards", files.size());
        return o;
    }

    /// `peft4j quantize --adapter`: the adapter merged into the float base, then the linears in 4-bit.
    private List<Path> quantized(Path modelDir, Path adapter, Path out, QuantType type) {
        if (QuantizedModel.isQuantized(modelDir)) throw BoardException.invalid("model", modelDir + " is already 4-bit; export it as an HF folder instead");
        LlamaWeights w = Models.loadWeights(modelDir);
        if (adapter != null) w = AdapterSet.mergedCopy(Gemms.get(gemm), w, LoadedAdapter.read("export", adapter, w.config));
        QuantizedModel q = QuantizedModel.quantize(w, type, 64, true);
        q.save(out, DType.BF16);
        try {
            for (String f : Export.COPIED)
                if (Files.exists(modelDir.resolve(f))) Files.copy(modelDir.resolve(f), out.resolve(f), StandardCopyOption.REPLACE_EXISTING);
            try (var s = Files.list(out)) {
                return s.filter(p -> p.getFileName().toString().endsWith(".safetensors")).toList();
            }
        } catch (IOException e) {
            throw new UncheckedIOException("cannot write " + out + ": " + e.getMessage(), e);
        }
    }

    // ---- helpers

    /// A folder with files but no config.json: not a model an earlier export wrote, so not one to overwrite.
    private static boolean nonEmptyNonModel(Path dir) {
        if (!Files.isDirectory(dir) || Files.isRegularFile(dir.resolve("config.json"))) return false;
        try (var s = Files.list(dir)) {
            return s.findAny().isPresent();
        } catch (IOException e) {
            return true;
        }
    }

    /// An adapter folder inside the saves folder (a PEFT folder: adapter_config.json).
    Path adapter(String value, String field) {
        Path p = roots.inSaves(value, field);
        if (!Files.isRegularFile(p.resolve("adapter_config.json")))
            throw BoardException.invalid(field, "'" + value + "' holds no adapter_config.json; choose a run that saved an adapter");
        return p;
    }

    /// The values with a stand-in output_dir when none is set (previews and estimates write nothing).
    private static Map<String, String> withOutputDir(Map<String, String> values) {
        Map<String, String> v = new HashMap<>(values);
        if (v.get("output_dir") == null || v.get("output_dir").isBlank()) v.put("output_dir", ".preview");
        return v;
    }

    private static String fieldOr(String message, String fallback) {
        String f = TrainForm.fieldOf(message);
        return f != null ? f : fallback;
    }

    static String text(JsonNode body, String field) {
        JsonNode n = body.get(field);
        return n == null || n.isNull() || n.asText().isBlank() ? null : n.asText().strip();
    }

    static int number(JsonNode body, String field, int fallback) {
        String t = text(body, field);
        if (t == null) return fallback;
        try {
            return Integer.parseInt(t);
        } catch (NumberFormatException e) {
            throw BoardException.invalid(field, "'" + field + "' must be an integer, got '" + t + "'");
        }
    }
}
