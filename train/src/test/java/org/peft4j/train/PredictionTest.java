package org.peft4j.train;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.peft4j.core.Gemms;
import org.peft4j.model.GenerationConfig;
import org.peft4j.model.Models;
import org.peft4j.model.generate.GenerateRequest;
import org.peft4j.model.generate.Generator;
import org.peft4j.model.generate.Sampler;
import org.peft4j.testkit.Shared;
import org.peft4j.tokenizer.Tokenizer;
import org.peft4j.train.data.DatasetInfo;
import org.peft4j.train.data.DatasetLoader;
import org.peft4j.train.data.Unsupervised;
import org.peft4j.train.recipe.FinetuneRecipe;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.*;

/// do_predict end to end on the bundled model with a trained adapter: greedy predictions written by the batched run
/// (two sequences at a time) equal the library's one-sequence generator given the same prompt ids and the adapter;
/// predict_results.json holds the means of NlgMetrics over the written (predict, label) pairs; with do_eval as well the
/// run evaluates, then predicts.
class PredictionTest {
    @Test
    void greedyPredictionsEqualTheGeneratorsAndMetricsTheirScores(@TempDir Path tmp) throws Exception {
        Path model = Shared.root().resolve("models/tinystories-656k"), data = Shared.require("data/llamafactory");
        Path adapter = tmp.resolve("adapter"), out = tmp.resolve("predict");
        List<String> common = List.of("--model_name_or_path", model.toString(), "--dataset_dir", data.toString(), "--template", "default",
                "--cutoff_len", "64", "--gemm", "java");
        List<String> train = new ArrayList<>(common);
        train.addAll(List.of("--dataset", "identity", "--output_dir", adapter.toString(), "--max_steps", "3", "--learning_rate", "1e-2",
                "--max_samples", "8", "--save_steps", "0"));
        new FinetuneRecipe().run(TrainConfig.load(null, train), e -> {});
        List<String> predict = new ArrayList<>(common);
        predict.addAll(List.of("--do_predict", "true", "--predict_with_generate", "true", "--eval_dataset", "identity", "--max_samples", "3",
                "--do_sample", "false", "--max_new_tokens", "16", "--per_device_eval_batch_size", "2", "--output_dir", out.toString(),
                "--adapter_name_or_path", adapter.toString()));
        TrainConfig cfg = TrainConfig.load(null, predict);
        new FinetuneRecipe().run(cfg, e -> {});

        List<JsonNode> rows = new ArrayList<>();
        var om = new ObjectMapper();
        for (String l : Files.readAllLines(out.resolve("generated_predictions.jsonl"))) rows.add(om.readTree(l));
        assertEquals(3, rows.size());
        // the same prompts through the library's generator, one at a time, greedy, with the adapter
        Tokenizer tok = Tokenizer.load(model);
        var enc = TrainData.encoder(tok);
        var template = TrainData.template(cfg.args().data(), model);
        var cs = DatasetLoader.loadConversations(DatasetInfo.load(data), List.of("identity"), 3, cfg.i("seed"));
        var m = Models.load(model, Gemms.get("java"));
        var a = m.loadAdapter("a", adapter);
        List<Integer> stops = new ArrayList<>(GenerationConfig.read(model, m.config).eosTokenIds());
        if (!stops.contains(tok.eosId())) stops.add(tok.eosId());
        List<Map<String, Double>> scores = new ArrayList<>();
        for (int i = 0; i < 3; i++) {
            var ex = Unsupervised.encode(template, enc, cs.get(i), 64);
            var r = Generator.generate(m, new GenerateRequest(ex.prompt(), new Sampler.Greedy(), 0, 16,
                    stops.stream().mapToInt(Integer::intValue).toArray(), a), null);
            assertEquals(tok.decode(r.tokens(), true), rows.get(i).get("predict").asText(), "example " + i);
            assertEquals(tok.decode(ex.label(), true), rows.get(i).get("label").asText());
            assertEquals(tok.decode(ex.prompt(), false), rows.get(i).get("prompt").asText());
            scores.add(NlgMetrics.scores(rows.get(i).get("predict").asText(), rows.get(i).get("label").asText()));
        }
        JsonNode res = om.readTree(out.resolve("predict_results.json").toFile());
        NlgMetrics.means(scores).forEach((k, v) -> assertEquals(Trainer.round(v), res.get(k).asDouble(), 1e-9, k));
    }

    @Test
    void doEvalAndDoPredictRunBoth(@TempDir Path tmp) throws Exception {
        Path model = Shared.root().resolve("models/tinystories-656k"), data = Shared.require("data/llamafactory");
        Path out = tmp.resolve("both");
        new FinetuneRecipe().run(TrainConfig.load(null, List.of("--model_name_or_path", model.toString(), "--dataset_dir", data.toString(),
                "--template", "default", "--cutoff_len", "64", "--gemm", "java", "--dataset", "identity", "--eval_dataset", "identity",
                "--max_samples", "2", "--do_train", "false", "--do_eval", "true", "--do_predict", "true", "--predict_with_generate", "true",
                "--max_new_tokens", "4", "--output_dir", out.toString())), e -> {});
        assertTrue(Files.exists(out.resolve("eval_results.json")));
        assertEquals(2, Files.readAllLines(out.resolve("generated_predictions.jsonl")).size());
        JsonNode all = new ObjectMapper().readTree(out.resolve("all_results.json").toFile());
        assertTrue(all.has("eval_loss") && all.has("predict_bleu-4"), all.toString());
    }

    /// quantization_bit 4 predicts with the base quantized as QLoRA trains over it (NF4): greedy answers from the 4-bit
    /// base equal the library generator's over the same quantized weights.
    @Test
    void quantizationBitPredictsWithTheFourBitBase(@TempDir Path tmp) throws Exception {
        Path model = Shared.root().resolve("models/tinystories-656k"), data = Shared.require("data/llamafactory");
        Path out = tmp.resolve("q");
        TrainConfig cfg = TrainConfig.load(null, List.of("--model_name_or_path", model.toString(), "--dataset_dir", data.toString(),
                "--template", "default", "--cutoff_len", "64", "--gemm", "java", "--eval_dataset", "identity", "--max_samples", "1",
                "--do_predict", "true", "--predict_with_generate", "true", "--do_sample", "false", "--max_new_tokens", "12",
                "--quantization_bit", "4", "--output_dir", out.toString()));
        new FinetuneRecipe().run(cfg, e -> {});
        String predicted = new ObjectMapper().readTree(Files.readAllLines(out.resolve("generated_predictions.jsonl")).getFirst()).get("predict").asText();
        Tokenizer tok = Tokenizer.load(model);
        var ex = Unsupervised.encode(TrainData.template(cfg.args().data(), model), TrainData.encoder(tok),
                DatasetLoader.loadConversations(DatasetInfo.load(data), List.of("identity"), 1, cfg.i("seed")).getFirst(), 64);
        var q = org.peft4j.model.llama.LlamaModel.of(org.peft4j.model.quant.QuantizedModel.quantize(Models.loadWeights(model),
                org.peft4j.quant.QuantType.NF4, 64, true), Gemms.get("java"));
        List<Integer> stops = new ArrayList<>(GenerationConfig.read(model, q.config).eosTokenIds());
        if (!stops.contains(tok.eosId())) stops.add(tok.eosId());
        var r = Generator.generate(q, new GenerateRequest(ex.prompt(), new Sampler.Greedy(), 0, 12, stops.stream().mapToInt(Integer::intValue).toArray(), null), null);
        assertEquals(tok.decode(r.tokens(), true), predicted);
        // and it is not what the float base answers, so the check tells the two apart
        var f = Generator.generate(Models.load(model, Gemms.get("java")), new GenerateRequest(ex.prompt(), new Sampler.Greedy(), 0, 12,
                stops.stream().mapToInt(Integer::intValue).toArray(), null), null);
        assertNotEquals(tok.decode(f.tokens(), true), predicted, "the float base answers the same; pick a longer answer or another example");
    }
}
