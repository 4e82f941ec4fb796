package org.peft4j.train.estimate;

import org.peft4j.core.Gemms;
import org.peft4j.model.LlamaConfig;
import org.peft4j.model.ModelPresets;
import org.peft4j.model.RandomModels;
import org.peft4j.model.llama.LlamaWeights;
import org.peft4j.model.adapter.lora.LoraConfig;
import org.peft4j.train.engine.Method;
import org.peft4j.train.engine.Param;
import org.peft4j.train.engine.TrainModel;
import org.peft4j.train.optim.AdamW;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;

/// Not a test: measures peak RSS (VmHWM) of 2 LoRA training steps on random SmolLM2-135M weights in a fresh JVM and
/// compares it with [MemoryEstimate]. Usage (from train/, test classpath):
/// `java -Xmx<MiB>m -cp <cp> org.peft4j.train.estimate.MemoryEstimateMeasure <seq> <checkpointing> <rank>`
public final class MemoryEstimateMeasure {
    public static void main(String[] args) throws Exception {
        int seq = Integer.parseInt(args[0]);
        boolean ckpt = Boolean.parseBoolean(args[1]);
        int rank = Integer.parseInt(args[2]);
        LlamaConfig c = ModelPresets.smollm2_135m();
        Method m = new Method.Lora(LoraConfig.of(rank, LoraConfig.ALL_LINEAR));
        MemoryEstimate e = MemoryEstimate.estimate(c, m, false, 1, seq, ckpt, "adamw_torch", 64, true);
        System.out.println("baseline VmHWM " + mib(vmHwm()) + " MiB");
        LlamaWeights w = RandomModels.create(c, 0);
        TrainModel tm = new TrainModel(w, m, Gemms.get("auto"), 1, seq, ckpt, 1);
        List<float[]> ps = new ArrayList<>(), gs = new ArrayList<>();
        for (Param p : tm.params()) { ps.add(p.data()); gs.add(p.grad()); }
        AdamW opt = new AdamW(ps, gs, AdamW.Config.hfDefaults());
        SplittableRandom rng = new SplittableRandom(5);
        int[] tokens = new int[seq], targets = new int[seq];
        for (int i = 0; i < seq; i++) tokens[i] = rng.nextInt(c.vocabSize());
        for (int i = 0; i + 1 < seq; i++) targets[i] = tokens[i + 1];
        targets[seq - 1] = -100;
        for (int step = 0; step < 2; step++) {
            long t0 = System.nanoTime();
            tm.zeroGrad();
            double loss = tm.forward(tokens, targets, seq, true, step);
            tm.backward(tokens, targets, seq, 1f / (seq - 1), step);
            opt.step(1e-4);
            System.out.printf("step %d loss %.4f %.1f s%n", step + 1, loss / (seq - 1), (System.nanoTime() - t0) / 1e9);
        }
        long hwm = vmHwm();
        System.out.print(e.toTable());
        System.out.printf("activationBytes() %d = estimate %d%n", tm.activationBytes(), e.trainModelActivationBytes());
        System.out.printf("measured peak RSS (VmHWM) %.1f MiB, predicted %.1f MiB, predicted/measured %.3f%n",
                mib(hwm), mib(e.total()), e.total() / (double) hwm);
    }

    static double mib(long b) { return b / (double) (1 << 20); }

    static long vmHwm() throws Exception {
        for (String line : Files.readAllLines(Path.of("/proc/self/status")))
            if (line.startsWith("VmHWM:")) return 1024 * Long.parseLong(line.substring(6).trim().split("\\s+")[0]);
        return -1;
    }
}
