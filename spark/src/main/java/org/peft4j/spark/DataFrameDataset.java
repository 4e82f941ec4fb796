package org.peft4j.spark;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import org.apache.spark.sql.Dataset;
import org.apache.spark.sql.Row;
import org.peft4j.core.Peft4jException.ConfigException;
import org.peft4j.train.TrainConfig;
import org.peft4j.train.data.DatasetInfo;
import org.peft4j.train.data.DatasetLoader;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;

/// A DataFrame as the rows of the run's dataset: `dataset` names one dataset, whose dataset_info.json entry (in
/// dataset_dir, when it has one) gives the formatting and the columns, as for a file; the DataFrame's rows replace
/// the entry's file, in the order the DataFrame collects them (sort it, e.g. `orderBy`, if its source does not fix
/// an order). A name without an entry reads the rows as alpaca (instruction, input, output), LLaMA-Factory's default.
///
/// The driver collects the rows as JSON lines (Spark's `toJSON`; a fine-tuning set is megabytes) and broadcasts
/// them; each task writes them and a dataset_info.json into a local folder and trains from it, so every rank reads
/// the same rows and shards them exactly as it shards a file's: the seeded shuffle of the whole set, then rank r's
/// rows of each global batch ([org.peft4j.train.Trainer#collective]).
final class DataFrameDataset {
    private DataFrameDataset() {}

    static final String ROWS_FILE = "dataframe.jsonl";
    private static final ObjectMapper JSON = new ObjectMapper();

    /// Checks on the driver that `cfg` names one dataset for the DataFrame to fill, then collects its rows.
    static List<String> collect(TrainConfig cfg, Dataset<Row> data) {
        name(cfg);
        List<String> rows = data.toJSON().collectAsList();
        if (rows.isEmpty()) throw new ConfigException("the DataFrame given as the dataset has no rows");
        return rows;
    }

    /// The one dataset name of `dataset`.
    static String name(TrainConfig cfg) {
        String ds = cfg.args().data().dataset();
        List<String> names = ds == null ? List.of() : DatasetLoader.parseNames(ds);
        if (names.size() != 1)
            throw new ConfigException("a DataFrame replaces the rows of one dataset, but dataset is " + (names.isEmpty() ? "not set" : "'" + ds + "'")
                    + "; set dataset to the one name whose dataset_info.json entry describes the DataFrame's columns (or any name: alpaca columns)");
        return names.getFirst();
    }

    /// Writes `rows` and a dataset_info.json into `dir` and points `cfg`'s dataset_dir there. The other entries of
    /// the original dataset_info.json (eval_dataset's, say) keep their files, by absolute path.
    static void use(TrainConfig cfg, List<String> rows, Path dir) {
        String name = name(cfg);
        Path original = cfg.args().data().datasetDir();
        try {
            Files.createDirectories(dir);
            Path data = dir.resolve(ROWS_FILE).toAbsolutePath();
            Files.write(data, rows, StandardCharsets.UTF_8);
            Path infoFile = original == null ? null : original.resolve(DatasetInfo.FILE_NAME);
            ObjectNode info = infoFile != null && Files.isRegularFile(infoFile) ? (ObjectNode) JSON.readTree(infoFile.toFile()) : JSON.createObjectNode();
            for (var e : info.properties()) {
                JsonNode f = e.getValue().get("file_name");
                if (f != null && f.isTextual() && e.getValue() instanceof ObjectNode o)
                    o.put("file_name", original.resolve(f.asText()).toAbsolutePath().toString());
            }
            ObjectNode entry = info.get(name) instanceof ObjectNode o ? o : info.putObject(name);
            entry.put("file_name", data.toString());
            Files.writeString(dir.resolve(DatasetInfo.FILE_NAME), JSON.writerWithDefaultPrettyPrinter().writeValueAsString(info));
        } catch (IOException e) {
            throw new UncheckedIOException("cannot write the DataFrame's rows to " + dir + ": " + e.getMessage(), e);
        }
        cfg.with("dataset_dir", dir.toString());
    }
}
