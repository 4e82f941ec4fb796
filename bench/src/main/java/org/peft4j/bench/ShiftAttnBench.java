package org.peft4j.bench;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.SplittableRandom;
import org.peft4j.core.Gemm;
import org.peft4j.core.Gemms;
import org.peft4j.core.Parallel;
import org.peft4j.model.LlamaConfig;
import org.peft4j.model.ModelPresets;
import org.peft4j.model.layers.Attention;
import org.peft4j.model.layers.ShiftedAttention;

/// The attention of one layer of a preset model, forward + backward as training runs it, with full causal attention
/// ([Attention]) and with LongLoRA's S²-Attn ([ShiftedAttention]: four groups, half the heads rolled) on the same
/// random q, k, v, at each sequence length: the medians of `reps` timed runs after `warmup`, the two kinds alternating
/// so that a noisy neighbour hits both. S² does about a quarter of the causal products (each group is causal over
/// T/4 keys) plus the O(T·heads·HS) rolls, so the ratio falls toward 1/4 as T grows and the products dominate.
public final class ShiftAttnBench {

    /// Milliseconds per layer (forward + backward) at one length, and their ratio.
    public record Row(int seq, double fullMs, double s2Ms) {
        public double ratio() { return s2Ms / fullMs; }
    }

    public record Result(String model, int batch, int threads, String gemm, int reps, List<Row> rows) {
        public String lines() {
            StringBuilder b = new StringBuilder(String.format("%s attention of one layer, forward + backward, batch %d, threads %d, gemm %s, median of %d:%n",
                    model, batch, threads, gemm, reps));
            for (Row r : rows)
                b.append(String.format("  seq %5d | full %9.1f ms | S2 %9.1f ms | S2/full %.2f%n", r.seq(), r.fullMs(), r.s2Ms(), r.ratio()));
            return b.toString().stripTrailing();
        }
    }

    public static Result run(String model, int[] seqs, int batch, int threads, int warmup, int reps, String gemmMode) {
        if (reps < 1 || warmup < 0) throw new org.peft4j.core.Peft4jException.ConfigException("bench needs reps >= 1 and warmup >= 0, got " + reps + " and " + warmup);
        Parallel.setThreads(threads);
        LlamaConfig c = ModelPresets.byName(model);
        Gemm gemm = Gemms.get(gemmMode);
        int NH = c.numAttentionHeads(), KVH = c.numKeyValueHeads(), HS = c.headDim(), B = batch;
        for (int T : seqs) ShiftedAttention.check(T);
        // a first pass untimed over every length, so that the first length timed does not pay for the JIT
        for (int T : seqs) time(T, B, NH, KVH, HS, gemm, warmup, 1);
        List<Row> rows = new ArrayList<>();
        for (int T : seqs) {
            double[] ms = time(T, B, NH, KVH, HS, gemm, warmup, reps);
            rows.add(new Row(T, ms[0], ms[1]));
        }
        return new Result(model, batch, threads, gemm.name(), reps, rows);
    }

    /// Medians of `reps` timed runs after `warmup`, in milliseconds: {full, S²}.
    private static double[] time(int T, int B, int NH, int KVH, int HS, Gemm gemm, int warmup, int reps) {
        SplittableRandom r = new SplittableRandom(T);
        float[] q = rand(r, B * T * NH * HS), k = rand(r, B * T * KVH * HS), v = rand(r, B * T * KVH * HS), dout = rand(r, B * T * NH * HS);
        float[] out = new float[q.length], att = new float[Math.multiplyExact(B * NH * T, T)];
        float[] dq = new float[q.length], dk = new float[k.length], dv = new float[v.length];
        float[] scratch = new float[Attention.backwardScratchSize(B, T, NH, HS)];
        int[] n = ShiftedAttention.scratchSizes(B, T, NH, KVH, HS);
        float[] qs = new float[n[0]], ys = new float[n[0]], dqs = new float[n[0]];
        float[] ks = new float[n[1]], vs = new float[n[1]], dks = new float[n[1]], dvs = new float[n[1]];
        long[] full = new long[reps], s2 = new long[reps];
        for (int i = 0; i < warmup + reps; i++) {
            long t0 = System.nanoTime();
            Attention.forward(gemm, out, att, q, k, v, B, T, T, NH, KVH, HS, 0);
            Attention.backward(gemm, dq, dk, dv, dout, att, q, k, v, B, T, NH, KVH, HS, scratch);
            long t1 = System.nanoTime();
            ShiftedAttention.forward(gemm, out, att, q, k, v, qs, ks, vs, ys, B, T, NH, KVH, HS);
            ShiftedAttention.backward(gemm, dq, dk, dv, dout, att, q, k, v, qs, ks, vs, ys, dqs, dks, dvs, scratch, B, T, NH, KVH, HS);
            long t2 = System.nanoTime();
            if (i >= warmup) { full[i - warmup] = t1 - t0; s2[i - warmup] = t2 - t1; }
        }
        return new double[] {median(full) * 1e-6, median(s2) * 1e-6};
    }

    static double median(long[] x) {
        long[] s = x.clone();
        Arrays.sort(s);
        return s.length % 2 == 1 ? s[s.length / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2.0;
    }

    private static float[] rand(SplittableRandom r, int n) {
        float[] a = new float[n];
        for (int i = 0; i < n; i++) a[i] = (float) r.nextDouble(-1, 1);
        return a;
    }

    private ShiftAttnBench() {}
}
