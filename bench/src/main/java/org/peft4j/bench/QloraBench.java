package org.peft4j.bench;

import org.peft4j.core.DType;
import org.peft4j.core.Gemm;
import org.peft4j.core.Gemms;
import org.peft4j.core.Parallel;
import org.peft4j.model.LlamaConfig;
import org.peft4j.model.ModelPresets;
import org.peft4j.model.RandomModels;
import org.peft4j.model.llama.LlamaWeights;
import org.peft4j.model.adapter.lora.LoraConfig;
import org.peft4j.model.quant.QuantizedModel;
import org.peft4j.quant.Nf4Tensor;
import org.peft4j.quant.QuantType;
import org.peft4j.train.engine.Method;
import org.peft4j.train.engine.Param;
import org.peft4j.train.engine.TrainModel;
import org.peft4j.train.estimate.HeapPlan;
import org.peft4j.train.estimate.MemoryEstimate;
import org.peft4j.train.optim.AdamW;
import org.peft4j.train.optim.AdamW8bit;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.SplittableRandom;

/// QLoRA vs LoRA step time (forward + backward + AdamW, batch 1, LoRA r16 all-linear) on random-weight presets, and a
/// Llama-2-7B-shaped QLoRA run created quantized layer by layer, with peak RSS (VmHWM from /proc/self/status).
///
/// Run: `java --add-modules jdk.incubator.vector --enable-native-access=ALL-UNNAMED -Xmx8g -cp … org.peft4j.bench.QloraBench
/// compare [seq [steps [presets,…]]]` or `… 7b [seq [steps [_ [dir]]]]` (dir: a 4-bit folder from `quantize`, loaded
/// in place, instead of the random model). Each mode wants its own JVM (the 7B RSS is the JVM's).
public final class QloraBench {
    public static void main(String[] args) throws IOException {
        String mode = args.length > 0 ? args[0] : "compare";
        int seq = args.length > 1 ? Integer.parseInt(args[1]) : 512;
        int steps = args.length > 2 ? Integer.parseInt(args[2]) : 3;
        Gemm gemm = Gemms.get("auto");
        System.out.println("threads=" + Parallel.threads() + " " + Gemms.describe() + " maxHeap=" + Runtime.getRuntime().maxMemory() / (1 << 20) + " MiB");
        if (mode.equals("7b")) { run7b(gemm, seq, steps, args.length > 4 && !args[4].isEmpty() ? Path.of(args[4]) : null); return; }
        for (String preset : (args.length > 3 ? args[3] : "smollm2-135m,qwen2.5-0.5b").split(",")) {
            LlamaConfig c = ModelPresets.byName(preset);
            // both models live side by side: skip, with the heap to ask for, rather than die of OutOfMemoryError
            long need = sideBySideBytes(c, seq);
            if (Runtime.getRuntime().maxMemory() < need) {
                System.out.printf("%s seq %d: skipped, LoRA and QLoRA side by side need about %d MiB of heap, this JVM has %d MiB;"
                                + " rerun with PEFT4J_JAVA_OPTS=-Xmx%dg%n", preset, seq, need >> 20,
                        Runtime.getRuntime().maxMemory() >> 20, (long) Math.ceil(need * 1.15 / (1L << 30)));   // maxMemory leaves out a survivor space
                continue;
            }
            LlamaWeights w = RandomModels.create(c, 1);
            QuantizedModel qm = QuantizedModel.quantize(w, QuantType.NF4, 64, true);
            // Alternate LoRA and QLoRA steps so both see the same machine state; report the median of each.
            TrainModel lora = new TrainModel(w, method(), gemm, 1, seq, false, 1);
            TrainModel qlora = new TrainModel(qm, method(), gemm, 1, seq, false, 1);
            AdamW optL = adamw(lora), optQ = adamw(qlora);
            int[][] bt = batch(c.vocabSize(), seq);
            double[] tl = new double[steps], tq = new double[steps];
            step(lora, optL, bt, seq, 0);   // warm-up: JIT, gemm calibration
            step(qlora, optQ, bt, seq, 0);
            for (int s = 0; s < steps; s++) {
                tl[s] = step(lora, optL, bt, seq, s + 1);
                tq[s] = step(qlora, optQ, bt, seq, s + 1);
            }
            double ml = median(tl), mq = median(tq);
            System.out.printf("%s seq %d: LoRA %.3f s/step, QLoRA %.3f s/step, ratio %.3f; base %.4f bits/param (%d MiB 4-bit vs %d MiB f32 linears)%n",
                    preset, seq, ml, mq, mq / ml, qm.bitsPerParameter(), linearBytes(qm) >> 20, 4 * linearParams(qm) >> 20);
        }
    }

    /// Java heap of compare mode for preset `c`: the float LoRA model and the 4-bit QLoRA model side by side, and the
    /// int8 copy made while quantizing.
    static long sideBySideBytes(LlamaConfig c, int seq) {
        MemoryEstimate el = MemoryEstimate.estimate(c, method(), false, 1, seq, false, "adamw_torch", 64, true);
        MemoryEstimate eq = MemoryEstimate.estimate(c, method(), true, 1, seq, false, "adamw_torch", 64, true);
        return el.total() + eq.total() - el.runtime() - eq.runtime() + (512L << 20);
    }

    /// The 7B run's estimate: LoRA r16 on all linear layers over the NF4 base (codes off the heap) with BF16 embeddings
    /// and lm_head (as `createRandom(..., BF16)` and a `quantize`d folder hold them), gradient checkpointing, paged 8-bit
    /// AdamW.
    static MemoryEstimate estimate7b(int seq) {
        LlamaConfig c = ModelPresets.llama2_7b();
        return MemoryEstimate.estimate(c, method(), true, 1, seq, true, "paged_adamw_8bit", 64, true)
                .withWeights(MemoryEstimate.weightBytes(c, true, 64, true, 2));
    }

    /// The launcher's memory plan for `bench qlora`: mode 7b, [#estimate7b] (`QuantizedModel.createRandom` streams:
    /// the codes go to the arena in 4 MiB chunks, so loading holds no more heap than training); mode compare, the
    /// largest preset's [#sideBySideBytes] (presets run one after the other).
    public static HeapPlan plan(String mode, int seq, String presets) {
        if (mode.equals("7b")) return HeapPlan.of(estimate7b(seq));
        MemoryEstimate biggest = null;
        long loading = 0;
        for (String preset : presets.split(",")) {
            LlamaConfig c = ModelPresets.byName(preset);
            long need = sideBySideBytes(c, seq);
            if (need > loading) { loading = need; biggest = MemoryEstimate.estimate(c, method(), false, 1, seq, false, "adamw_torch", 64, true); }
        }
        return new HeapPlan(biggest, loading);
    }

    /// The 7B-shaped run: the random model (created layer by layer, the 4-bit codes in a native arena, BF16 embeddings
    /// and lm_head), or `dir` loaded in place (its 4-bit codes mapped from the file); peak RSS after each phase.
    static void run7b(Gemm gemm, int seq, int steps, Path dir) throws IOException {
        long t0 = System.nanoTime();
        QuantizedModel qm = dir == null ? QuantizedModel.createRandom(ModelPresets.llama2_7b(), 1, QuantType.NF4, 64, true, DType.BF16)
                : QuantizedModel.load(dir);
        LlamaConfig c = qm.config;
        System.out.printf("%s %s (NF4, block 64, double quant): %.1f s, %.4f bits/param, %d MiB 4-bit linears (%d MiB off the heap),"
                        + " embeddings %s, VmHWM %s, heap used %d MiB%n", dir == null ? "llama2-7b" : dir, dir == null ? "createRandom" : "load",
                (System.nanoTime() - t0) / 1e9, qm.bitsPerParameter(), linearBytes(qm) >> 20, qm.offHeapBytes() >> 20,
                qm.embed16 == null ? "F32" : qm.embed16.type(), vm("VmHWM"), heapUsed());
        // QLoRA as the issue measures it: LoRA r16 on every linear layer, gradient checkpointing, and a paged 8-bit
        // AdamW whose state lives in a file-backed mapping (64 MiB resident at most).
        MemoryEstimate e = estimate7b(seq);
        TrainModel tm = new TrainModel(qm, method(), gemm, 1, seq, true, 1);
        List<Param> ps = tm.params();
        AdamW8bit opt = AdamW8bit.paged(ps.stream().map(Param::data).toList(), ps.stream().map(Param::grad).toList(),
                AdamW.Config.hfDefaults(), Path.of(System.getProperty("java.io.tmpdir")), 64L << 20);
        System.out.printf("activations %d MiB, trainable %,d, VmHWM %s%n", tm.activationBytes() >> 20,
                ps.stream().mapToLong(p -> p.data().length).sum(), vm("VmHWM"));
        int[][] bt = batch(c.vocabSize(), seq);
        for (int s = 0; s < steps; s++) {
            long t0s = System.nanoTime();
            tm.zeroGrad();
            tm.forward(bt[0], bt[1], seq, true, s);
            tm.backward(bt[0], bt[1], seq, 1f / seq, s);
            opt.step(1e-4);
            double t = (System.nanoTime() - t0s) / 1e9;
            System.out.printf("step %d: %.1f s, %.0f tok/s, VmRSS %s, VmHWM %s, heap used %d MiB%n", s, t, seq / t, vm("VmRSS"), vm("VmHWM"), heapUsed());
        }
        long hwm = 1024 * Long.parseLong(vm("VmHWM").split("\\s+")[0]);
        System.out.printf("estimate %.0f MiB, measured peak RSS (VmHWM) %.0f MiB, estimate/measured %.3f%n", e.total() / 1048576.0, hwm / 1048576.0,
                e.total() / (double) hwm);
    }

    static long heapUsed() { return (Runtime.getRuntime().totalMemory() - Runtime.getRuntime().freeMemory()) >> 20; }

    static Method method() { return new Method.Lora(LoraConfig.of(16, LoraConfig.ALL_LINEAR)); }

    static AdamW adamw(TrainModel tm) {
        List<Param> ps = tm.params();
        return new AdamW(ps.stream().map(Param::data).toList(), ps.stream().map(Param::grad).toList(), AdamW.Config.hfDefaults());
    }

    /// One optimizer step; seconds.
    static double step(TrainModel tm, AdamW opt, int[][] bt, int seq, long step) {
        long t = System.nanoTime();
        tm.zeroGrad();
        tm.forward(bt[0], bt[1], seq, true, step);
        tm.backward(bt[0], bt[1], seq, 1f / seq, step);
        opt.step(1e-4);
        return (System.nanoTime() - t) / 1e9;
    }

    static int[][] batch(int V, int seq) {
        SplittableRandom r = new SplittableRandom(3);
        int[] tok = new int[seq], tgt = new int[seq];
        for (int i = 0; i < seq; i++) { tok[i] = r.nextInt(V); tgt[i] = r.nextInt(V); }
        return new int[][]{tok, tgt};
    }

    static double median(double[] x) {
        double[] s = x.clone();
        java.util.Arrays.sort(s);
        return s[s.length / 2];
    }

    static long linearParams(QuantizedModel qm) {
        long n = 0;
        for (Nf4Tensor[] l : qm.linears) for (Nf4Tensor w : l) n += w.numel();
        return n;
    }

    static long linearBytes(QuantizedModel qm) { return (long) (qm.bitsPerParameter() * linearParams(qm) / 8); }

    static String vm(String key) throws IOException {
        for (String line : Files.readAllLines(Path.of("/proc/self/status")))
            if (line.startsWith(key + ":")) return line.substring(key.length() + 1).trim();
        return "?";
    }
}
