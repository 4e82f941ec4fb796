package org.peft4j.bench;

import org.peft4j.formats.gguf.GgufWriter;
import org.peft4j.model.gguf.GgufModel;
import org.peft4j.model.llama.LlamaWeights;
import org.peft4j.tokenizer.GgufVocab;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/// The llama.cpp column of `bench generate`, a separate step: the same weights written as an F32 GGUF (the
/// tokenizer keys of a model folder, padded to the vocabulary as the converter does) and run by node-llama-cpp
/// (`bench/llamacpp/llamacpp_bench.mjs`, installed by `npm install` there) on the same prompt length, new tokens,
/// threads and rounds. It is a benchmark dependency, never a product one: when node or the package is missing the
/// column says what to install and reports no number.
final class LlamaCppColumn {
    private LlamaCppColumn() {}

    private static final Pattern FIELD = Pattern.compile("\"(prefill_s|ttft_s|decode_s)\":([0-9.eE+-]+)");

    /// Medians of llama.cpp's rounds as a [GenerateBench.Result] (dtype F32, gemm "llama.cpp"), or null with the
    /// reason printed.
    static GenerateBench.Result run(LlamaWeights w, Path tokenizerDir, int promptTokens, int newTokens, int threads, int rounds) {
        Path home = Path.of(System.getProperty("peft4j.home", "."));
        if (!Files.isDirectory(home.resolve("bench/llamacpp/node_modules/node-llama-cpp"))) {
            System.out.println("llama.cpp column: node-llama-cpp is not installed; to add it: cd bench/llamacpp && "
                    + "NODE_LLAMA_CPP_SKIP_DOWNLOAD=true npm install --omit=optional (a prebuilt CPU binary from npm)");
            return null;
        }
        Path gguf = null;
        try {
            gguf = Files.createTempFile("peft4j-bench-", ".gguf");
            GgufWriter g = GgufModel.writer(w, GgufModel.Quant.F32, "peft4j bench");
            GgufVocab.put(g, tokenizerDir, w.config.vocabSize());
            g.write(gguf);
            return runFile(gguf, "F32", w.config.vocabSize(), promptTokens, newTokens, threads, rounds);
        } catch (IOException e) {
            System.out.println("llama.cpp column: could not write the GGUF file (" + e.getMessage() + ")");
            return null;
        } finally {
            if (gguf != null) try { Files.deleteIfExists(gguf); } catch (IOException ignored) { }
        }
    }

    /// llama.cpp on the GGUF file `gguf` as it is (the row's dtype named `dtype`), or null with the reason printed.
    static GenerateBench.Result runFile(Path gguf, String dtype, int vocab, int promptTokens, int newTokens, int threads, int rounds) {
        Path home = Path.of(System.getProperty("peft4j.home", "."));
        Path script = home.resolve("bench/llamacpp/llamacpp_bench.mjs");
        if (!Files.isDirectory(home.resolve("bench/llamacpp/node_modules/node-llama-cpp"))) {
            System.out.println("llama.cpp column: node-llama-cpp is not installed; to add it: cd bench/llamacpp && "
                    + "NODE_LLAMA_CPP_SKIP_DOWNLOAD=true npm install --omit=optional (a prebuilt CPU binary from npm)");
            return null;
        }
        try {
            List<String> cmd = List.of("node", script.toString(), gguf.toString(), String.valueOf(threads), String.valueOf(promptTokens),
                    String.valueOf(newTokens), String.valueOf(rounds), String.valueOf(vocab));
            Process p = new ProcessBuilder(cmd).redirectErrorStream(true).start();
            List<double[]> rows = new ArrayList<>();
            StringBuilder other = new StringBuilder();
            try (BufferedReader r = new BufferedReader(new InputStreamReader(p.getInputStream(), StandardCharsets.UTF_8))) {
                for (String line; (line = r.readLine()) != null; ) {
                    Matcher m = FIELD.matcher(line);
                    double[] v = new double[3];
                    int found = 0;
                    while (m.find()) {
                        int k = switch (m.group(1)) { case "prefill_s" -> 0; case "ttft_s" -> 1; default -> 2; };
                        v[k] = Double.parseDouble(m.group(2));
                        found++;
                    }
                    if (found == 3) rows.add(v);
                    else if (other.length() < 2000) other.append(line).append('\n');
                }
            }
            if (!p.waitFor(30, TimeUnit.MINUTES)) { p.destroyForcibly(); throw new IOException("node did not finish in 30 minutes"); }
            if (p.exitValue() != 0 || rows.isEmpty()) {
                System.out.println("llama.cpp column: node-llama-cpp failed (exit " + p.exitValue() + "):\n" + other.toString().strip());
                return null;
            }
            double[][] cols = new double[3][rows.size()];
            for (int i = 0; i < rows.size(); i++) for (int k = 0; k < 3; k++) cols[k][i] = rows.get(i)[k];
            return new GenerateBench.Result(dtype, "llama.cpp", promptTokens / GenerateBench.median(cols[0]), GenerateBench.median(cols[1]),
                    (newTokens - 1) / GenerateBench.median(cols[2]), 0);
        } catch (IOException e) {
            System.out.println("llama.cpp column: could not run node (" + e.getMessage() + "); install Node.js and node-llama-cpp (bench/llamacpp)");
            return null;
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            return null;
        }
    }
}
