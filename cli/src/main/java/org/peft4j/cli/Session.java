package org.peft4j.cli;

import org.peft4j.core.Gemm;
import org.peft4j.model.GenerationConfig;
import org.peft4j.model.Models;
import org.peft4j.model.generate.Generator;
import org.peft4j.model.generate.Sampler;
import org.peft4j.model.llama.LlamaModel;
import org.peft4j.tokenizer.StreamDecoder;
import org.peft4j.tokenizer.Tokenizer;

import java.io.PrintStream;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;

/// A loaded model with its tokenizer and generation defaults, and the text-level generation loop (streaming,
/// stop strings) that the model module leaves to its caller.
final class Session {
    final Path dir;
    final LlamaModel model;
    final Tokenizer tokenizer;
    final GenerationConfig generation;

    Session(Path dir, Gemm gemm) {
        this.dir = dir;
        // A bitsandbytes 4-bit folder runs on its dequantized weights (fine for small models; the 4-bit inference
        // kernel is used only in training so far).
        this.model = org.peft4j.model.quant.QuantizedModel.isQuantized(dir)
                ? new LlamaModel(org.peft4j.model.quant.QuantizedModel.load(dir).dequantizedWeights(), gemm)
                : Models.load(dir, gemm);
        this.tokenizer = Tokenizer.load(dir);
        this.generation = GenerationConfig.read(dir, model.config);
    }

    List<Integer> eosIds() {
        List<Integer> eos = new ArrayList<>(generation.eosTokenIds());
        if (tokenizer.eosId() >= 0 && !eos.contains(tokenizer.eosId())) eos.add(tokenizer.eosId());
        return eos;
    }

    /// Generates from prompt ids, streaming text to `out` (when not null); returns the completion text, cut before the
    /// first stop string.
    String complete(int[] prompt, Sampler sampler, int maxNewTokens, long seed, List<String> stops, PrintStream out) {
        Generator g = new Generator(model, sampler, eosIds(), new SplittableRandom(seed));
        StreamDecoder dec = tokenizer.streamDecoder(true);
        StringBuilder text = new StringBuilder();
        int[] printed = {0};
        g.generate(prompt, maxNewTokens, id -> {
            text.append(dec.push(id));
            int cut = firstStop(text, stops);
            int safe = cut >= 0 ? cut : text.length() - longestStopPrefix(text, stops);
            if (out != null && safe > printed[0]) {
                out.print(text.substring(printed[0], safe));
                out.flush();
                printed[0] = safe;
            }
            if (cut >= 0) { text.setLength(cut); return false; }
            return true;
        });
        if (out != null && text.length() > printed[0]) { out.print(text.substring(printed[0])); out.flush(); }
        return text.toString();
    }

    static int firstStop(CharSequence text, List<String> stops) {
        int best = -1;
        for (String s : stops) {
            int i = text.toString().indexOf(s);
            if (i >= 0 && (best < 0 || i < best)) best = i;
        }
        return best;
    }

    /// Length of the longest suffix of text that is a proper prefix of a stop string (held back while streaming).
    static int longestStopPrefix(CharSequence text, List<String> stops) {
        int best = 0;
        String t = text.toString();
        for (String s : stops)
            for (int k = Math.min(s.length() - 1, t.length()); k > best; k--)
                if (t.endsWith(s.substring(0, k))) { best = k; break; }
        return best;
    }
}
