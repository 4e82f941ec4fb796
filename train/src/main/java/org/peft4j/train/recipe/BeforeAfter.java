package org.peft4j.train.recipe;

import org.peft4j.core.Gemm;
import org.peft4j.core.Peft4jException.ConfigException;
import org.peft4j.model.GenerationConfig;
import org.peft4j.model.Models;
import org.peft4j.model.adapter.LoadedAdapter;
import org.peft4j.model.generate.GenerateRequest;
import org.peft4j.model.generate.Generator;
import org.peft4j.model.generate.Sampler;
import org.peft4j.model.llama.LlamaModel;
import org.peft4j.model.llama.LlamaWeights;
import org.peft4j.model.quant.QuantizedModel;
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

/// Computes a [Comparison]: [#before] on the base weights before the training model is built (PiSSA rewrites them),
/// [#after] on the saved result: the base folder reloaded with the adapter merged (as `chat --adapter` runs it), or the
/// saved full model. Answers are greedy, 48 new tokens at most, through the training template.
final class BeforeAfter {
    static final int MAX_NEW_TOKENS = 48;

    private final Path modelDir;
    private final Gemm gemm;
    private final Tokenizer tok;
    private final TrainData data;
    private final List<String> prompts;
    private final List<TokenizedExample> general;
    private final List<String> answersBefore = new ArrayList<>();
    private Evaluation.Result validationBefore, generalBefore;

    private final List<TokenizedExample> validation;

    /// `units`: stages dpo and kto, whose validation list interleaves two sequences per unit (chosen and rejected; an
    /// example and its KL sequence); the loss is then the chosen or desirable answers' (what preference tuning should
    /// make likely).
    BeforeAfter(Path modelDir, Gemm gemm, Tokenizer tok, TrainData data, List<String> prompts, Path generalText, boolean units) {
        this.modelDir = modelDir; this.gemm = gemm; this.tok = tok; this.data = data; this.prompts = List.copyOf(prompts);
        List<TokenizedExample> v = data.eval();
        if (units) {
            v = new ArrayList<>();
            for (int i = 0; i < data.eval().size(); i += 2)
                if (data.evalDesirable() == null || data.evalDesirable()[i / 2]) v.add(data.eval().get(i));
        }
        this.validation = v;
        try {
            this.general = generalText == null ? List.of() : Evaluation.texts(Files.readAllLines(generalText), s -> tok.encode(s, true));
        } catch (IOException e) {
            throw new ConfigException("forgetting_text " + generalText + " cannot be read (" + e.getMessage() + "); give a text file with one passage per line", e);
        }
    }

    void before(LlamaWeights base) {
        LlamaModel m = new LlamaModel(base, gemm);
        for (String p : prompts) answersBefore.add(answer(m, p));
        validationBefore = validation.isEmpty() ? null : Evaluation.evaluate(m, validation);
        generalBefore = general.isEmpty() ? null : Evaluation.evaluate(m, general);
    }

    Comparison after(Path outputDir, boolean lora) {
        LlamaModel tuned;
        if (org.peft4j.model.adapter.oft.OftAdapter.isOft(outputDir)) {   // OFT: merged into a float copy of the base (W·R_bdᵀ)
            var w = QuantizedModel.isQuantized(modelDir) ? QuantizedModel.load(modelDir).dequantizedWeights() : Models.loadWeights(modelDir);
            org.peft4j.model.adapter.oft.OftAdapter.read(outputDir, w.config).mergeInto(w);
            tuned = new LlamaModel(w, gemm);
        } else if (lora) {
            tuned = QuantizedModel.isQuantized(modelDir) ? new LlamaModel(QuantizedModel.load(modelDir).dequantizedWeights(), gemm)
                    : org.peft4j.model.gguf.GgufModel.isGguf(modelDir) ? new LlamaModel(Models.loadWeights(modelDir), gemm)   // merged in float32
                    : Models.load(modelDir, gemm);
            LoadedAdapter a = tuned.loadAdapter("tuned", outputDir);
            if (a.virtualTokens() == 0) tuned.merge("tuned");
            else adapter = a;   // prompt and prefix tuning add virtual tokens, nothing to merge: run it per row as chat does
        } else {
            tuned = Models.load(outputDir, gemm);
        }
        List<Comparison.Answer> answers = new ArrayList<>();
        for (int i = 0; i < prompts.size(); i++) answers.add(new Comparison.Answer(prompts.get(i), answersBefore.get(i), answer(tuned, prompts.get(i))));
        return new Comparison(answers, validationBefore, validationBefore == null ? null : Evaluation.evaluate(tuned, adapter, validation),
                generalBefore, generalBefore == null ? null : Evaluation.evaluate(tuned, adapter, general));
    }

    private LoadedAdapter adapter;   // the tuned prompt- or prefix-tuning adapter, or null (merged, or none)

    private String answer(LlamaModel m, String prompt) {
        int[] ids = data.promptIds(TrainData.encoder(tok), null, prompt);
        List<Integer> stops = new ArrayList<>(GenerationConfig.read(modelDir, m.config).eosTokenIds());
        if (tok.eosId() >= 0 && !stops.contains(tok.eosId())) stops.add(tok.eosId());
        int[] stopIds = stops.stream().mapToInt(Integer::intValue).toArray();
        var r = Generator.generate(m, new GenerateRequest(ids, new Sampler.Greedy(), 0, MAX_NEW_TOKENS, stopIds, adapter), null);
        return tok.decode(r.tokens(), true).strip().replace("\n", " ");
    }
}
