package org.peft4j.train.data;

import com.fasterxml.jackson.core.JsonParser;
import com.fasterxml.jackson.core.JsonToken;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import org.peft4j.core.Peft4jException.ConfigException;
import org.peft4j.core.Peft4jException.FormatException;

import java.io.BufferedReader;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Locale;
import java.util.SplittableRandom;
import java.util.stream.Stream;

/// Loads the datasets named by `dataset: a,b` from `dataset_dir`, converts them, mixes them ("concat") and splits off
/// a validation set. Reference: LLaMA-Factory `data/loader.py` (`_load_single_dataset`, `_get_merged_dataset`),
/// `data/data_utils.py` (`merge_dataset`, `split_dataset`). Files: `.json` (array or JSON lines), `.jsonl`, `.txt`
/// (one text per line, column "text"), or a folder of such files.
public final class DatasetLoader {
    private DatasetLoader() {}

    private static final ObjectMapper JSON = new ObjectMapper();

    /// A train/validation split.
    public record Split<T>(List<T> train, List<T> eval) {}

    /// "a, b" → [a, b], as LLaMA-Factory splits `dataset`.
    public static List<String> parseNames(String datasets) {
        return Arrays.stream(datasets.split(",")).map(String::strip).filter(s -> !s.isEmpty()).toList();
    }

    /// Supervised conversations of `names`, concatenated in order (mix_strategy "concat"); `maxSamples` (null for all)
    /// keeps the first rows of each dataset; `seed` drives dataset_info's `num_samples` sampling.
    public static List<Conversation> loadConversations(DatasetInfo info, List<String> names, Integer maxSamples, long seed) {
        List<Conversation> all = new ArrayList<>();
        for (String name : names) {
            DatasetSpec spec = info.get(name);
            checkSupervised(spec);
            for (Converters.Row row : sample(spec, readRows(spec.file()), maxSamples, seed))
                all.add(Converters.convert(spec, row));
        }
        return all;
    }

    /// Preference pairs of `names` (`ranking: true` datasets), as [#loadConversations] for stage dpo: each row gives
    /// {chosen, rejected}, two conversations with the same prompt.
    public static List<Conversation[]> loadPairs(DatasetInfo info, List<String> names, Integer maxSamples, long seed) {
        List<Conversation[]> all = new ArrayList<>();
        for (String name : names) {
            DatasetSpec spec = info.get(name);
            if (!spec.ranking())
                throw new ConfigException("dataset '" + name + "' is not a ranking dataset; stage dpo needs pairs: set \"ranking\": true "
                        + "and \"chosen\"/\"rejected\" columns in its dataset_info.json entry");
            if (spec.columns().ktoTag() != null)
                throw new ConfigException("dataset '" + name + "' is a KTO dataset (kto_tag: unpaired answers labelled good or bad); use it with stage kto");
            for (Converters.Row row : sample(spec, readRows(spec.file()), maxSamples, seed))
                all.add(Converters.pair(spec, row));
        }
        return all;
    }

    /// Labelled conversations of `names` for stage kto: datasets with a `kto_tag` column (a JSON boolean per row,
    /// true = desirable), converted as for SFT. Reference: LLaMA-Factory `converter.py` (`if self.dataset_attr.kto_tag
    /// and isinstance(example[self.dataset_attr.kto_tag], bool)`); a row whose tag is not a boolean is an error here,
    /// where LLaMA-Factory would silently train it as a plain example.
    public static List<Feedback.Labelled> loadFeedback(DatasetInfo info, List<String> names, Integer maxSamples, long seed) {
        List<Feedback.Labelled> all = new ArrayList<>();
        for (String name : names) {
            DatasetSpec spec = info.get(name);
            String tag = spec.columns().ktoTag();
            if (tag == null)
                throw new ConfigException("dataset '" + name + "' has no kto_tag column; stage kto needs answers labelled good or bad: "
                        + "add \"kto_tag\": \"<column>\" to the columns of its dataset_info.json entry (a true/false column), or use stage sft/dpo");
            if (spec.ranking())
                throw new ConfigException("dataset '" + name + "' is a ranking (chosen/rejected) dataset; stage kto reads unpaired answers with a kto_tag; use stage dpo");
            checkTextOnly(spec);
            for (Converters.Row row : sample(spec, readRows(spec.file()), maxSamples, seed)) {
                Conversation c = Converters.convert(spec, row);
                JsonNode t = row.node().get(tag);
                if (t == null || !t.isBoolean())
                    throw row.error(tag, (t == null ? "is missing" : "is " + t) + "; a kto_tag must be true (a desirable answer) or false (an undesirable one)");
                all.add(new Feedback.Labelled(c, t.booleanValue()));
            }
        }
        return all;
    }

    /// Pre-training texts (`stage: pt`) of `names`: the prompt column (and query, joined by "\n") of alpaca-formatted
    /// datasets, e.g. c4_demo's and wiki_demo's "text".
    public static List<String> loadTexts(DatasetInfo info, List<String> names, Integer maxSamples, long seed) {
        List<String> all = new ArrayList<>();
        for (String name : names) {
            DatasetSpec spec = info.get(name);
            if (spec.formatting() != DatasetSpec.Formatting.ALPACA)
                throw new ConfigException("dataset '" + name + "' is " + spec.formatting().toString().toLowerCase(Locale.ROOT)
                        + "-formatted; pre-training (stage pt) reads alpaca-formatted text columns, as LLaMA-Factory does");
            for (Converters.Row row : sample(spec, readRows(spec.file()), maxSamples, seed))
                all.add(Converters.alpacaPrompt(spec.columns(), row));
        }
        return all;
    }

    /// Every conversation with `{{key}}` replaced by its value (identity.json's `{{name}}`, `{{author}}`).
    public static List<Conversation> fillPlaceholders(List<Conversation> conversations, java.util.Map<String, String> values) {
        return conversations.stream().map(c -> c.fillPlaceholders(values)).toList();
    }

    /// HF `Dataset.train_test_split(test_size=valSize, seed)` as LLaMA-Factory calls it: `valSize` > 1 is a count, else
    /// a fraction with ceil(valSize·n) validation items; a seeded permutation puts its first items in eval, the rest in
    /// train (both in permutation order). Deterministic in `seed`, though not the same permutation as numpy's.
    public static <T> Split<T> split(List<T> all, double valSize, long seed) {
        int n = all.size();
        if (valSize <= 1e-6) return new Split<>(List.copyOf(all), List.of());
        int nEval = valSize > 1 ? (int) valSize : (int) Math.ceil(valSize * n);
        if (nEval >= n || nEval <= 0)
            throw new ConfigException("val_size " + valSize + " leaves " + (n - nEval) + " training and " + nEval
                    + " validation items out of " + n + "; choose a smaller fraction or count");
        int[] perm = permutation(n, seed);
        List<T> eval = new ArrayList<>(nEval), train = new ArrayList<>(n - nEval);
        for (int i = 0; i < n; i++) (i < nEval ? eval : train).add(all.get(perm[i]));
        return new Split<>(train, eval);
    }

    /// A Fisher–Yates permutation of 0..n-1 from `seed`.
    static int[] permutation(int n, long seed) {
        int[] p = new int[n];
        for (int i = 0; i < n; i++) p[i] = i;
        SplittableRandom rng = new SplittableRandom(seed);
        for (int i = n - 1; i > 0; i--) {
            int j = rng.nextInt(i + 1);
            int t = p[i]; p[i] = p[j]; p[j] = t;
        }
        return p;
    }

    private static void checkSupervised(DatasetSpec spec) {
        var c = spec.columns();
        if (spec.ranking() || c.chosen() != null || c.rejected() != null)
            throw new ConfigException("dataset '" + spec.name() + "' is a preference (ranking) dataset; use it with stage dpo or rm "
                    + "(for stage sft, turn it into alpaca/sharegpt rows first)");
        if (c.ktoTag() != null)
            throw new ConfigException("dataset '" + spec.name() + "' is a KTO dataset (kto_tag: answers labelled good or bad); use it with stage kto");
        checkTextOnly(spec);
    }

    private static void checkTextOnly(DatasetSpec spec) {
        var c = spec.columns();
        if (c.images() != null || c.videos() != null || c.audios() != null)
            throw new ConfigException("dataset '" + spec.name() + "' is multimodal (images/videos/audios), which peft4j does not support");
    }

    /// `num_samples` from dataset_info (seeded sampling, with repeats when larger than the file), then `max_samples`.
    private static List<Converters.Row> sample(DatasetSpec spec, List<Converters.Row> rows, Integer maxSamples, long seed) {
        if (spec.numSamples() != null) {
            int target = spec.numSamples();
            List<Converters.Row> picked = new ArrayList<>(target);
            while (picked.size() + rows.size() <= target) picked.addAll(rows);
            int[] perm = permutation(rows.size(), seed);
            for (int i = 0; picked.size() < target; i++) picked.add(rows.get(perm[i]));
            rows = picked;
        }
        if (maxSamples != null && maxSamples < rows.size()) rows = rows.subList(0, maxSamples);
        return rows;
    }

    /// The rows of a data file or of every file in a folder (sorted by name), with their line numbers.
    static List<Converters.Row> readRows(Path path) {
        if (Files.isDirectory(path)) {
            List<Converters.Row> rows = new ArrayList<>();
            try (Stream<Path> s = Files.list(path)) {
                for (Path f : s.filter(Files::isRegularFile).sorted().toList()) rows.addAll(readRows(f));
            } catch (IOException e) {
                throw new ConfigException("cannot list dataset folder " + path + ": " + e.getMessage(), e);
            }
            return rows;
        }
        if (!Files.isRegularFile(path))
            throw new ConfigException("dataset file " + path + " does not exist; check file_name in " + DatasetInfo.FILE_NAME);
        String name = path.getFileName().toString();
        String ext = name.substring(name.lastIndexOf('.') + 1).toLowerCase(Locale.ROOT);
        try {
            return switch (ext) {
                case "json" -> readJson(path);
                case "jsonl" -> readJsonLines(path);
                case "txt" -> readText(path);
                default -> throw new ConfigException("dataset file " + path + " has type '." + ext
                        + "'; peft4j reads .json, .jsonl and .txt (convert csv/parquet/arrow to jsonl)");
            };
        } catch (IOException e) {
            throw new FormatException("cannot read dataset file " + path + ": " + e.getMessage(), e);
        }
    }

    private static List<Converters.Row> readJson(Path path) throws IOException {
        try (BufferedReader r = Files.newBufferedReader(path, StandardCharsets.UTF_8);
             JsonParser p = JSON.createParser(r)) {
            JsonToken first = p.nextToken();
            if (first != JsonToken.START_ARRAY) return readJsonLines(path); // HF's json loader also takes JSON lines
            List<Converters.Row> rows = new ArrayList<>();
            while (true) {
                JsonToken t;
                try {
                    t = p.nextToken();
                } catch (IOException e) {
                    throw new FormatException(path + " row " + rows.size() + ": malformed JSON: " + e.getMessage(), e);
                }
                if (t == JsonToken.END_ARRAY || t == null) break;
                int line = p.currentTokenLocation().getLineNr();
                JsonNode node;
                try {
                    node = p.readValueAsTree();
                } catch (IOException e) {
                    throw new FormatException(path + " row " + rows.size() + " (line " + line + "): malformed JSON: " + e.getMessage(), e);
                }
                rows.add(checkObject(new Converters.Row(path, rows.size(), line, node)));
            }
            return rows;
        }
    }

    private static List<Converters.Row> readJsonLines(Path path) throws IOException {
        List<Converters.Row> rows = new ArrayList<>();
        try (BufferedReader r = Files.newBufferedReader(path, StandardCharsets.UTF_8)) {
            String s;
            for (int line = 1; (s = r.readLine()) != null; line++) {
                if (s.isBlank()) continue;
                JsonNode node;
                try {
                    node = JSON.readTree(s);
                } catch (IOException e) {
                    throw new FormatException(path + " row " + rows.size() + " (line " + line + "): malformed JSON: "
                            + (e instanceof com.fasterxml.jackson.core.JsonProcessingException j ? j.getOriginalMessage() : e.getMessage()), e);
                }
                rows.add(checkObject(new Converters.Row(path, rows.size(), line, node)));
            }
        }
        return rows;
    }

    private static List<Converters.Row> readText(Path path) throws IOException {
        List<Converters.Row> rows = new ArrayList<>();
        try (BufferedReader r = Files.newBufferedReader(path, StandardCharsets.UTF_8)) {
            String s;
            for (int line = 1; (s = r.readLine()) != null; line++)
                rows.add(new Converters.Row(path, rows.size(), line, JSON.createObjectNode().put("text", s)));
        }
        return rows;
    }

    private static Converters.Row checkObject(Converters.Row row) {
        if (!row.node().isObject()) throw new FormatException(row.where() + ": must be a JSON object, got " + row.node().getNodeType());
        return row;
    }
}
