package org.peft4j.cli;

import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.peft4j.core.Gemms;
import org.peft4j.model.Models;
import org.peft4j.model.llama.LlamaModel;
import org.peft4j.testkit.Shared;
import org.peft4j.tokenizer.Tokenizer;
import org.peft4j.train.Evaluation;
import org.peft4j.train.TrainConfig;
import org.peft4j.train.TrainData;
import org.peft4j.train.data.TokenizedExample;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

import static org.junit.jupiter.api.Assertions.*;

/// `train --compare ... --general-text ...`: the before/after table on stdout. Its numbers are recomputed here with
/// [Evaluation] on the base and on the base with the saved adapter (loaded unmerged), and must match to the printed
/// digits; training must lower the validation loss; the forgetting check must be there.
class TrainCompareTest {
    /// Printed with 3 decimals (loss) and 2 (perplexity); the recipe merges the adapter, this test does not (~1e-6).
    static final double LOSS_PRINTED = 0.0005 + 1e-5, PPL_PRINTED = 0.005;
    static final Pattern ROW = Pattern.compile("^(validation set \\(learned\\)|general text \\(forgetting check\\))\\s+"
            + "(-?[\\d.]+) \\(\\s*([\\d.]+)\\)\\s+(-?[\\d.]+) \\(\\s*([\\d.]+)\\)$");

    @BeforeAll
    static void home() { System.setProperty("peft4j.home", Shared.root().toString()); }

    @Test
    void compareTableShowsWhatWasLearnedAndWhatWasForgotten(@TempDir Path tmp) throws Exception {
        Path root = Shared.root(), model = root.resolve("models/tinystories-656k"), general = root.resolve("data/general_stories.txt");
        Path out = tmp.resolve("out");
        List<String> keys = List.of("--model_name_or_path", model.toString(), "--dataset", "identity_en", "--dataset_dir", root.resolve("data").toString(),
                "--template", "default", "--cutoff_len", "96", "--lora_rank", "8", "--per_device_train_batch_size", "4", "--learning_rate", "3e-3",
                "--max_steps", "60", "--val_size", "3", "--save_steps", "0", "--gemm", "java", "--output_dir", out.toString());
        List<String> args = new ArrayList<>(List.of("train"));
        args.addAll(keys);
        args.addAll(List.of("--compare", "Who are you?|Once upon a time", "--general-text", general.toString()));
        CliTest.Out o = CliTest.run(null, args.toArray(String[]::new));
        assertEquals(0, o.code(), o.stderr());

        for (String line : List.of("peft4j train: resolved configuration", "  compare_prompts", "data: ", "model: lora, ", "done: 60 steps", "saved to " + out))
            assertTrue(o.stderr().contains(line), "stderr lacks '" + line + "':\n" + o.stderr());
        List<String> lines = o.stdout().lines().toList();
        assertTrue(lines.contains("=== before and after fine-tuning (greedy) ==="), o.stdout());
        for (String q : List.of("Q: Who are you?", "Q: Once upon a time")) {
            int i = lines.indexOf(q);
            assertTrue(i >= 0 && lines.get(i + 1).startsWith("  before: ") && lines.get(i + 2).startsWith("  after:  "), o.stdout());
        }
        assertTrue(lines.contains("=== held-out loss (perplexity) ===            base            tuned"), o.stdout());

        Tokenizer tok = Tokenizer.load(model);
        List<TokenizedExample> val = TrainData.prepare(TrainConfig.load(null, keys), tok, model).eval();
        List<TokenizedExample> texts = Evaluation.texts(Files.readAllLines(general), s -> tok.encode(s, true));
        var gemm = Gemms.get("java");
        LlamaModel base = Models.load(model, gemm), tuned = Models.load(model, gemm);
        var t = tuned.loadAdapter("t", out);
        double[] valRow = row(lines, "validation set (learned)"), genRow = row(lines, "general text (forgetting check)");
        assertPrinted(Evaluation.evaluate(base, val), valRow[0], valRow[1], "validation, base");
        assertPrinted(Evaluation.evaluate(tuned, t, val), valRow[2], valRow[3], "validation, tuned");
        assertPrinted(Evaluation.evaluate(base, texts), genRow[0], genRow[1], "general text, base");
        assertPrinted(Evaluation.evaluate(tuned, t, texts), genRow[2], genRow[3], "general text, tuned");
        assertTrue(valRow[2] < valRow[0] / 2, "the validation loss should fall clearly: " + valRow[0] + " -> " + valRow[2]);
    }

    /// {base loss, base perplexity, tuned loss, tuned perplexity} of the table row named `what`.
    static double[] row(List<String> lines, String what) {
        for (String l : lines) {
            Matcher m = ROW.matcher(l);
            if (m.matches() && m.group(1).equals(what))
                return new double[] {Double.parseDouble(m.group(2)), Double.parseDouble(m.group(3)), Double.parseDouble(m.group(4)), Double.parseDouble(m.group(5))};
        }
        return fail("no row '" + what + "' in\n" + String.join("\n", lines));
    }

    static void assertPrinted(Evaluation.Result expected, double loss, double ppl, String what) {
        assertEquals(expected.loss(), loss, LOSS_PRINTED, what + " loss");
        assertEquals(expected.perplexity(), ppl, PPL_PRINTED + 1e-4 * expected.perplexity(), what + " perplexity");
    }
}
