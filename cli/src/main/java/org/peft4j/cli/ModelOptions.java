package org.peft4j.cli;

import org.peft4j.core.Gemm;
import org.peft4j.core.Gemms;
import org.peft4j.core.Parallel;
import org.peft4j.core.Peft4jException.ConfigException;
import picocli.CommandLine.Option;

import java.nio.file.Files;
import java.nio.file.Path;

/// Options shared by commands that load a model: the folder, threads and the matrix-product backend.
final class ModelOptions {
    @Option(names = {"--model", "-m"}, paramLabel = "DIR|FILE.gguf|ORG/NAME",
            description = "Hugging Face model folder, GGUF file or Hub repo id (default: the bundled TinyStories-656K).")
    String model;

    @Option(names = "--threads", paramLabel = "N", description = "Worker threads (default: all cores).")
    Integer threads;

    @Option(names = "--gemm", paramLabel = "MODE", defaultValue = "auto",
            description = "Matrix products: auto (calibrated), java, openblas or scalar (default: ${DEFAULT-VALUE}).")
    String gemm;

    /// The model folder or GGUF file: --model, else the bundled default model.
    Path modelDir() {
        Path p = model != null ? ModelResolver.resolve(model) : defaultModel();
        if (Files.isRegularFile(p) && p.getFileName().toString().endsWith(".gguf")) return p;
        if (Files.isRegularFile(p))
            throw new ConfigException("--model " + p + " is a file, not a model folder; pass --model DIR with a Hugging Face model folder (config.json, model.safetensors, tokenizer.json) or --model FILE.gguf");
        if (!Files.isDirectory(p))
            throw new ConfigException("model folder " + p + " does not exist; pass --model DIR with a Hugging Face model folder (config.json, model.safetensors, tokenizer.json) or --model FILE.gguf");
        return p;
    }

    static Path defaultModel() {
        String home = System.getProperty("peft4j.home", ".");
        return Path.of(home, "models", "tinystories-656k");
    }

    /// Refuses to write a model into `out` when it is a file or a non-empty folder (an earlier model would be silently
    /// mixed with or replaced by the new one), unless `overwrite` (the command's --overwrite) is set.
    static void refuseExistingOutput(Path out, String flag, boolean overwrite) {
        if (overwrite || !java.nio.file.Files.exists(out)) return;
        boolean empty = false;
        if (java.nio.file.Files.isDirectory(out)) {
            try (var s = java.nio.file.Files.list(out)) { empty = s.findAny().isEmpty(); }
            catch (java.io.IOException e) { throw new ConfigException("cannot read " + flag + " " + out + ": " + e.getMessage(), e); }
        }
        if (!empty)
            throw new ConfigException(flag + " " + out + " already exists" + (java.nio.file.Files.isDirectory(out) ? " and is not empty" : " as a file")
                    + "; choose another " + flag + ", or pass --overwrite to write over it");
    }

    /// Applies --threads and returns the selected backend.
    Gemm setup() {
        if (threads != null) {
            if (threads < 1) throw new ConfigException("--threads must be >= 1, got " + threads);
            Parallel.setThreads(Parallel.capToCores(threads));
        }
        return Gemms.get(gemm);
    }
}
