package org.peft4j.bench;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;
import org.peft4j.core.Gemm;
import org.peft4j.core.Gemms;
import org.peft4j.core.Parallel;
import org.peft4j.model.LlamaConfig;
import org.peft4j.model.ModelPresets;
import org.peft4j.model.RandomModels;
import org.peft4j.model.layers.CrossEntropy;
import org.peft4j.model.llama.LlamaWeights;
import org.peft4j.model.adapter.lora.LoraConfig;
import org.peft4j.train.engine.Method;
import org.peft4j.train.engine.Param;
import org.peft4j.train.engine.TrainModel;
import org.peft4j.train.optim.AdamW;

/// Training throughput of a random-weight preset model: W warm-up and S timed steps of forward + backward + AdamW on
/// random tokens, reporting tokens/s, the step split (forward, backward, optimizer, and the share of the linear layers' GEMMs),
/// model FLOPs utilisation against the FP32 FMA peak measured in this run ([GemmBench#peakOneCore]) and peak RSS.
///
/// Model FLOPs per token (T = sequence length, P = weights of every matmul: the 7 linear layers of each block plus
/// the lm_head V·C; the embedding lookup is not a matmul; checkpoint recomputation is not counted):
/// - forward: 2·P + attention 2·2·L·qDim·(T+1)/2 (q·kᵀ and P·v, causal: query t sees t+1 keys) + LoRA 2·r·(in+out) per adapter
/// - backward, LoRA: the frozen base computes only its input gradient, 2·P (no 2·P for dW); attention 2× its forward;
///   adapters 2× their forward (dB, dh, dA, dx)
/// - backward, full: 2× forward (input and weight gradients of everything)
/// so LoRA = 4·P + 3·att + 3·lora and full = 6·P + 3·att. MFU = FLOPs/token · tokens/s ÷ (peak of one core · threads).
///
/// Run: `java --add-modules jdk.incubator.vector --enable-native-access=ALL-UNNAMED -cp … org.peft4j.bench.TrainBench
/// [model smollm2-135m] [seq 512] [batch 1] [threads 2] [method lora|full] [warmup 2] [steps 5] [gemm auto]`
public final class TrainBench {

    /// tokensPerSecond and mfu come from the median timed step (on a shared VM a neighbour makes a step slow now and
    /// then; the median ignores it); the other times are means over the timed steps, in milliseconds: the step split
    /// (forward, backward, optimizer) and the time in the linear layers' GEMMs, in attention and in the loss.
    /// peakRss is VmHWM in bytes (-1 where unknown).
    public record Result(String model, String method, int seq, int batch, int threads, String gemm, int steps,
                         double tokensPerSecond, double mfu, double flopsPerToken, double peakGflopsOneCore,
                         double medianStepMs, double stepMs, double forwardMs, double backwardMs, double optimizerMs,
                         double gemmMs, double attentionMs, double lossMs, long peakRssBytes, double lastLoss) {
        public String line() {
            return String.format("%-13s %-5s seq %d batch %d threads %d gemm %s | %7.1f tok/s | MFU %5.1f%% "
                            + "(%.2f GFLOP/token, peak %.1f GFLOP/s/core) | median step %5.0f ms | mean %5.0f ms = fwd %5.0f "
                            + "+ bwd %5.0f + opt %4.0f; linear GEMMs %4.1f%%, attention %4.1f%%, loss %4.1f%% | peak RSS %5.2f GB | loss %.4f",
                    model, method, seq, batch, threads, gemm, tokensPerSecond, 100 * mfu, flopsPerToken * 1e-9,
                    peakGflopsOneCore, medianStepMs, stepMs, forwardMs, backwardMs, optimizerMs, 100 * gemmMs / stepMs,
                    100 * attentionMs / stepMs, 100 * lossMs / stepMs, peakRssBytes / 1e9, lastLoss);
        }
    }

    public static void main(String[] args) {
        String model = arg(args, 0, "smollm2-135m");
        int seq = Integer.parseInt(arg(args, 1, "512")), batch = Integer.parseInt(arg(args, 2, "1"));
        int threads = Integer.parseInt(arg(args, 3, "2"));
        String method = arg(args, 4, "lora");
        int warmup = Integer.parseInt(arg(args, 5, "2")), steps = Integer.parseInt(arg(args, 6, "5"));
        String gemm = arg(args, 7, "auto");
        PROFILE = arg(args, 8, "").equals("profile");
        System.out.println(run(model, method, seq, batch, threads, warmup, steps, gemm).line());
    }

    /// The launcher's memory plan for `bench train` ([#run], or with `stage` dpo [DpoBench#run], `batch` pairs): the
    /// random float32 model, `method`'s tensors and AdamW state, activations without checkpointing.
    public static org.peft4j.train.estimate.HeapPlan plan(String model, String method, int seq, int batch, String stage) {
        LlamaConfig c = ModelPresets.byName(model);
        Method m = method.equals("full") ? new Method.Full() : new Method.Lora(LoraConfig.of(16, LoraConfig.ALL_LINEAR));
        var pref = stage.equals("dpo") ? new org.peft4j.train.estimate.MemoryEstimate.Preference("dpo", org.peft4j.train.estimate.MemoryEstimate.Reference.ADAPTER_OFF)
                : org.peft4j.train.estimate.MemoryEstimate.Preference.NONE;
        return org.peft4j.train.estimate.HeapPlan.of(org.peft4j.train.estimate.MemoryEstimate.estimate(c, m, false, batch, seq, false, "adamw_torch", 64, true, pref));
    }

    /// Builds `model` (a [ModelPresets] name) with random weights, trains `method` ("lora": rank 16 on all linear
    /// layers; "full") for warmup + steps steps on `threads` threads, and measures the timed steps.
    public static Result run(String model, String method, int seq, int batch, int threads, int warmup, int steps, String gemmMode) {
        return run(model, method, seq, batch, threads, warmup, steps, gemmMode, false);
    }

    /// As above; `shiftAttn`: the training forwards run LongLoRA's S²-Attn (seq a multiple of 8).
    public static Result run(String model, String method, int seq, int batch, int threads, int warmup, int steps, String gemmMode, boolean shiftAttn) {
        if (steps < 1 || warmup < 0) throw new org.peft4j.core.Peft4jException.ConfigException("bench train needs steps >= 1 and warmup >= 0, got " + steps + " and " + warmup);
        Parallel.setThreads(threads);
        double peak = GemmBench.peakOneCore();
        LlamaConfig c = ModelPresets.byName(model);
        LlamaWeights w = RandomModels.create(c, 1234);
        Method m = switch (method) {
            case "lora" -> new Method.Lora(LoraConfig.of(16, LoraConfig.ALL_LINEAR));
            case "full" -> new Method.Full();
            default -> throw new IllegalArgumentException("method must be lora or full, got " + method);
        };
        TimedGemm gemm = new TimedGemm(Gemms.get(gemmMode));
        TrainModel tm = new TrainModel(w, m, gemm, batch, seq, false, 42);
        tm.setShiftAttn(shiftAttn);
        List<float[]> ps = new ArrayList<>(), gs = new ArrayList<>();
        for (Param p : tm.params()) { ps.add(p.data()); gs.add(p.grad()); }
        AdamW opt = new AdamW(ps, gs, AdamW.Config.hfDefaults());

        int N = batch * seq;
        int[] tokens = new int[N], labels = new int[N], targets = new int[N];
        SplittableRandom r = new SplittableRandom(7);
        long fwd = 0, bwd = 0, upd = 0, gemmNs = 0;
        long[] stepNs = new long[steps];
        double loss = 0;
        for (int step = 0; step < warmup + steps; step++) {
            for (int i = 0; i < N; i++) tokens[i] = labels[i] = r.nextInt(c.vocabSize());
            int count = CrossEntropy.shiftLabels(targets, labels, batch, seq);
            if (step == warmup) { gemm.nanos = 0; tm.startTiming(); if (PROFILE) gemm.byShape = new java.util.TreeMap<>(); }
            long t0 = System.nanoTime();
            tm.zeroGrad();
            loss = tm.forward(tokens, targets, seq, true, step) / count;
            long t1 = System.nanoTime();
            tm.backward(tokens, targets, seq, 1f / count, step);
            long t2 = System.nanoTime();
            opt.step(1e-4);
            long t3 = System.nanoTime();
            if (step >= warmup) { fwd += t1 - t0; bwd += t2 - t1; upd += t3 - t2; stepNs[step - warmup] = t3 - t0; }
        }
        gemmNs = gemm.nanos;
        long[] phases = tm.timings();
        if (gemm.byShape != null)
            gemm.byShape.forEach((key, e) -> System.out.printf("  gemm %-22s %5d calls %9.1f ms/step %7.1f GFLOP/s%n", key,
                    e[0] / steps, e[1] * 1e-6 / steps, flopsOf(key) * e[0] / (e[1] * 1e-9) * 1e-9));
        double stepS = (fwd + bwd + upd) * 1e-9 / steps;
        long[] sorted = stepNs.clone();
        java.util.Arrays.sort(sorted);
        double medianS = (steps % 2 == 1 ? sorted[steps / 2] : (sorted[steps / 2 - 1] + sorted[steps / 2]) / 2.0) * 1e-9;
        double tps = N / medianS;
        double flops = flopsPerToken(c, seq, m);
        return new Result(model, method, seq, batch, threads, Gemms.get(gemmMode).name(), steps, tps,
                flops * tps / (peak * 1e9 * threads), flops, peak, medianS * 1e3, stepS * 1e3, fwd * 1e-6 / steps, bwd * 1e-6 / steps,
                upd * 1e-6 / steps, gemmNs * 1e-6 / steps, phases[0] * 1e-6 / steps, phases[1] * 1e-6 / steps, peakRss(), loss);
    }

    static boolean PROFILE = false;

    private static double flopsOf(String key) {
        String[] d = key.substring(3).split(",");
        return 2.0 * Long.parseLong(d[0]) * Long.parseLong(d[1]) * Long.parseLong(d[2]);
    }

    /// Model FLOPs per trained token; the formula is in the class comment.
    public static double flopsPerToken(LlamaConfig c, int T, Method m) {
        long C = c.hiddenSize(), F = c.intermediateSize(), L = c.numHiddenLayers(), q = c.qDim(), kv = c.kvDim();
        double P = L * (C * q + 2 * C * kv + q * C + 3 * C * F) + (double) c.vocabSize() * C;
        double att = 2.0 * 2 * L * q * (T + 1) / 2.0;
        if (m instanceof Method.Lora(LoraConfig lc)) {
            double lora = 2.0 * loraFloatsPerLayer(c, lc.r());   // 2·r·(in + out) per adapter
            return 4 * P + 3 * att + 3 * L * lora;
        }
        return 6 * P + 3 * att;
    }

    /// The LoRA parameters (and gradients) of one block with rank `r` on its 7 linear layers: r·(in + out) each
    /// (q, k, v, o, gate, up, down).
    public static long loraFloatsPerLayer(LlamaConfig c, int r) {
        long C = c.hiddenSize(), F = c.intermediateSize(), q = c.qDim(), kv = c.kvDim();
        long[][] io = {{C, q}, {C, kv}, {C, kv}, {q, C}, {C, F}, {C, F}, {F, C}};
        long n = 0;
        for (long[] x : io) n += r * (x[0] + x[1]);
        return n;
    }

    /// VmHWM of this process in bytes, or -1 off Linux.
    public static long peakRss() {
        try {
            for (String line : Files.readAllLines(Path.of("/proc/self/status")))
                if (line.startsWith("VmHWM:")) return Long.parseLong(line.replaceAll("[^0-9]", "")) * 1024;
        } catch (IOException | RuntimeException e) {
            // not Linux
        }
        return -1;
    }

    /// Sums the wall time of the GEMM calls made outside [Parallel] tasks: the linear layers (base, LoRA, lm_head),
    /// each parallel inside. Attention's per-block products run inside its tasks and are left out.
    static final class TimedGemm implements Gemm {
        final Gemm inner;
        long nanos;
        java.util.Map<String, long[]> byShape;   // "op m,n,k" → {calls, nanos}, only when profiling


        TimedGemm(Gemm inner) { this.inner = inner; }

        @Override
        public void sgemm(boolean transA, boolean transB, int m, int n, int k, float alpha, float[] a, int aOff, int lda,
                          float[] b, int bOff, int ldb, float beta, float[] c, int cOff, int ldc) {
            if (Parallel.inTask()) {   // attention's products inside its parallel tasks: counted with attention, not here
                inner.sgemm(transA, transB, m, n, k, alpha, a, aOff, lda, b, bOff, ldb, beta, c, cOff, ldc);
                return;
            }
            long t0 = System.nanoTime();
            inner.sgemm(transA, transB, m, n, k, alpha, a, aOff, lda, b, bOff, ldb, beta, c, cOff, ldc);
            long dt = System.nanoTime() - t0;
            nanos += dt;
            if (byShape != null) {
                long[] e = byShape.computeIfAbsent((transA ? "T" : "N") + (transB ? "T" : "N") + " " + m + "," + n + "," + k, x -> new long[2]);
                e[0]++; e[1] += dt;
            }
        }

        @Override
        public String name() { return inner.name(); }
    }

    private static String arg(String[] args, int i, String def) { return args.length > i ? args[i] : def; }

    private TrainBench() {}
}
