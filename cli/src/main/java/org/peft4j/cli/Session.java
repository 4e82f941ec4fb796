package org.peft4j.cli;

import org.peft4j.core.Gemm;
import org.peft4j.model.GenerationConfig;
import org.peft4j.model.Models;
import org.peft4j.model.generate.GenerateRequest;
import org.peft4j.model.llama.LlamaModel;
import org.peft4j.tokenizer.Tokenizer;
import org.peft4j.train.generate.Completion;
import org.peft4j.train.generate.TextStream;

import java.io.PrintStream;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.FutureTask;

/// A loaded model (linear weights as stored: float32, 16-bit or 4-bit) with its tokenizer and generation defaults,
/// for the commands that generate or evaluate; the generation itself is the library's ([TextStream]).
final class Session {
    final Path dir;
    final LlamaModel model;
    final Tokenizer tokenizer;
    final GenerationConfig generation;

    /// The tokenizer is read on a second thread while the weights load (both take a few hundred milliseconds of a
    /// command's start for a 135M model); a model error is still reported before a tokenizer error.
    Session(Path dir, Gemm gemm) {
        this.dir = dir;
        var tokenizerLoad = new FutureTask<>(() -> Tokenizer.load(dir));
        Thread.ofPlatform().daemon().name("peft4j-tokenizer-load").start(tokenizerLoad);
        this.model = Models.load(dir, gemm);
        this.tokenizer = Tokenizer.checkVocab(join(tokenizerLoad), dir, model.config.vocabSize());
        this.generation = GenerationConfig.read(dir, model.config);
    }

    /// The task's result, or its exception as thrown (a checked one wrapped).
    private static <T> T join(FutureTask<T> task) {
        try {
            return task.get();
        } catch (ExecutionException e) {
            if (e.getCause() instanceof RuntimeException r) throw r;
            if (e.getCause() instanceof Error err) throw err;
            throw new IllegalStateException(e.getCause());
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IllegalStateException("interrupted while the tokenizer loaded", e);
        }
    }

    /// generation_config.json's EOS ids and the tokenizer's EOS.
    int[] eosIds() {
        List<Integer> eos = new ArrayList<>(generation.eosTokenIds());
        if (tokenizer.eosId() >= 0 && !eos.contains(tokenizer.eosId())) eos.add(tokenizer.eosId());
        return eos.stream().mapToInt(Integer::intValue).toArray();
    }

    /// Generates `request`, streaming the text to `out` when not null (held back while it could begin a stop string).
    Completion complete(GenerateRequest request, List<String> stops, PrintStream out) {
        return TextStream.complete(model, tokenizer, request, stops, out == null ? null : piece -> {
            out.print(piece);
            out.flush();
        });
    }
}
