package org.peft4j.bench;

import org.peft4j.formats.gguf.GgufWriter;
import org.peft4j.model.gguf.GgufModel;
import org.peft4j.model.llama.LlamaWeights;
import org.peft4j.tokenizer.GgufVocab;

import java.io.BufferedReader;
import java.io.BufferedWriter;
import java.io.OutputStreamWriter;
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

/// The llama.cpp column of `bench generate`: the same weights written as a GGUF file (the tokenizer keys of a model
/// folder, padded to the vocabulary as the converter does) and run by node-llama-cpp (`bench/llamacpp/llamacpp_bench.mjs`,
/// installed by `npm install` there) on the same prompt length, new tokens and threads. Its rounds are interleaved
/// with peft4j's ([Session]): on a shared machine the memory bandwidth a process gets changes from minute to minute
/// (the same decode measured 28 to 42 tokens/s in separate runs), so both engines are measured in the same minutes.
/// It is a benchmark dependency, never a product one: when node or the package is missing the column says what to
/// install and reports no number.
final class LlamaCppColumn {
    private LlamaCppColumn() {}

    private static final Pattern FIELD = Pattern.compile("\"(prefill_s|ttft_s|decode_s)\":([0-9.eE+-]+)");
    private static final String INSTALL = "llama.cpp column: node-llama-cpp is not installed; to add it: cd bench/llamacpp && "
            + "NODE_LLAMA_CPP_SKIP_DOWNLOAD=true npm install --omit=optional (a prebuilt CPU binary from npm)";

    /// Whether node-llama-cpp is installed under bench/llamacpp (else the reason is printed).
    static boolean installed() {
        Path home = Path.of(System.getProperty("peft4j.home", "."));
        if (Files.isDirectory(home.resolve("bench/llamacpp/node_modules/node-llama-cpp"))) return true;
        System.out.println(INSTALL);
        return false;
    }

    /// `w` as an F32 GGUF temporary file with the tokenizer of `tokenizerDir`; the caller deletes it.
    static Path writeF32(LlamaWeights w, Path tokenizerDir) throws IOException {
        Path gguf = Files.createTempFile("peft4j-bench-", ".gguf");
        GgufWriter g = GgufModel.writer(w, GgufModel.Quant.F32, "peft4j bench");
        GgufVocab.put(g, tokenizerDir, w.config.vocabSize());
        g.write(gguf);
        return gguf;
    }

    /// A node-llama-cpp process holding one GGUF file with its context, warmed up by one round, that runs one more
    /// round each time [#round] asks. Rounds are collected; [#result] gives their medians.
    static final class Session implements AutoCloseable {
        private final Process process;
        private final BufferedWriter in;
        private final BufferedReader out;
        private final String dtype;
        private final int promptTokens, newTokens;
        private final List<double[]> rounds = new ArrayList<>();
        private boolean failed;

        private Session(Process process, String dtype, int promptTokens, int newTokens) {
            this.process = process;
            this.in = new BufferedWriter(new OutputStreamWriter(process.getOutputStream(), StandardCharsets.UTF_8));
            this.out = new BufferedReader(new InputStreamReader(process.getInputStream(), StandardCharsets.UTF_8));
            this.dtype = dtype;
            this.promptTokens = promptTokens;
            this.newTokens = newTokens;
        }

        /// Starts llama.cpp on `gguf` (the row's dtype named `dtype`) and waits for its warm-up round; null, with the
        /// reason printed, when it cannot run.
        static Session open(Path gguf, String dtype, int vocab, int promptTokens, int newTokens, int threads) {
            if (!installed()) return null;
            Path script = Path.of(System.getProperty("peft4j.home", ".")).resolve("bench/llamacpp/llamacpp_bench.mjs");
            List<String> cmd = List.of("node", script.toString(), gguf.toString(), String.valueOf(threads), String.valueOf(promptTokens),
                    String.valueOf(newTokens), "0", String.valueOf(vocab), "stdin");
            Session s;
            try {
                s = new Session(new ProcessBuilder(cmd).redirectErrorStream(true).start(), dtype, promptTokens, newTokens);
            } catch (IOException e) {
                System.out.println("llama.cpp column: could not run node (" + e.getMessage() + "); install Node.js and node-llama-cpp (bench/llamacpp)");
                return null;
            }
            if (s.read(true) == null) { s.close(); return null; }
            return s;
        }

        /// One round (prefill, time to first token and decode seconds, kept for [#result]), or null once the
        /// process has failed (the reason printed once).
        double[] round() {
            if (failed) return null;
            try {
                in.write('\n');
                in.flush();
            } catch (IOException e) {
                fail("the node process stopped (" + e.getMessage() + ")");
                return null;
            }
            double[] v = read(false);
            if (v != null) rounds.add(v);
            return v;
        }

        /// Lines up to the next round's fields (or the ready line); null at the end of the output (a failure).
        private double[] read(boolean ready) {
            StringBuilder other = new StringBuilder();
            try {
                for (String line; (line = out.readLine()) != null; ) {
                    if (ready && line.contains("\"ready\":true")) return new double[0];
                    Matcher m = FIELD.matcher(line);
                    double[] v = new double[3];
                    int found = 0;
                    while (m.find()) {
                        int k = switch (m.group(1)) { case "prefill_s" -> 0; case "ttft_s" -> 1; default -> 2; };
                        v[k] = Double.parseDouble(m.group(2));
                        found++;
                    }
                    if (found == 3 && !ready) return v;
                    if (other.length() < 2000) other.append(line).append('\n');
                }
            } catch (IOException e) {
                other.append(e.getMessage());
            }
            fail("node-llama-cpp failed:\n" + other.toString().strip());
            return null;
        }

        private void fail(String why) {
            failed = true;
            System.out.println("llama.cpp column (" + dtype + "): " + why);
        }

        /// Medians of the rounds run as a [GenerateBench.Result] (gemm "llama.cpp"), or null when there are none.
        GenerateBench.Result result() {
            if (failed || rounds.isEmpty()) return null;
            double[][] cols = new double[3][rounds.size()];
            for (int i = 0; i < rounds.size(); i++) for (int k = 0; k < 3; k++) cols[k][i] = rounds.get(i)[k];
            return new GenerateBench.Result(dtype, "llama.cpp", promptTokens / GenerateBench.median(cols[0]), GenerateBench.median(cols[1]),
                    (newTokens - 1) / GenerateBench.median(cols[2]), 0);
        }

        /// Closes standard input (the script ends) and waits for the process, at most a minute.
        @Override
        public void close() {
            try {
                in.close();
            } catch (IOException ignored) { }
            try {
                if (!process.waitFor(60, TimeUnit.SECONDS)) process.destroyForcibly();
            } catch (InterruptedException e) {
                process.destroyForcibly();
                Thread.currentThread().interrupt();
            }
        }
    }
}
