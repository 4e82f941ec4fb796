package org.peft4j.train.estimate;

import org.junit.jupiter.api.Test;
import org.peft4j.core.MachineMemory;
import org.peft4j.core.Peft4jException.ConfigException;
import org.peft4j.model.LlamaConfig;
import org.peft4j.model.ModelPresets;
import org.peft4j.model.adapter.lora.LoraConfig;
import org.peft4j.testkit.Shared;
import org.peft4j.train.TrainArgs;
import org.peft4j.train.TrainConfig;
import org.peft4j.train.engine.Method;
import org.peft4j.train.recipe.FinetuneRecipe;

import java.nio.file.Path;
import java.util.List;

import static org.junit.jupiter.api.Assertions.*;

/// The launcher's memory plan against the estimate it is computed from: the heap holds the estimate's on-heap arrays
/// (all but the runtime and the paged optimizer's mapped state), the options say the same numbers, a run's plan is
/// the estimate of its keys, and a plan over the machine's available memory is refused with the numbers.
class HeapPlanTest {
    static final long MIB = 1L << 20;

    @Test
    void theHeapIsTheEstimatesOnHeapArraysPlusYoungAndHeadroom() {
        LlamaConfig c = ModelPresets.smollm2_135m();
        Method lora = new Method.Lora(LoraConfig.of(16, LoraConfig.ALL_LINEAR));
        for (String optim : List.of("adamw_torch", "adamw_8bit", "paged_adamw_8bit", "paged_adamw_32bit")) {
            MemoryEstimate e = MemoryEstimate.estimate(c, lora, false, 1, 512, false, optim, 64, true);
            HeapPlan p = HeapPlan.of(e);
            long offHeap = optim.startsWith("paged_") ? e.optimizer() : 0;
            assertEquals(offHeap, e.offHeap(), optim);
            assertEquals(e.weights() + e.adapters() + e.gradients() + e.optimizer() - offHeap + e.activations() + e.logits() + e.scratch(),
                    p.heapData(), optim + ": the heap holds every array but the mapped state");
            long slack = p.heapBytes() - p.heapData() - HeapPlan.YOUNG_BYTES;
            assertTrue(slack >= p.headroom() && slack < p.headroom() + 16 * MIB, optim + ": rounded up to 16 MiB, slack " + slack);
            assertTrue(p.headroom() >= 64 * MIB && p.headroom() >= p.heapData() / 16, "headroom " + p.headroom());
            assertEquals(p.heapBytes() + offHeap + e.runtime(), p.machineBytes());
            assertEquals(List.of("-Xmx" + p.heapBytes() / MIB + "m", "-Xmn" + HeapPlan.YOUNG_BYTES / MIB + "m",
                    "-XX:MaxDirectMemorySize=" + p.directBytes() / MIB + "m"), p.jvmOptions());
            assertTrue(p.directBytes() >= offHeap + HeapPlan.DIRECT_SLACK, "arenas count against MaxDirectMemorySize");
        }
        // the smaller run plans the smaller heap
        MemoryEstimate ck = MemoryEstimate.estimate(c, lora, false, 1, 512, true, "adamw_torch", 64, true);
        assertTrue(HeapPlan.of(ck).heapBytes() < HeapPlan.of(MemoryEstimate.estimate(c, lora, false, 1, 512, false, "adamw_torch", 64, true)).heapBytes());
        // loading above training's heap sizes the heap
        HeapPlan load = new HeapPlan(ck, HeapPlan.of(ck).heapData() + 500 * MIB);
        assertTrue(load.heapBytes() >= load.loading() + HeapPlan.YOUNG_BYTES + 64 * MIB);
    }

    @Test
    void aRunsPlanIsTheEstimateOfItsKeys() {
        Path model = Shared.require("models/tinystories-656k");
        LlamaConfig c = LlamaConfig.read(model.resolve("config.json"));
        TrainArgs a = TrainConfig.load(null, List.of("--model_name_or_path", model.toString(), "--dataset", "identity_en", "--output_dir", "/tmp/unused", "--lora_rank", "8",
                "--cutoff_len", "96", "--per_device_train_batch_size", "3", "--gradient_checkpointing", "true", "--optim", "paged_adamw_8bit")).args();
        HeapPlan p = FinetuneRecipe.plan(a, model, 96);
        MemoryEstimate e = MemoryEstimate.estimate(c, new Method.Lora(LoraConfig.of(8, LoraConfig.ALL_LINEAR)), false, 3, 96, true, "paged_adamw_8bit", 64, true);
        assertEquals(e, p.estimate());
        assertEquals(0, p.loading());

        // quantization_bit 4 over a float checkpoint: the 4-bit base trains; loading holds both forms
        TrainArgs q = TrainConfig.load(null, List.of("--model_name_or_path", model.toString(), "--dataset", "identity_en", "--output_dir", "/tmp/unused",
                "--quantization_bit", "4", "--cutoff_len", "96")).args();
        HeapPlan pq = FinetuneRecipe.plan(q, model, 96);
        assertEquals(MemoryEstimate.weightBytes(c, true, 64, true), pq.estimate().weights());
        assertEquals(MemoryEstimate.weightBytes(c, false, 64, true) + MemoryEstimate.weightBytes(c, true, 64, true), pq.loading());
        assertTrue(pq.heapBytes() >= pq.loading() + HeapPlan.YOUNG_BYTES);
    }

    @Test
    void aPlanOverTheAvailableMemoryIsRefusedWithTheNumbers() {
        MemoryEstimate e = MemoryEstimate.estimate(ModelPresets.qwen25_05b(), new Method.Full(), false, 2, 1024, false, "adamw_torch", 64, true);
        HeapPlan p = HeapPlan.of(e);
        p.requireFits(new MachineMemory(64L << 30, p.machineBytes(), "test"), "lower cutoff_len");   // exactly fits
        var ex = assertThrows(ConfigException.class, () -> p.requireFits(new MachineMemory(16L << 30, p.machineBytes() - 1, "test"), "lower cutoff_len (1024)"));
        String m = ex.getMessage();
        assertTrue(m.startsWith(String.format(java.util.Locale.ROOT, "this run is planned at %.2f GiB (Java heap %.2f GiB", p.machineBytes() / (double) (1L << 30),
                p.heapBytes() / (double) (1L << 30))), m);
        assertTrue(m.contains(String.format(java.util.Locale.ROOT, "more than the %.2f GiB this machine has available (test; 16.00 GiB total)",
                (p.machineBytes() - 1) / (double) (1L << 30))), m);
        assertTrue(m.contains("lower cutoff_len (1024)") && m.contains("PEFT4J_NO_PLAN=1"), m);
    }
}
