package org.peft4j.train.data;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import org.peft4j.core.Peft4jException.ConfigException;
import org.peft4j.core.Peft4jException.FormatException;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.function.BiFunction;

/// `dataset_dir/dataset_info.json`: dataset names mapped to files, formats and column names.
/// Reference: LLaMA-Factory `data/parser.py` (`get_dataset_list`, `DatasetAttr.join`) and `data/README.md`.
public final class DatasetInfo {
    public static final String FILE_NAME = "dataset_info.json";

    private final Path dir;
    private final Map<String, DatasetSpec> specs;

    private DatasetInfo(Path dir, Map<String, DatasetSpec> specs) {
        this.dir = dir;
        this.specs = specs;
    }

    public Path dir() { return dir; }

    public Map<String, DatasetSpec> specs() { return specs; }

    public static DatasetInfo load(Path datasetDir) {
        Path file = datasetDir.resolve(FILE_NAME);
        if (!Files.isRegularFile(file))
            throw new ConfigException("dataset_dir " + datasetDir + " has no " + FILE_NAME
                    + "; point dataset_dir at the folder that holds it (LLaMA-Factory's is `data`)");
        JsonNode root;
        try {
            root = new ObjectMapper().readTree(file.toFile());
        } catch (IOException e) {
            throw new FormatException(file + " is not valid JSON: " + e.getMessage(), e);
        }
        if (root == null || !root.isObject()) throw new FormatException(file + " must hold a JSON object of dataset names");
        Map<String, DatasetSpec> specs = new LinkedHashMap<>();
        for (var e : root.properties()) specs.put(e.getKey(), parse(file, datasetDir, e.getKey(), e.getValue()));
        return new DatasetInfo(datasetDir, specs);
    }

    /// The spec of `name`; an unknown name fails with the list of names defined in the file.
    public DatasetSpec get(String name) {
        DatasetSpec s = specs.get(name);
        if (s == null) {
            List<String> local = new ArrayList<>(), hub = new ArrayList<>();
            for (DatasetSpec x : specs.values()) (x.file() != null ? local : hub).add(x.name());
            throw new ConfigException("dataset '" + name + "' is not defined in " + dir.resolve(FILE_NAME)
                    + "; datasets with a local file: " + String.join(", ", local)
                    + (hub.isEmpty() ? "" : "; hub-only (not downloadable by peft4j): " + String.join(", ", hub)));
        }
        if (s.file() == null)
            throw new ConfigException("dataset '" + name + "' is only on a hub (hf_hub_url/ms_hub_url/...), which peft4j "
                    + "cannot download; download it yourself and add \"file_name\" to its entry in " + dir.resolve(FILE_NAME));
        return s;
    }

    private static DatasetSpec parse(Path file, Path dir, String name, JsonNode n) {
        String where = file + " entry '" + name + "'";
        if (!n.isObject()) throw new FormatException(where + " must be a JSON object");
        Path data = n.hasNonNull("file_name") ? dir.resolve(text(n, "file_name", where)) : null;
        String fmt = n.hasNonNull("formatting") ? text(n, "formatting", where) : "alpaca";
        DatasetSpec.Formatting formatting = switch (fmt) {
            case "alpaca" -> DatasetSpec.Formatting.ALPACA;
            case "sharegpt" -> DatasetSpec.Formatting.SHAREGPT;
            case "openai" -> DatasetSpec.Formatting.OPENAI;
            default -> throw new FormatException(where + " has formatting '" + fmt + "'; use alpaca, sharegpt or openai");
        };
        boolean ranking = n.path("ranking").asBoolean(false);
        Integer numSamples = n.hasNonNull("num_samples") ? n.get("num_samples").asInt() : null;
        JsonNode c = n.path("columns"), t = n.path("tags");
        BiFunction<String, String, String> col = (key, def) -> c.has(key) ? (c.get(key).isNull() ? null : text(c, key, where)) : def;
        BiFunction<String, String, String> tag = (key, def) -> t.has(key) ? (t.get(key).isNull() ? null : text(t, key, where)) : def;
        var dc = DatasetSpec.Columns.DEFAULT;
        // DatasetAttr.join: a "columns" object replaces every column (absent keys become None), as LLaMA-Factory's set_attr does
        boolean hasColumns = c.isObject();
        var columns = new DatasetSpec.Columns(
                col.apply("prompt", hasColumns ? null : dc.prompt()), col.apply("query", hasColumns ? null : dc.query()),
                col.apply("response", hasColumns ? null : dc.response()), col.apply("history", null),
                col.apply("messages", hasColumns ? null : dc.messages()), col.apply("system", null), col.apply("tools", null),
                col.apply("chosen", null), col.apply("rejected", null), col.apply("kto_tag", null),
                col.apply("images", null), col.apply("videos", null), col.apply("audios", null));
        var dt = DatasetSpec.Tags.DEFAULT;
        boolean hasTags = t.isObject();
        var tags = new DatasetSpec.Tags(tag.apply("role_tag", hasTags ? null : dt.roleTag()),
                tag.apply("content_tag", hasTags ? null : dt.contentTag()), tag.apply("user_tag", hasTags ? null : dt.userTag()),
                tag.apply("assistant_tag", hasTags ? null : dt.assistantTag()),
                tag.apply("observation_tag", hasTags ? null : dt.observationTag()),
                tag.apply("function_tag", hasTags ? null : dt.functionTag()), tag.apply("system_tag", hasTags ? null : dt.systemTag()));
        return new DatasetSpec(name, data, formatting, ranking, numSamples, columns, tags);
    }

    private static String text(JsonNode n, String key, String where) {
        JsonNode v = n.get(key);
        if (!v.isTextual()) throw new FormatException(where + ": \"" + key + "\" must be a string, got " + v.getNodeType().toString().toLowerCase(Locale.ROOT));
        return v.asText();
    }
}
