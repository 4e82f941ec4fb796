package org.peft4j.spark;

import com.fasterxml.jackson.databind.ObjectMapper;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.peft4j.testkit.Shared;
import org.peft4j.train.data.DatasetInfo;
import org.peft4j.train.data.DatasetLoader;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

import static org.junit.jupiter.api.Assertions.*;

/// A DataFrame's rows (as `toJSON` gives them: one JSON object a line) stand in for the file of the named
/// dataset_info.json entry; the other entries keep their files; the rows load as the file's do (no Spark needed).
class DataFrameDatasetTest {
    @Test
    void theRowsReplaceTheNamedEntrysFile(@TempDir Path tmp) throws Exception {
        Path data = Shared.root().resolve("data");
        List<String> rows = new ArrayList<>();
        var om = new ObjectMapper();
        for (var row : om.readTree(data.resolve("identity_en.json").toFile())) rows.add(om.writeValueAsString(row));
        var cfg = PeftSpark.load(null, List.of("--model_name_or_path", "m", "--output_dir", tmp.resolve("out").toString(),
                "--dataset", "identity_en", "--dataset_dir", data.toString(), "--template", "default"));

        DataFrameDataset.use(cfg, rows, tmp.resolve("dataset"));
        assertEquals(tmp.resolve("dataset"), cfg.args().data().datasetDir());
        DatasetInfo info = DatasetInfo.load(cfg.args().data().datasetDir());
        assertEquals(tmp.resolve("dataset").resolve(DataFrameDataset.ROWS_FILE).toAbsolutePath(), info.get("identity_en").file());
        assertEquals(data.resolve("identity_dpo_en.json").toAbsolutePath(), info.get("identity_dpo_en").file(), "the other entries keep their files");
        assertEquals(DatasetLoader.loadConversations(DatasetInfo.load(data), List.of("identity_en"), null, 42),
                DatasetLoader.loadConversations(info, List.of("identity_en"), null, 42));

        // a name without an entry: alpaca columns
        var other = PeftSpark.load(null, List.of("--model_name_or_path", "m", "--output_dir", "o", "--dataset", "my_rows", "--template", "default"))
                .with("dataset_dir", tmp.resolve("none").toString());
        DataFrameDataset.use(other, List.of("{\"instruction\":\"hi\",\"output\":\"there\"}"), tmp.resolve("d2"));
        assertEquals(1, DatasetLoader.loadConversations(DatasetInfo.load(tmp.resolve("d2")), List.of("my_rows"), null, 42).size());
        assertTrue(Files.isRegularFile(tmp.resolve("d2/dataset_info.json")));
    }
}
