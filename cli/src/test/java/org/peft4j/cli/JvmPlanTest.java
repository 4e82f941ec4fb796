package org.peft4j.cli;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.peft4j.core.MachineMemory;
import org.peft4j.testkit.Shared;
import org.peft4j.train.TrainConfig;
import org.peft4j.train.estimate.HeapPlan;
import org.peft4j.train.recipe.FinetuneRecipe;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.List;

import static org.junit.jupiter.api.Assertions.*;

/// The launcher's plan step: the options it prints are the run's [HeapPlan] (the estimate of its keys), commands
/// that do not train get none, and a plan over the machine's available memory (set with the test property) is
/// refused with exit 1 and the numbers, before any weight is read.
class JvmPlanTest {
    record Out(int code, String stdout, String stderr) {}

    static Out plan(String available, String... args) {
        var out = new ByteArrayOutputStream();
        var err = new ByteArrayOutputStream();
        try {
            if (available != null) System.setProperty(MachineMemory.AVAILABLE_PROPERTY, available);
            int code = JvmPlan.run(args, new PrintStream(out, true, StandardCharsets.UTF_8), new PrintStream(err, true, StandardCharsets.UTF_8));
            return new Out(code, out.toString(StandardCharsets.UTF_8), err.toString(StandardCharsets.UTF_8));
        } finally {
            System.clearProperty(MachineMemory.AVAILABLE_PROPERTY);
        }
    }

    @Test
    void trainGetsTheOptionsOfItsPlan(@TempDir Path tmp) {
        Path model = Shared.require("models/tinystories-656k");
        List<String> flags = List.of("--model_name_or_path", model.toString(), "--dataset", "identity_en", "--dataset_dir",
                Shared.root().resolve("data").toString(), "--template", "default", "--cutoff_len", "128", "--per_device_train_batch_size", "4",
                "--output_dir", tmp.resolve("out").toString());
        HeapPlan expected = FinetuneRecipe.plan(TrainConfig.load(null, flags).args(), model, 128);
        String[] args = java.util.stream.Stream.concat(java.util.stream.Stream.of("train"), flags.stream()).toArray(String[]::new);
        Out o = plan("64g", args);
        assertEquals(0, o.code(), o.stderr());
        assertEquals(String.join(" ", expected.jvmOptions()), o.stdout().strip());
        assertTrue(o.stderr().startsWith("peft4j: memory plan "), o.stderr());
        assertFalse(java.nio.file.Files.exists(tmp.resolve("out")), "the plan step writes nothing");

        // over the available memory at cutoff_len: the run trains at its longest example, which fits
        var a = TrainConfig.load(null, flags).args();
        int longest = org.peft4j.train.TrainData.prepare(a, org.peft4j.tokenizer.Tokenizer.load(model), model).maxLength();
        assertTrue(longest < 128, "identity_en's longest example " + longest);
        Out shorter = plan(String.valueOf(expected.machineBytes() - 1), args);
        assertEquals(0, shorter.code(), shorter.stderr());
        assertEquals(String.join(" ", FinetuneRecipe.plan(a, model, longest).jvmOptions()), shorter.stdout().strip());

        // a plan over the available memory: exit 1, the numbers and what to change, no stack trace
        Out refused = plan("100m", args);
        assertEquals(1, refused.code());
        assertEquals("", refused.stdout());
        assertTrue(refused.stderr().startsWith("error: this run is planned at "), refused.stderr());
        assertTrue(refused.stderr().contains("this machine has available (-D" + MachineMemory.AVAILABLE_PROPERTY), refused.stderr());
        assertTrue(refused.stderr().contains("lower cutoff_len (128) or per_device_train_batch_size (4)"), refused.stderr());
        assertTrue(refused.stderr().contains("gradient_checkpointing") && refused.stderr().contains("quantization_bit: 4"), refused.stderr());
        assertFalse(refused.stderr().contains("\tat "), "no stack trace");
    }

    @Test
    void benchQlora7bIsPlannedAndRefusedOnASmallMachine() {
        Out o = plan("64g", "bench", "qlora", "--mode", "7b", "--seq", "512");
        assertEquals(0, o.code(), o.stderr());
        HeapPlan p = org.peft4j.bench.QloraBench.plan("7b", 512, "");
        assertEquals(String.join(" ", p.jvmOptions()), o.stdout().strip());
        assertTrue(p.estimate().offHeap() > 0, "the paged optimizer's state is mapped, off the heap");
        Out refused = plan("2g", "bench", "qlora", "--mode", "7b");
        assertEquals(1, refused.code());
        assertTrue(refused.stderr().contains("2.00 GiB this machine has available") && refused.stderr().contains("lower --seq (512)"), refused.stderr());

        Out train = plan("64g", "bench", "train", "--model-config", "smollm2-135m", "--seq", "256", "--method", "full");
        assertEquals(String.join(" ", org.peft4j.bench.TrainBench.plan("smollm2-135m", "full", 256, 1, "sft").jvmOptions()), train.stdout().strip());
    }

    @Test
    void commandsThatDoNotTrainAreNotPlanned() {
        for (String[] args : List.of(new String[]{"generate", "--prompt", "x"}, new String[]{"train", "--help-keys"}, new String[]{"bench", "gemm"},
                new String[]{"train", "--model_name_or_path", "org/not-downloaded", "--output_dir", "/tmp/x"}, new String[]{"train", "--no_such_key", "1"},
                new String[]{})) {
            Out o = plan("1m", args);
            assertEquals(0, o.code(), String.join(" ", args) + ": " + o.stderr());
            assertEquals("", o.stdout(), String.join(" ", args));
        }
    }
}
