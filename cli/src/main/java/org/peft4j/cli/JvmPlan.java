package org.peft4j.cli;

import org.peft4j.core.MachineMemory;
import org.peft4j.core.Peft4jException;
import org.peft4j.model.gguf.GgufModel;
import org.peft4j.tokenizer.Tokenizer;
import org.peft4j.train.TrainArgs;
import org.peft4j.train.TrainData;
import org.peft4j.train.estimate.HeapPlan;
import org.peft4j.train.recipe.FinetuneRecipe;
import picocli.CommandLine;

import java.io.PrintStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Locale;

/// The launcher's plan step: `java … org.peft4j.cli.JvmPlan <the peft4j command line>` runs before the command's own
/// JVM, reads the command's configuration (no weights loaded) and prints on stdout the JVM options that size its
/// memory from its [HeapPlan] (`-Xmx… -Xmn… -XX:MaxDirectMemorySize=…`), or nothing for a command it does not plan
/// (anything but `train`, `bench train`, `bench qlora`; `--help`; `--spark-master`; a Hub id not on disk; a
/// configuration it cannot read, which the command itself then reports). Exit 1 with the numbers on stderr when the
/// plan exceeds the machine's available memory ([MachineMemory]): the run is refused before loading anything.
public final class JvmPlan {
    private JvmPlan() {}

    public static void main(String[] args) {
        System.exit(run(args, System.out, System.err));
    }

    /// Prints the options (or nothing) on `out`, a refusal on `err`; returns the exit code (0, or 1 refused).
    static int run(String[] args, PrintStream out, PrintStream err) {
        HeapPlan plan;
        String hint;
        try {
            Planned p = plan(Arrays.asList(args));
            if (p == null) return 0;
            plan = p.plan();
            hint = p.hint();
        } catch (RuntimeException e) {
            return 0;   // the command reports its own configuration errors, with its own words
        }
        MachineMemory m = MachineMemory.read();
        try {
            plan.requireFits(m, hint);
        } catch (Peft4jException e) {
            err.println("error: " + e.getMessage());
            return 1;
        }
        out.println(String.join(" ", plan.jvmOptions()));
        err.printf(Locale.ROOT, "peft4j: memory plan %.2f GiB (Java heap %.2f GiB, off-heap %.2f GiB, runtime %.2f GiB) of %.2f GiB available%n",
                gib(plan.machineBytes()), gib(plan.heapBytes()), gib(plan.estimate().offHeap()), gib(plan.estimate().runtime()), gib(m.available()));
        return 0;
    }

    record Planned(HeapPlan plan, String hint) {}

    /// The plan of a command line, or null when it has none.
    static Planned plan(List<String> args) {
        List<String> rest = new ArrayList<>();
        for (String a : args) if (!a.equals("--verbose")) rest.add(a);
        if (rest.isEmpty()) return null;
        String command = rest.removeFirst();
        return switch (command) {
            case "train" -> train(rest);
            case "bench" -> bench(rest);
            default -> null;
        };
    }

    private static Planned train(List<String> args) {
        TrainCommand cmd = new TrainCommand();
        new CommandLine(cmd).parseArgs(args.toArray(String[]::new));
        if (cmd.help || cmd.helpKeys || cmd.sparkMaster != null) return null;
        TrainArgs a = cmd.config().args();
        if (!a.finetuning().doTrain()) return null;   // evaluation or prediction only
        Path modelDir = Path.of(a.model().nameOrPath());
        if (!Files.isDirectory(modelDir) && !GgufModel.isGguf(modelDir)) return null;   // a Hub id: resolved (downloaded) by the run
        int cutoff = a.data().cutoffLen();
        HeapPlan p = FinetuneRecipe.plan(a, modelDir, cutoff);
        if (p.machineBytes() > MachineMemory.read().available()) {
            // the run trains at min(cutoff_len, the longest example): tokenize the data before refusing
            try {
                int longest = TrainData.prepare(a, Tokenizer.load(modelDir), modelDir).maxLength();
                if (longest < cutoff) p = FinetuneRecipe.plan(a, modelDir, Math.max(2, longest));
            } catch (RuntimeException e) {
                // the plan at cutoff_len stands
            }
        }
        List<String> hints = new ArrayList<>();
        hints.add("lower cutoff_len (" + cutoff + ") or per_device_train_batch_size (" + a.training().perDeviceTrainBatchSize() + ")");
        if (!a.finetuning().gradientCheckpointing()) hints.add("set gradient_checkpointing: true");
        boolean fourBit = a.model().quantizationBit() != null || org.peft4j.model.quant.QuantizedModel.isQuantized(modelDir);
        if (a.finetuning().type().equals("lora")) hints.add("a smaller lora_rank (" + a.finetuning().loraRank() + ")");
        if (!fourBit && a.finetuning().type().equals("lora")) hints.add("train in 4 bits (quantization_bit: 4, QLoRA)");
        if (!a.finetuning().type().equals("lora")) hints.add("train a LoRA adapter (finetuning_type: lora) instead of " + a.finetuning().type());
        if (!a.training().optim().startsWith("paged_")) hints.add("use optim: paged_adamw_8bit");
        return new Planned(p, String.join(", ", hints));
    }

    private static Planned bench(List<String> args) {
        if (args.isEmpty()) return null;
        BenchCommand root = new BenchCommand();
        CommandLine cl = new CommandLine(root);
        CommandLine.ParseResult r = cl.parseArgs(args.toArray(String[]::new));
        if (!r.hasSubcommand() || r.subcommand().isUsageHelpRequested()) return null;
        Object sub = r.subcommand().commandSpec().userObject();
        return switch (sub) {
            case BenchCommand.Train t -> new Planned(org.peft4j.bench.TrainBench.plan(t.model, t.method, t.seq, t.batch, t.stage),
                    "lower --seq (" + t.seq + ") or --batch (" + t.batch + "), or pick a smaller --model-config");
            case BenchCommand.Qlora q -> new Planned(org.peft4j.bench.QloraBench.plan(q.mode, q.seq, q.presets),
                    "lower --seq (" + q.seq + ")" + (q.mode.equals("7b") ? "" : " or name fewer or smaller presets in --model-config"));
            default -> null;
        };
    }

    private static double gib(long bytes) { return bytes / (double) (1L << 30); }
}
