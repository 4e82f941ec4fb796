package org.peft4j.train.fuzz;

import com.code_intelligence.jazzer.junit.FuzzTest;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.peft4j.testkit.Fuzz;
import org.peft4j.train.TrainConfig;
import org.peft4j.train.data.DatasetInfo;
import org.peft4j.train.data.DatasetLoader;

import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Arrays;
import java.util.List;
import java.util.stream.Stream;

import static org.junit.jupiter.api.Assertions.assertNotNull;

/// Fuzz targets for what a training run reads (issue 17): dataset rows in every format and the training YAML with
/// flags ([TrainConfig#load], then [TrainConfig#args], which validates every key). Contract: [Fuzz#contract]; seeds
/// in `TrainFuzzTestInputs/<target>/` (the bundled data and example configs); `scripts/fuzz.sh train datasetRows`
/// fuzzes the Jazzer twin coverage-guided.
class TrainFuzzTest {
    static final Path INPUTS = Path.of("src/test/resources/org/peft4j/train/fuzz/TrainFuzzTestInputs");

    /// dataset_info.json for the formats the first input byte chooses: the rest of the input is that dataset's file.
    static final String INFO = """
            {"alpaca": {"file_name": "rows.json"},
             "sharegpt": {"file_name": "rows.json", "formatting": "sharegpt", "columns": {"messages": "conversations", "system": "system", "tools": "tools"}},
             "ranking": {"file_name": "rows.json", "ranking": true, "columns": {"prompt": "instruction", "query": "input", "chosen": "chosen", "rejected": "rejected"}},
             "kto": {"file_name": "rows.json", "columns": {"prompt": "instruction", "query": "input", "response": "output", "kto_tag": "label"}},
             "pt": {"file_name": "rows.txt", "columns": {"prompt": "text"}},
             "jsonl": {"file_name": "rows.jsonl"},
             "openai": {"file_name": "rows.jsonl", "formatting": "sharegpt", "columns": {"messages": "messages"},
                        "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant", "system_tag": "system"}}}
            """;
    static final List<String> FORMATS = List.of("alpaca", "sharegpt", "ranking", "kto", "pt", "jsonl", "openai");

    @Tag("jazzer")
    @FuzzTest(maxDuration = "60s")
    void datasetRows(byte[] data) {
        Fuzz.contract(data, 5_000, d -> {
            Path dir = Files.createTempDirectory("fuzz-data");
            try {
                String format = FORMATS.get(d.length == 0 ? 0 : Math.floorMod(d[0], FORMATS.size()));
                byte[] rows = d.length == 0 ? d : Arrays.copyOfRange(d, 1, d.length);
                Files.writeString(dir.resolve(DatasetInfo.FILE_NAME), INFO);
                Files.write(dir.resolve(format.equals("pt") ? "rows.txt" : format.equals("jsonl") || format.equals("openai") ? "rows.jsonl" : "rows.json"), rows);
                DatasetInfo info = DatasetInfo.load(dir);
                List<String> names = List.of(format);
                Object loaded = switch (format) {
                    case "ranking" -> DatasetLoader.loadPairs(info, names, null, 42);
                    case "kto" -> DatasetLoader.loadFeedback(info, names, null, 42);
                    case "pt" -> DatasetLoader.loadTexts(info, names, null, 42);
                    default -> DatasetLoader.loadConversations(info, names, null, 42);
                };
                assertNotNull(loaded);
            } finally {
                try (Stream<Path> s = Files.list(dir)) { for (Path p : s.toList()) Files.delete(p); }
                Files.delete(dir);
            }
        });
    }

    /// The YAML text; after a NUL byte, command-line flags separated by spaces.
    @Tag("jazzer")
    @FuzzTest(maxDuration = "60s")
    void trainYaml(byte[] data) {
        Fuzz.contract(data, 5_000, d -> {
            int nul = 0;
            while (nul < d.length && d[nul] != 0) nul++;
            List<String> flags = nul < d.length
                    ? Arrays.stream(new String(d, nul + 1, d.length - nul - 1, StandardCharsets.UTF_8).split(" ")).filter(s -> !s.isEmpty()).toList()
                    : List.of();
            Path yaml = Files.createTempFile("fuzz", ".yaml");
            try {
                Files.write(yaml, Arrays.copyOf(d, nul));
                assertNotNull(TrainConfig.load(yaml, flags).args());
            } finally {
                Files.deleteIfExists(yaml);
            }
        });
    }

    @Test
    void datasetRowsMutated() { Fuzz.run("datasetRows", Fuzz.seeds(INPUTS.resolve("datasetRows")), 300, Duration.ofSeconds(5), this::datasetRows); }

    @Test
    void trainYamlMutated() { Fuzz.run("trainYaml", Fuzz.seeds(INPUTS.resolve("trainYaml")), 300, Duration.ofSeconds(5), this::trainYaml); }
}
