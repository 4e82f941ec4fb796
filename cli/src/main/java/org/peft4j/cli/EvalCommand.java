package org.peft4j.cli;

import org.peft4j.core.Peft4jException.ConfigException;
import org.peft4j.model.llama.LlamaModel;
import org.peft4j.train.Evaluation;
import org.peft4j.train.TrainConfig;
import org.peft4j.train.TrainData;
import org.peft4j.train.data.TokenizedExample;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.Callable;

/// `peft4j eval`: loss and perplexity of the base and the adapted model side by side on held-out data — a dataset
/// rendered with a template (what was learned) and/or plain text (what was forgotten).
@Command(name = "eval", mixinStandardHelpOptions = true, description = "Loss and perplexity of the base and the adapted model, side by side.")
final class EvalCommand implements Callable<Integer> {
    @Mixin ModelOptions modelOptions;
    @Option(names = "--adapter", paramLabel = "DIR|FILE.gguf", description = "A LoRA adapter (PEFT folder or GGUF LoRA file) to compare with the base.") Path adapter;
    @Option(names = "--dataset", paramLabel = "NAMES", description = "Datasets of dataset_info.json (comma-separated).") String dataset;
    @Option(names = "--dataset_dir", defaultValue = "data", paramLabel = "DIR", description = "Folder with dataset_info.json (default: ${DEFAULT-VALUE}).") String datasetDir;
    @Option(names = "--template", defaultValue = "default", paramLabel = "NAME", description = "Template name, or 'model' (default: ${DEFAULT-VALUE}).") String template;
    @Option(names = "--cutoff_len", defaultValue = "1024", paramLabel = "N", description = "Cut examples to N tokens (default: ${DEFAULT-VALUE}).") int cutoff;
    @Option(names = "--max_samples", paramLabel = "N", description = "At most N examples per dataset.") Integer maxSamples;
    @Option(names = "--text", paramLabel = "FILE", description = "A text file, one passage per line, scored as language modelling.") Path text;
    @Option(names = "--pref_beta", defaultValue = "0.1", paramLabel = "BETA", description = "Ranking and KTO datasets: the beta of the rewards (default: ${DEFAULT-VALUE}).") double prefBeta;

    @Override
    public Integer call() throws Exception {
        if (dataset == null && text == null) throw new ConfigException("give --dataset NAMES and/or --text FILE to evaluate on");
        if (text != null && !Files.isRegularFile(text))
            throw new ConfigException("--text " + text + " is not a file (" + (Files.isDirectory(text) ? "it is a folder" : "it does not exist")
                    + "); give a text file with one passage per line");
        Session s = new Session(modelOptions.modelDir(), modelOptions.setup());
        if (dataset != null && kind(Path.of(datasetDir), dataset) != Kind.SUPERVISED) return preference(s, kind(Path.of(datasetDir), dataset));
        List<String> names = new ArrayList<>();
        List<List<TokenizedExample>> sets = new ArrayList<>();
        if (dataset != null) {
            List<String> flags = new ArrayList<>(List.of("--model_name_or_path", s.dir.toString(), "--output_dir", "-", "--dataset", dataset,
                    "--dataset_dir", datasetDir, "--template", template, "--cutoff_len", String.valueOf(cutoff)));
            if (maxSamples != null) flags.addAll(List.of("--max_samples", maxSamples.toString()));
            sets.add(TrainData.prepare(TrainConfig.load(null, flags), s.tokenizer, s.dir).train());
            names.add(dataset + " (" + template + ")");
        }
        if (text != null) {
            sets.add(Evaluation.texts(Files.readAllLines(text), t -> s.tokenizer.encode(t, true)));
            names.add(text.getFileName().toString());
        }
        List<Evaluation.Result> base = new ArrayList<>();
        for (var set : sets) base.add(Evaluation.evaluate(s.model, set));
        List<Evaluation.Result> tuned = new ArrayList<>();
        if (adapter != null) {
            LlamaModel m = s.model;
            var a = m.loadAdapter("eval", adapter);
            for (var set : sets) tuned.add(Evaluation.evaluate(m, a, set));
        }
        System.out.printf("%-32s %8s %12s%s%n", "data", "tokens", "base loss/ppl", adapter != null ? "   adapted loss/ppl" : "");
        for (int i = 0; i < sets.size(); i++) {
            var b = base.get(i);
            System.out.printf("%-32s %8d %6.4f/%-8.2f%s%n", names.get(i), b.tokens(), b.loss(), b.perplexity(),
                    adapter != null ? String.format("   %6.4f/%-8.2f", tuned.get(i).loss(), tuned.get(i).perplexity()) : "");
        }
        return 0;
    }

    /// Supervised datasets, ranking (preference pair) datasets, or KTO datasets (a kto_tag column).
    enum Kind { SUPERVISED, RANKING, KTO }

    private static Kind kind(Path dir, String names) {
        var info = org.peft4j.train.data.DatasetInfo.load(dir);
        var kinds = new java.util.LinkedHashSet<Kind>();
        for (String n : org.peft4j.train.data.DatasetLoader.parseNames(names)) {
            var spec = info.get(n);
            kinds.add(spec.ranking() ? Kind.RANKING : spec.columns().ktoTag() != null ? Kind.KTO : Kind.SUPERVISED);
        }
        if (kinds.size() > 1) throw new ConfigException("--dataset " + names + " mixes " + kinds.stream().map(k -> k.name().toLowerCase()).toList()
                + " datasets; evaluate them separately");
        return kinds.iterator().next();
    }

    /// A ranking dataset: the adapter's DPO rewards against its base (reward accuracy, mean margin); a KTO dataset: the
    /// mean rewards of its desirable and undesirable answers. As stages dpo and kto log them on a validation split.
    private int preference(Session s, Kind kind) {
        String stage = kind == Kind.KTO ? "kto" : "dpo";
        if (adapter == null) throw new ConfigException("--dataset " + dataset + " is a " + (kind == Kind.KTO ? "KTO" : "ranking")
                + " dataset: give --adapter DIR, whose rewards are measured against the base");
        List<String> flags = new ArrayList<>(List.of("--model_name_or_path", s.dir.toString(), "--output_dir", "-", "--stage", stage,
                "--dataset", dataset, "--dataset_dir", datasetDir, "--template", template, "--cutoff_len", String.valueOf(cutoff)));
        if (maxSamples != null) flags.addAll(List.of("--max_samples", maxSamples.toString()));
        TrainData data = TrainData.prepare(TrainConfig.load(null, flags), s.tokenizer, s.dir);
        var a = s.model.loadAdapter("eval", adapter);
        if (kind == Kind.KTO) {
            Evaluation.Feedback f = Evaluation.feedback(s.model, a, data.train(), data.trainDesirable(), prefBeta);
            System.out.printf("%-32s %10s %12s %16s %16s %12s%n", "data", "desirable", "undesirable", "rewards/chosen", "rewards/rejected", "margin");
            System.out.printf("%-32s %10d %12d %16.4f %16.4f %12.4f%n", dataset + " (" + template + ")", f.desirable(), f.undesirable(),
                    f.rewardsChosen(), f.rewardsRejected(), f.margin());
            return 0;
        }
        Evaluation.Preference p = Evaluation.preference(s.model, a, data.train(), prefBeta);
        System.out.printf("%-32s %6s %16s %12s %16s %16s%n", "data", "pairs", "reward accuracy", "mean margin", "rewards/chosen", "rewards/rejected");
        System.out.printf("%-32s %6d %16.3f %12.4f %16.4f %16.4f%n", dataset + " (" + template + ")", p.pairs(), p.accuracy(), p.margin(),
                p.rewardsChosen(), p.rewardsRejected());
        return 0;
    }
}
