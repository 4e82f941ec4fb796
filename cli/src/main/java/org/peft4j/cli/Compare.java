package org.peft4j.cli;

import org.peft4j.core.Gemm;
import org.peft4j.model.GenerationConfig;
import org.peft4j.model.Models;
import org.peft4j.model.generate.Generator;
import org.peft4j.model.generate.Sampler;
import org.peft4j.model.llama.LlamaModel;
import org.peft4j.model.llama.LlamaWeights;
import org.peft4j.tokenizer.Tokenizer;
import org.peft4j.train.Evaluation;
import org.peft4j.train.TrainData;
import org.peft4j.train.data.TokenizedExample;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;

/// `train --compare`: greedy answers to a few prompts and held-out losses, before and after training, side by side:
/// what was learned (validation loss, answers) and what was forgotten (loss on general text).
final class Compare {
    private final Path modelDir;
    private final Gemm gemm;
    private final Tokenizer tok;
    private final TrainData data;
    private final List<String> prompts;
    private final List<TokenizedExample> general;
    private final List<String> before = new ArrayList<>();
    private Evaluation.Result valBefore, genBefore;

    Compare(Path modelDir, Gemm gemm, Tokenizer tok, TrainData data, List<String> prompts, Path generalText) throws IOException {
        this.modelDir = modelDir; this.gemm = gemm; this.tok = tok; this.data = data; this.prompts = prompts;
        this.general = generalText == null ? List.of()
                : Evaluation.texts(Files.readAllLines(generalText), s -> tok.encode(s, true));
    }

    void before(LlamaWeights weights) {
        LlamaModel base = new LlamaModel(weights, gemm);
        for (String p : prompts) before.add(answer(base, p));
        valBefore = data.eval().isEmpty() ? null : Evaluation.evaluate(base, data.eval());
        genBefore = general.isEmpty() ? null : Evaluation.evaluate(base, general);
    }

    void after(Path out, String finetuningType) {
        LlamaModel tuned;
        if (finetuningType.equals("lora")) {
            Session s = new Session(modelDir, gemm);
            Adapters.apply(s, out);
            tuned = s.model;
        } else {
            tuned = Models.load(out, gemm);
        }
        System.out.println();
        System.out.println("=== before and after fine-tuning (greedy) ===");
        for (int i = 0; i < prompts.size(); i++) {
            System.out.println("Q: " + prompts.get(i));
            System.out.println("  before: " + before.get(i));
            System.out.println("  after:  " + answer(tuned, prompts.get(i)));
        }
        System.out.println();
        System.out.println("=== held-out loss (perplexity) ===            base            tuned");
        if (valBefore != null) row("validation set (learned)", valBefore, Evaluation.evaluate(tuned, data.eval()));
        if (genBefore != null) row("general text (forgetting check)", genBefore, Evaluation.evaluate(tuned, general));
    }

    private static void row(String what, Evaluation.Result a, Evaluation.Result b) {
        System.out.printf("%-36s %7.3f (%7.2f)  %7.3f (%7.2f)%n", what, a.loss(), a.perplexity(), b.loss(), b.perplexity());
    }

    private String answer(LlamaModel m, String prompt) {
        int[] ids = data.promptIds(TrainData.encoder(tok), null, prompt);
        var eos = GenerationConfig.read(modelDir, m.config).eosTokenIds();
        List<Integer> stops = new ArrayList<>(eos);
        if (tok.eosId() >= 0 && !stops.contains(tok.eosId())) stops.add(tok.eosId());
        var r = new Generator(m, new Sampler.Greedy(), stops, new SplittableRandom(0)).generate(ids, 48, id -> true);
        return tok.decode(r.tokens(), true).strip().replace("\n", " ");
    }
}
