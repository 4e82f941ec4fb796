package org.peft4j.train;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import com.fasterxml.jackson.databind.node.ObjectNode;
import org.peft4j.core.Gemm;
import org.peft4j.core.Peft4jException.ConfigException;
import org.peft4j.model.GenerationConfig;
import org.peft4j.model.Models;
import org.peft4j.model.adapter.LoadedAdapter;
import org.peft4j.model.generate.GenerateRequest;
import org.peft4j.model.generate.Generator;
import org.peft4j.model.generate.Sampler;
import org.peft4j.model.llama.LlamaModel;
import org.peft4j.tokenizer.Tokenizer;
import org.peft4j.train.data.Conversation;
import org.peft4j.train.data.DatasetInfo;
import org.peft4j.train.data.DatasetLoader;
import org.peft4j.train.data.Template;
import org.peft4j.train.data.TextEncoder;
import org.peft4j.train.data.Unsupervised;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/// `do_predict: true` with `predict_with_generate: true` (LLaMA-Factory's sft workflow `trainer.predict` +
/// `save_predictions` + `save_metrics("predict")`): every example of `eval_dataset` (max_samples, cutoff_len as for
/// training; LLaMA-Factory's unsupervised processor, [Unsupervised]) is answered by the model with
/// `adapter_name_or_path`, through the library's batched [Generator] (per_device_eval_batch_size sequences at once)
/// with the generation keys (do_sample, temperature, top_p, top_k, repetition_penalty, max_new_tokens; seed = the
/// run's seed plus the example's index). Writes `generated_predictions.jsonl` ({"prompt", "predict", "label"} per
/// line: the prompt decoded with its special tokens, the prediction and the label without them when
/// skip_special_tokens) and `predict_results.json` (predict_bleu-4, predict_rouge-1, predict_rouge-2, predict_rouge-l
/// as [NlgMetrics] computes them, predict_runtime, predict_samples_per_second, predict_steps_per_second), merged into
/// all_results.json as transformers' save_metrics does.
public final class Prediction {
    private Prediction() {}

    /// The generation keys of a config.
    public record Options(boolean doSample, double temperature, double topP, int topK, double repetitionPenalty, int maxNewTokens,
                          boolean skipSpecialTokens, int batch, long seed) {
        public static Options of(TrainConfig c) {
            return new Options(c.b("do_sample"), c.d("temperature"), c.d("top_p"), c.i("top_k"), c.d("repetition_penalty"),
                    c.i("max_new_tokens"), c.b("skip_special_tokens"), c.i("per_device_eval_batch_size"), c.i("seed"));
        }

        /// transformers' generate: do_sample false (or temperature 0) picks the most likely token.
        Sampler sampler() {
            return doSample && temperature > 0 ? new Sampler.Random(temperature, topK, topP, repetitionPenalty) : new Sampler.Greedy(repetitionPenalty);
        }
    }

    /// What a prediction run produced.
    public record Result(int examples, Map<String, Double> metrics, double seconds) {}

    public static Result run(TrainConfig config, Path modelDir, Gemm gemm) {
        TrainArgs a = config.args();
        Options o = Options.of(config);
        Tokenizer tok = Tokenizer.load(modelDir);
        TextEncoder enc = TrainData.encoder(tok);
        Template template = TrainData.template(a.data(), modelDir);
        DatasetInfo info = DatasetInfo.load(a.data().datasetDir());
        List<Conversation> cs = DatasetLoader.loadConversations(info, DatasetLoader.parseNames(a.data().evalDataset()), a.data().maxSamples(), a.training().seed());
        if (cs.isEmpty()) throw new ConfigException("eval_dataset " + a.data().evalDataset() + " has no examples to predict; check max_samples");
        List<Unsupervised.Example> ex = new ArrayList<>(cs.size());
        for (Conversation c : cs) ex.add(Unsupervised.encode(template, enc, c, a.data().cutoffLen()));

        // quantization_bit 4: the base quantized as QLoRA trains over it (LLaMA-Factory loads the base in 4 bits to predict)
        LlamaModel m = a.model().quantizationBit() != null && !org.peft4j.model.quant.QuantizedModel.isQuantized(modelDir)
                ? LlamaModel.of(org.peft4j.model.quant.QuantizedModel.quantize(Models.loadWeights(modelDir),
                        org.peft4j.quant.QuantType.of(a.model().quantizationType()), 64, a.model().doubleQuantization()), gemm)
                : Models.load(modelDir, gemm);
        LoadedAdapter adapter = a.model().adapterNameOrPath() == null ? null : m.loadAdapter("predict", Path.of(a.model().adapterNameOrPath()));
        List<Integer> stops = new ArrayList<>(GenerationConfig.read(modelDir, m.config).eosTokenIds());
        int templateEos;
        try {
            templateEos = template.eosId(enc);   // the template's stop word (e.g. <|im_end|>), when the tokenizer has it
        } catch (ConfigException e) {
            templateEos = -1;                    // a token the tokenizer lacks cannot be generated: nothing to stop at
        }
        for (int id : new int[] {tok.eosId(), templateEos}) if (id >= 0 && !stops.contains(id)) stops.add(id);
        int[] stopIds = stops.stream().mapToInt(Integer::intValue).toArray();

        int maxPos = m.config.maxPositionEmbeddings(), longest = 1;
        for (Unsupervised.Example e : ex) {
            if (e.prompt().length >= maxPos)
                throw new ConfigException("a prompt of eval_dataset has " + e.prompt().length + " tokens after cutoff_len, the model's context is " + maxPos + "; lower cutoff_len");
            longest = Math.max(longest, e.prompt().length);
        }
        int capacity = (int) Math.min(maxPos, (long) longest + o.maxNewTokens());
        long t0 = System.nanoTime();
        int[][] generated = new int[ex.size()][];
        Generator g = new Generator(m, Math.max(1, o.batch()), capacity, Math.min(longest, Generator.DEFAULT_CHUNK));
        Sampler sampler = o.sampler();
        List<Generator.Sequence> seqs = new ArrayList<>(ex.size());
        for (int i = 0; i < ex.size(); i++)
            seqs.add(g.add(new GenerateRequest(ex.get(i).prompt(), sampler, o.seed() + i, o.maxNewTokens(), stopIds, adapter), null));
        while (g.step()) { }
        for (int i = 0; i < ex.size(); i++) generated[i] = seqs.get(i).result().tokens();
        double seconds = (System.nanoTime() - t0) / 1e9;

        List<Map<String, Double>> scores = new ArrayList<>();
        StringBuilder jsonl = new StringBuilder();
        ObjectMapper om = new ObjectMapper();
        for (int i = 0; i < ex.size(); i++) {
            String pred = tok.decode(generated[i], o.skipSpecialTokens()), label = tok.decode(ex.get(i).label(), o.skipSpecialTokens());
            // the metrics decode with skip_special_tokens=True whatever the key (ComputeSimilarity)
            scores.add(NlgMetrics.scores(tok.decode(generated[i], true), tok.decode(ex.get(i).label(), true)));
            ObjectNode row = om.createObjectNode().put("prompt", tok.decode(ex.get(i).prompt(), false)).put("predict", pred).put("label", label);
            jsonl.append(row).append('\n');
        }
        Map<String, Double> metrics = new LinkedHashMap<>(NlgMetrics.means(scores));
        metrics.replaceAll((k, v) -> Trainer.round(v));
        int steps = (ex.size() + Math.max(1, o.batch()) - 1) / Math.max(1, o.batch());
        metrics.put("predict_runtime", Trainer.round(seconds));
        metrics.put("predict_samples_per_second", Math.round(ex.size() / Math.max(seconds, 1e-9) * 1000) / 1000.0);
        metrics.put("predict_steps_per_second", Math.round(steps / Math.max(seconds, 1e-9) * 1000) / 1000.0);
        Path out = a.output().dir();
        try {
            Files.createDirectories(out);
            Checkpoint.writeAtomically(out.resolve("generated_predictions.jsonl"), jsonl.toString());
            var pretty = new ObjectMapper().enable(SerializationFeature.INDENT_OUTPUT);
            Checkpoint.writeAtomically(out.resolve("predict_results.json"), pretty.writeValueAsString(metrics));
            Map<String, Object> all = new LinkedHashMap<>();
            Path allFile = out.resolve("all_results.json");
            if (Files.exists(allFile)) all.putAll(om.readValue(allFile.toFile(), Map.class));
            all.putAll(metrics);
            Checkpoint.writeAtomically(allFile, pretty.writeValueAsString(all));
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
        return new Result(ex.size(), metrics, seconds);
    }
}
