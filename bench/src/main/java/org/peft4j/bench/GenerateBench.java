package org.peft4j.bench;

import org.peft4j.core.DType;
import org.peft4j.core.Gemms;
import org.peft4j.core.Parallel;
import org.peft4j.core.Peft4jException.ConfigException;
import org.peft4j.core.kernels.OpenBlasGemm;
import org.peft4j.core.kernels.VectorOps;
import org.peft4j.model.LlamaConfig;
import org.peft4j.model.ModelPresets;
import org.peft4j.model.Models;
import org.peft4j.model.RandomModels;
import org.peft4j.model.generate.GenerateRequest;
import org.peft4j.model.generate.Generator;
import org.peft4j.model.generate.Sampler;
import org.peft4j.model.llama.Decoder;
import org.peft4j.model.llama.LlamaModel;
import org.peft4j.model.llama.LlamaWeights;
import org.peft4j.model.llama.Projection;
import org.peft4j.model.weights.BaseWeight;
import org.peft4j.model.weights.DenseF32;
import org.peft4j.model.weights.DenseHalf;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.SplittableRandom;

/// `peft4j bench generate`: single-stream generation as a user runs it, on both compute paths (java, openblas) and
/// with the linear weights and lm_head held as float32 and as BF16, and float32 weights over a float16 KV cache
/// (`java+kv16`, llama.cpp's default cache): prefill tokens/s (one forward over the prompt),
/// time to first token (prompt in, first token sampled), decode tokens/s (each further token), and for decode the
/// bytes of weights read per token and the GB/s that makes against this machine's read bandwidth, measured in the
/// same run. The variants run alternately, round after round, and each number is the median over the rounds, so a
/// neighbour's load on a shared machine falls on all of them alike.
///
/// Decode reads every weight once per token (the row path: [org.peft4j.model.weights.RowProducts]), so its speed is
/// bounded by bytes / bandwidth: BF16 halves the bytes. The llama.cpp column ([LlamaCppColumn]: node-llama-cpp on the
/// same float32 weights written as GGUF) runs its rounds between ours, so both are measured in the same minutes; without
/// node-llama-cpp it says what to install and prints no number.
public final class GenerateBench {
    private GenerateBench() {}

    /// One variant's medians. Seconds and tokens/s; bytesPerToken: weights a decode step reads.
    public record Result(String dtype, String gemm, double prefillTokensPerSecond, double ttftSeconds, double decodeTokensPerSecond,
                         long bytesPerToken) {
        double decodeGBs() { return bytesPerToken * decodeTokensPerSecond / 1e9; }

        String line(double bandwidthGBs) {
            return String.format("%-5s %-9s %10.1f %9.0f %10.1f %9.2f %8.1f %6.0f%%", dtype, gemm, prefillTokensPerSecond, ttftSeconds * 1e3,
                    decodeTokensPerSecond, bytesPerToken / 1e6, decodeGBs(), 100 * decodeGBs() / bandwidthGBs);
        }
    }

    /// A model to run: its name in the table and the model.
    record Variant(String dtype, String gemm, LlamaModel model) {}

    /// The gemm column of the variant with a float16 KV cache (java path; the others' caches are float32).
    static final String KV16 = "java+kv16";

    /// Runs the benchmark and prints its table to stdout. `modelDir` (a Hugging Face folder) or `preset` (random
    /// weights from a [ModelPresets] config) gives the model; `rounds` alternating rounds.
    public static List<Result> run(String preset, Path modelDir, int promptTokens, int newTokens, int threads, int rounds) {
        if (promptTokens < 1 || newTokens < 2 || threads < 1 || rounds < 1)
            throw new ConfigException("bench generate needs --prompt-tokens >= 1, --new-tokens >= 2, --threads >= 1 and --rounds >= 1");
        Parallel.setThreads(threads);
        long t0 = System.nanoTime();
        LlamaWeights w;
        BaseWeight[][] stored;
        BaseWeight storedHead;
        DenseHalf embed16 = null;   // a 16-bit checkpoint's embedding table (w.embedTokens then null)
        String source;
        if (modelDir != null) {
            LlamaModel m = Models.load(modelDir, Gemms.get("java"));
            w = m.weights;
            stored = linears(m.decoder);
            storedHead = m.decoder.head();
            embed16 = m.decoder.embed16();
            source = modelDir + " (weights " + stored[0][0].dtype() + ")";
        } else {
            LlamaConfig c = ModelPresets.byName(preset);
            w = RandomModels.create(c, 1234);
            stored = null;
            storedHead = null;
            source = preset + " (random weights)";
        }
        LlamaConfig c = w.config;
        if (promptTokens + newTokens > c.maxPositionEmbeddings())
            throw new ConfigException("prompt + new tokens = " + (promptTokens + newTokens) + " exceed the model's context of " + c.maxPositionEmbeddings());
        BaseWeight[][] f32 = convert(w, stored, DType.F32), bf16 = convert(w, stored, DType.BF16);
        BaseWeight headF32 = storedHead instanceof DenseF32 || storedHead == null ? BaseWeight.of(w.lmHead, c.vocabSize(), c.hiddenSize())
                : dense(storedHead);
        BaseWeight headBf16 = storedHead instanceof DenseHalf h && h.type() == DType.BF16 ? h
                : DenseHalf.of(DType.BF16, ((DenseF32) headF32).data(), c.vocabSize(), c.hiddenSize());
        List<String> gemms = new ArrayList<>(List.of("java"));
        if (OpenBlasGemm.available()) gemms.add("openblas");
        List<Variant> variants = new ArrayList<>();
        for (String g : gemms) {
            variants.add(new Variant("F32", g, new LlamaModel(new Decoder(w, f32, headF32, embed16, Gemms.get(g)))));
            variants.add(new Variant("BF16", g, new LlamaModel(new Decoder(w, bf16, headBf16, embed16, Gemms.get(g)))));
        }
        // float32 weights over a float16 KV cache, as llama.cpp runs them by default
        variants.add(new Variant("F32", KV16, new LlamaModel(new Decoder(w, f32, headF32, embed16, Gemms.get("java"))).kvCacheType(DType.F16)));
        double bandwidth = readBandwidthGBs();
        System.out.printf("bench generate: %s, prompt %d tokens, %d new tokens, %d threads, %d rounds (%.0f s to build)%n",
                source, promptTokens, newTokens, threads, rounds, (System.nanoTime() - t0) * 1e-9);
        System.out.printf("read bandwidth of this machine: %.1f GB/s (%d threads streaming a 256 MiB array)%n", bandwidth, threads);
        if (!OpenBlasGemm.available()) System.out.println("openblas: not available (" + OpenBlasGemm.unavailableReason() + "); java path only");

        int[] prompt = new int[promptTokens];
        SplittableRandom rnd = new SplittableRandom(7);
        for (int i = 0; i < prompt.length; i++) prompt[i] = rnd.nextInt(c.vocabSize());
        Generator[] gens = new Generator[variants.size()];
        for (int v = 0; v < gens.length; v++) gens[v] = new Generator(variants.get(v).model(), 1, promptTokens + newTokens, promptTokens);
        // warm-up: the JIT compiles the prefill and decode paths of every variant
        for (int v = 0; v < gens.length; v++) once(gens[v], prompt, Math.min(newTokens, 16));
        // llama.cpp on the same float32 weights written as GGUF, its rounds between ours (see LlamaCppColumn)
        Path gguf = null;
        LlamaCppColumn.Session llama = null;
        try {
            if (LlamaCppColumn.installed()) {
                Path tokenizerDir = modelDir != null ? modelDir : Path.of(System.getProperty("peft4j.home", "."), "models", "tinystories-656k");
                gguf = LlamaCppColumn.writeF32(modelDir != null && stored != null && !(stored[0][0] instanceof DenseF32) ? Models.loadWeights(modelDir) : w,
                        tokenizerDir);
                llama = LlamaCppColumn.Session.open(gguf, "F32", c.vocabSize(), promptTokens, newTokens, threads);
            }
            double[][][] m = new double[variants.size()][3][rounds];
            for (int r = 0; r < rounds; r++) {
                for (int v = 0; v < gens.length; v++) {
                    double[] t = once(gens[v], prompt, newTokens);
                    for (int k = 0; k < 3; k++) m[v][k][r] = t[k];
                }
                if (llama != null) llama.round();
            }
            List<Result> results = new ArrayList<>();
            System.out.printf("%-5s %-9s %10s %9s %10s %9s %8s %7s%n", "dtype", "gemm", "prefill", "ttft", "decode", "weights", "decode", "of read");
            System.out.printf("%-5s %-9s %10s %9s %10s %9s %8s %7s%n", "", "", "tokens/s", "ms", "tokens/s", "MB/token", "GB/s", "bandw.");
            for (int v = 0; v < gens.length; v++) {
                Variant var = variants.get(v);
                Result res = new Result(var.dtype(), var.gemm(), promptTokens / median(m[v][0]), median(m[v][1]),
                        (newTokens - 1) / median(m[v][2]), bytesPerToken(var.model().decoder));
                results.add(res);
                System.out.println(res.line(bandwidth));
            }
            for (String g : gemms) {
                Result f = find(results, "F32", g), b = find(results, "BF16", g);
                System.out.printf("%s: BF16 decode %.2fx F32 decode (goal >= 1.6x); prefill %.2fx%n", g, b.decodeTokensPerSecond() / f.decodeTokensPerSecond(),
                        b.prefillTokensPerSecond() / f.prefillTokensPerSecond());
            }
            Result lr = llama == null ? null : llama.result();
            if (lr != null) {
                lr = new Result(lr.dtype(), lr.gemm(), lr.prefillTokensPerSecond(), lr.ttftSeconds(), lr.decodeTokensPerSecond(),
                        find(results, "F32", "java").bytesPerToken());
                System.out.println(lr.line(bandwidth));
                for (String g : gemms) {
                    Result f = find(results, "F32", g);
                    System.out.printf("%s F32 vs llama.cpp F32: prefill %.2fx, decode %.2fx, time to first token %.2fx (goal >= 1.0x tokens/s)%n", g,
                            f.prefillTokensPerSecond() / lr.prefillTokensPerSecond(), f.decodeTokensPerSecond() / lr.decodeTokensPerSecond(),
                            lr.ttftSeconds() / f.ttftSeconds());
                }
                Result k = find(results, "F32", KV16);
                System.out.printf("%s F32 vs llama.cpp F32, both with float16 KV caches: prefill %.2fx, decode %.2fx%n", KV16,
                        k.prefillTokensPerSecond() / lr.prefillTokensPerSecond(), k.decodeTokensPerSecond() / lr.decodeTokensPerSecond());
                results.add(lr);
            }
            System.out.printf("peak RSS (whole run, all variants loaded): %.2f GB%n", TrainBench.peakRss() / 1e9);
            return results;
        } catch (IOException e) {
            throw new UncheckedIOException("bench generate: could not write the GGUF file for llama.cpp (" + e.getMessage() + ")", e);
        } finally {
            if (llama != null) llama.close();
            if (gguf != null) try { Files.deleteIfExists(gguf); } catch (IOException ignored) { }
        }
    }

    /// One generation on `g`: seconds of prefill (prompt in, first token sampled = time to first token, the same
    /// span here), time to first token, and the decode of the remaining tokens.
    static double[] once(Generator g, int[] prompt, int newTokens) {
        long[] at = new long[2];
        int[] count = {0};
        long start = System.nanoTime();
        Generator.Sequence s = g.add(new GenerateRequest(prompt, new Sampler.Greedy(), 0, newTokens, new int[0], null), id -> {
            if (count[0]++ == 0) at[0] = System.nanoTime();
            at[1] = System.nanoTime();
            return true;
        });
        while (g.step()) { }
        if (s.result().tokens().length != newTokens)
            throw new IllegalStateException("generated " + s.result().tokens().length + " tokens, expected " + newTokens + " (" + s.result().finish() + ")");
        double ttft = (at[0] - start) * 1e-9;
        return new double[]{ttft, ttft, (at[1] - at[0]) * 1e-9};
    }

    /// Bytes of weights one decode step reads: every linear and the lm_head (the embedding row and norms are noise).
    static long bytesPerToken(Decoder d) {
        long b = d.head().bytes();
        for (int l = 0; l < d.config.numHiddenLayers(); l++)
            for (Projection p : Projection.values()) b += d.linear(l, p).bytes();
        return b;
    }

    /// The read bandwidth of this machine: `threads` threads summing disjoint parts of a 256 MiB array (far beyond
    /// the caches), best of 4, in GB/s.
    static double readBandwidthGBs() {
        float[] a = new float[64 << 20];
        Arrays.fill(a, 1f);
        double best = Double.MAX_VALUE;
        float[] sink = new float[Parallel.threads()];
        for (int r = 0; r < 4; r++) {
            long t = System.nanoTime();
            Parallel.chunks(a.length, Parallel.threads(), (ci, from, to) -> sink[ci] += VectorOps.dot(a, from, a, from, to - from) * 0 + a[from]);
            best = Math.min(best, (System.nanoTime() - t) * 1e-9);
        }
        if (sink[0] != 4f) throw new IllegalStateException("bandwidth kernel: " + sink[0]);
        return 4.0 * a.length / best / 1e9;
    }

    private static BaseWeight[][] linears(Decoder d) {
        BaseWeight[][] lin = new BaseWeight[d.config.numHiddenLayers()][Projection.values().length];
        for (int l = 0; l < lin.length; l++) for (Projection p : Projection.values()) lin[l][p.ordinal()] = d.linear(l, p);
        return lin;
    }

    /// The linears as `dtype` (F32 or BF16): the stored ones when they already are, else converted.
    private static BaseWeight[][] convert(LlamaWeights w, BaseWeight[][] stored, DType dtype) {
        LlamaConfig c = w.config;
        BaseWeight[][] lin = new BaseWeight[c.numHiddenLayers()][Projection.values().length];
        for (int l = 0; l < lin.length; l++)
            for (Projection p : Projection.values()) {
                BaseWeight s = stored == null ? BaseWeight.of(p.weight(w.layers.get(l)), p.out(c), p.in(c)) : stored[l][p.ordinal()];
                lin[l][p.ordinal()] = switch (dtype) {
                    case F32 -> s instanceof DenseF32 ? s : dense(s);
                    case BF16 -> s instanceof DenseHalf h && h.type() == DType.BF16 ? s : DenseHalf.of(DType.BF16, ((DenseF32) dense(s)).data(), s.out(), s.in());
                    default -> throw new IllegalArgumentException(dtype.name());
                };
            }
        return lin;
    }

    private static BaseWeight dense(BaseWeight s) {
        if (s instanceof DenseF32) return s;
        float[] f = new float[s.out() * s.in()];
        s.dequantize(f);
        return BaseWeight.of(f, s.out(), s.in());
    }

    private static Result find(List<Result> rs, String dtype, String gemm) {
        for (Result r : rs) if (r.dtype().equals(dtype) && r.gemm().equals(gemm)) return r;
        throw new IllegalStateException(dtype + " " + gemm);
    }

    static double median(double[] xs) {
        double[] s = xs.clone();
        Arrays.sort(s);
        return s.length % 2 == 1 ? s[s.length / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
    }
}
