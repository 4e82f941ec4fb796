package org.peft4j.bench;

import org.peft4j.core.Gemms;
import org.peft4j.core.Parallel;
import org.peft4j.core.Peft4jException.ConfigException;
import org.peft4j.formats.gguf.GgufWriter;
import org.peft4j.model.LlamaConfig;
import org.peft4j.model.ModelPresets;
import org.peft4j.model.RandomModels;
import org.peft4j.model.generate.Generator;
import org.peft4j.model.gguf.GgufModel;
import org.peft4j.model.llama.LlamaModel;
import org.peft4j.model.llama.LlamaWeights;
import org.peft4j.model.llama.Projection;
import org.peft4j.tokenizer.GgufVocab;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;

/// `peft4j bench generate --gguf q8_0,q4_k`: one stream on GGUF files of a preset's shape (random weights quantized
/// by our ggml reference quantizers, the bundled tokenizer padded to the vocabulary), run by peft4j (`generate`'s
/// path: the weights kept as blocks, Q8_0/Q4_0 with llama.cpp's Q8_0 activations, K-quants on the row path / tiles)
/// and by llama.cpp (node-llama-cpp) on the very same files, side by side: prefill, time to first token and decode
/// tokens/s, and the ratios. Each peft4j round on a file is followed by a llama.cpp round on it
/// ([LlamaCppColumn.Session]), so both engines are measured in the same minutes of a shared machine.
public final class GgufGenerateBench {
    private GgufGenerateBench() {}

    public static List<GenerateBench.Result> run(String preset, List<String> quants, int promptTokens, int newTokens, int threads, int rounds) {
        if (promptTokens < 1 || newTokens < 2 || threads < 1 || rounds < 1)
            throw new ConfigException("bench generate needs --prompt-tokens >= 1, --new-tokens >= 2, --threads >= 1 and --rounds >= 1");
        Parallel.setThreads(threads);
        LlamaConfig c = ModelPresets.byName(preset);
        if (promptTokens + newTokens > c.maxPositionEmbeddings())
            throw new ConfigException("prompt + new tokens = " + (promptTokens + newTokens) + " exceed the model's context of " + c.maxPositionEmbeddings());
        LlamaWeights w = RandomModels.create(c, 1234);
        Path tokenizerDir = Path.of(System.getProperty("peft4j.home", "."), "models", "tinystories-656k");
        List<Path> files = new ArrayList<>();
        List<LlamaModel> models = new ArrayList<>();
        List<String> names = new ArrayList<>();
        List<LlamaCppColumn.Session> sessions = new ArrayList<>();
        try {
            for (String q : quants) {
                GgufModel.Quant quant = GgufModel.Quant.of(q);
                Path f = Files.createTempFile("peft4j-bench-" + q + "-", ".gguf");
                files.add(f);
                GgufWriter g = GgufModel.writer(w, quant, "peft4j bench " + q);
                GgufVocab.put(g, tokenizerDir, c.vocabSize());
                g.write(f);
                LlamaModel m = GgufModel.load(f, Gemms.get("java"));
                models.add(m);
                names.add(quant.name());
                StringBuilder types = new StringBuilder();
                for (Projection p : Projection.values()) types.append(p.module).append('=').append(m.decoder.linear(0, p).dtype()).append(' ');
                System.out.printf("%s: %s (%.1f MB), linear types: %s%n", quant.name(), f.getFileName(), Files.size(f) / 1e6, types.toString().strip());
            }
            System.out.printf("bench generate --gguf: %s (random weights), prompt %d tokens, %d new tokens, %d threads, %d rounds%n",
                    preset, promptTokens, newTokens, threads, rounds);
            int[] prompt = new int[promptTokens];
            SplittableRandom rnd = new SplittableRandom(7);
            for (int i = 0; i < prompt.length; i++) prompt[i] = rnd.nextInt(c.vocabSize());
            Generator[] gens = new Generator[models.size()];
            for (int v = 0; v < gens.length; v++) gens[v] = new Generator(models.get(v), 1, promptTokens + newTokens, promptTokens);
            for (Generator g : gens) for (int round = 0; round < 2; round++) GenerateBench.once(g, prompt, newTokens);   // warm-up: two rounds, C2 compiles the kernels
            // llama.cpp on each file, its rounds between ours (see LlamaCppColumn)
            for (int v = 0; v < gens.length && LlamaCppColumn.installed(); v++)
                sessions.add(LlamaCppColumn.Session.open(files.get(v), names.get(v), c.vocabSize(), promptTokens, newTokens, threads));
            System.out.printf("load average before the rounds: %s%n", loadAverage());
            double[][][] t = new double[gens.length][3][rounds];
            for (int r = 0; r < rounds; r++)
                for (int v = 0; v < gens.length; v++) {
                    double[] s = GenerateBench.once(gens[v], prompt, newTokens);
                    for (int k = 0; k < 3; k++) t[v][k][r] = s[k];
                    if (v < sessions.size() && sessions.get(v) != null) sessions.get(v).round();
                }
            List<GenerateBench.Result> results = new ArrayList<>();
            for (int v = 0; v < gens.length; v++) {
                GenerateBench.Result ours = new GenerateBench.Result(names.get(v), "peft4j", promptTokens / GenerateBench.median(t[v][0]),
                        GenerateBench.median(t[v][1]), (newTokens - 1) / GenerateBench.median(t[v][2]), GenerateBench.bytesPerToken(models.get(v).decoder));
                results.add(ours);
            }
            for (LlamaCppColumn.Session ls : sessions) {
                GenerateBench.Result llama = ls == null ? null : ls.result();
                if (llama != null) results.add(llama);
            }
            System.out.printf("%-6s %-9s %10s %9s %10s%n", "type", "engine", "prefill", "ttft", "decode");
            System.out.printf("%-6s %-9s %10s %9s %10s%n", "", "", "tokens/s", "ms", "tokens/s");
            for (GenerateBench.Result r : results)
                System.out.printf("%-6s %-9s %10.1f %9.0f %10.1f%n", r.dtype(), r.gemm(), r.prefillTokensPerSecond(), r.ttftSeconds() * 1e3, r.decodeTokensPerSecond());
            for (String n : names) {
                GenerateBench.Result o = null, l = null;
                for (GenerateBench.Result r : results) if (r.dtype().equals(n)) { if (r.gemm().equals("peft4j")) o = r; else l = r; }
                if (o != null && l != null)
                    System.out.printf("%s: peft4j vs llama.cpp on the same file: decode %.2fx, prefill %.2fx, time to first token %.2fx%n", n,
                            o.decodeTokensPerSecond() / l.decodeTokensPerSecond(), o.prefillTokensPerSecond() / l.prefillTokensPerSecond(),
                            l.ttftSeconds() / o.ttftSeconds());
            }
            System.out.printf("load average after: %s%n", loadAverage());
            return results;
        } catch (IOException e) {
            throw new UncheckedIOException("bench generate --gguf: " + e.getMessage(), e);
        } finally {
            for (LlamaCppColumn.Session ls : sessions) if (ls != null) ls.close();
            for (Path f : files) try { Files.deleteIfExists(f); } catch (IOException ignored) { }
        }
    }

    /// /proc/loadavg's first three fields (the machine may be shared), or "n/a".
    static String loadAverage() {
        try {
            String[] f = Files.readString(Path.of("/proc/loadavg")).split(" ");
            return f[0] + " " + f[1] + " " + f[2];
        } catch (IOException | RuntimeException e) {
            return "n/a";
        }
    }
}
