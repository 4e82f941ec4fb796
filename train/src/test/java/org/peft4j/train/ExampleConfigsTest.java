package org.peft4j.train;

import org.junit.jupiter.api.DynamicTest;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestFactory;
import org.peft4j.model.LlamaConfig;
import org.peft4j.testkit.Shared;
import org.peft4j.train.data.DatasetInfo;
import org.peft4j.train.data.DatasetLoader;
import org.peft4j.train.data.SlotTemplate;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.stream.Stream;

import static org.junit.jupiter.api.Assertions.*;

/// What the README shows and examples/ ships must run as written: every `./peft4j train` command of README.md (the
/// main job's YAML first) and every YAML under examples/ parses with [TrainConfig#load], and what it names exists
/// where it is local: the model folder, each dataset of dataset_dir/dataset_info.json with its file, the template,
/// the forgetting_text file. A model that is not a local folder must be a Hub repo id (`org/name`).
class ExampleConfigsTest {
    static final Path ROOT = Shared.root();
    static final String MAIN_JOB = "examples/train_lora/tinystories_lora_sft.yaml";

    /// The README's `./peft4j train ...` commands with their `\` continuations joined and comments cut, as argument
    /// lists after `train` (`--help-keys` is not a config).
    static List<List<String>> readmeTrainCommands() throws IOException {
        List<String> lines = Files.readAllLines(ROOT.resolve("README.md"));
        List<List<String>> out = new ArrayList<>();
        for (int i = 0; i < lines.size(); i++) {
            if (!lines.get(i).startsWith("./peft4j train ")) continue;
            StringBuilder cmd = new StringBuilder(lines.get(i));
            while (cmd.toString().stripTrailing().endsWith("\\") && i + 1 < lines.size()) {
                cmd.setLength(cmd.toString().stripTrailing().length() - 1);
                cmd.append(' ').append(lines.get(++i));
            }
            String text = cmd.toString().replaceAll("\\s+#.*$", "").strip();
            List<String> args = new ArrayList<>(Arrays.asList(text.split("\\s+")));
            args.subList(0, 2).clear();
            for (String cliOnly : List.of("--spark-master", "--spark-ranks", "--spark-input")) {   // TrainCommand's own flags, not config keys
                int at = args.indexOf(cliOnly);
                if (at >= 0) args.subList(at, Math.min(at + 2, args.size())).clear();
            }
            if (!args.contains("--help-keys")) out.add(args);
        }
        return out;
    }

    @Test
    void theReadmeRunsTheMainJob() throws IOException {
        List<List<String>> cmds = readmeTrainCommands();
        assertFalse(cmds.isEmpty(), "no ./peft4j train command found in README.md");
        assertEquals(List.of(MAIN_JOB), cmds.getFirst(), "the README's first train command is the main job");
        TrainConfig c = TrainConfig.load(ROOT.resolve(MAIN_JOB), List.of());
        // what the README says about it
        assertEquals("models/tinystories-656k", c.str("model_name_or_path"));
        assertEquals("identity_en", c.str("dataset"));
        assertEquals("saves/tinystories-656k/lora/sft", c.str("output_dir"));
        assertEquals(40, c.i("eval_steps"));
        assertEquals("Who are you?|What is your name?|Once upon a time", c.str("compare_prompts"));
        assertEquals("data/general_stories.txt", c.str("forgetting_text"));
    }

    @TestFactory
    Stream<DynamicTest> readmeTrainCommandsParse() throws IOException {
        return readmeTrainCommands().stream().map(args -> DynamicTest.dynamicTest(String.join(" ", args), () -> {
            List<String> flags = new ArrayList<>(args);
            Path yaml = !flags.getFirst().startsWith("--") ? ROOT.resolve(flags.removeFirst()) : null;
            if (yaml != null) assertTrue(Files.isRegularFile(yaml), "README names " + yaml + ", which does not exist");
            checkLocal(TrainConfig.load(yaml, flags));
        }));
    }

    @TestFactory
    Stream<DynamicTest> exampleYamlsParse() throws IOException {
        List<Path> yamls;
        try (Stream<Path> s = Files.walk(ROOT.resolve("examples"))) {
            yamls = s.filter(p -> p.toString().endsWith(".yaml") || p.toString().endsWith(".yml")).sorted().toList();
        }
        assertTrue(yamls.contains(ROOT.resolve(MAIN_JOB)), "examples/ should hold the main job: " + yamls);
        return yamls.stream().map(y -> DynamicTest.dynamicTest(ROOT.relativize(y).toString(), () -> checkLocal(TrainConfig.load(y, List.of()))));
    }

    /// The config's local references exist; relative paths are relative to the repository root, where `./peft4j` runs.
    static void checkLocal(TrainConfig c) {
        TrainArgs a = c.args();
        Path model = ROOT.resolve(a.model().nameOrPath());
        if (a.model().nameOrPath().startsWith("saves/")) {
            // made by an earlier README command (the DPO demo trains over the merged SFT model); not in a fresh checkout
        } else if (Files.isDirectory(model)) assertDoesNotThrow(() -> LlamaConfig.read(model), "model " + model);
        else assertTrue(a.model().nameOrPath().matches("[\\w.-]+/[\\w.-]+"), a.model().nameOrPath() + " is neither a local folder nor a Hub repo id");
        DatasetInfo info = DatasetInfo.load(ROOT.resolve(a.data().datasetDir()));
        List<String> names = new ArrayList<>(DatasetLoader.parseNames(a.data().dataset()));
        if (a.data().evalDataset() != null) names.addAll(DatasetLoader.parseNames(a.data().evalDataset()));
        for (String n : names) assertTrue(Files.isRegularFile(info.get(n).file()), "dataset " + n + ": " + info.get(n).file());
        assertTrue(a.data().template() == null || a.data().template().equals("model") || SlotTemplate.NAMES.contains(a.data().template()), "template " + a.data().template());
        if (a.peft4j().forgettingText() != null)
            assertTrue(Files.isRegularFile(ROOT.resolve(a.peft4j().forgettingText())), "forgetting_text " + a.peft4j().forgettingText());
        assertDoesNotThrow(() -> a.finetuning().method(), "the method builds");
    }
}
