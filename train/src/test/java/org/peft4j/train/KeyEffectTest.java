package org.peft4j.train;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.DynamicTest;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestFactory;
import org.junit.jupiter.api.io.TempDir;
import org.peft4j.core.DType;
import org.peft4j.core.Gemms;
import org.peft4j.core.Parallel;
import org.peft4j.model.LlamaConfig;
import org.peft4j.model.Models;
import org.peft4j.model.RandomModels;
import org.peft4j.model.adapter.lora.LoraConfig;
import org.peft4j.model.adapter.lora.LoraWeights;
import org.peft4j.model.adapter.lora.PeftAdapter;
import org.peft4j.model.adapter.lora.Pissa;
import org.peft4j.model.llama.LlamaModel;
import org.peft4j.testkit.Shared;
import org.peft4j.train.data.TokenizedExample;
import org.peft4j.train.engine.Method;
import org.peft4j.train.engine.Param;
import org.peft4j.train.recipe.FinetuneRecipe;
import org.peft4j.train.recipe.TrainEvent;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeSet;
import java.util.stream.Stream;

import static org.junit.jupiter.api.Assertions.*;

/// Every key that [TrainConfig] marks SUPPORTED takes effect: for each, one run of the recipe with the key at its
/// default and one with a non-default value (same context otherwise), and an observation of what the recipe built or
/// did that the key must change: the built method, model, data, optimizer, learning rates, parameter updates, events
/// or files. [#everySupportedKeyHasARow] fails when a key is added to the table without a row here.
/// All runs are tiny: TinyStories-656K, 12 examples, cutoff 48, batch 2, 2 steps.
class KeyEffectTest {
    /// LlamaModel (inference) and TrainModel (training) sum in different orders: token-mean losses agree to ~1e-6.
    static final double LOSS_ATOL = 1e-5;
    /// A float32 parameter update compared with its formula evaluated in double from the same float32 inputs: the
    /// float32 rounding of the update (relative 1e-6 covers a few roundings) plus one ulp of the stored result.
    static final double UPDATE_ATOL = 1e-9;

    @TempDir static Path tmp;
    static Path model, data, data2, randomModel, fourLayers, adapter, checkpoint, general;
    static int runs;
    static int threadsBefore;
    static final Map<List<String>, Probe> baselines = new HashMap<>();

    static final List<String> BASE = List.of("--dataset", "identity_en", "--template", "default", "--cutoff_len", "48",
            "--max_samples", "12", "--per_device_train_batch_size", "2", "--max_steps", "2", "--logging_steps", "1",
            "--save_steps", "0", "--learning_rate", "1e-3", "--lora_rank", "4", "--gemm", "java");

    /// What one run built and did.
    record Probe(TrainConfig config, Path out, List<TrainEvent> events, FinetuneRecipe.Result result, FinetuneRecipe.Built built,
                 Map<String, float[]> start, Map<String, float[]> end, Map<String, float[]> grad, List<Optimizer> optimizers) {
        List<TrainEvent.Step> steps() { return of(TrainEvent.Step.class); }
        List<TrainEvent.Eval> evals() { return of(TrainEvent.Eval.class); }
        List<TrainEvent.CheckpointSaved> checkpoints() { return of(TrainEvent.CheckpointSaved.class); }
        TrainEvent.Started started() { return of(TrainEvent.Started.class).getFirst(); }
        TrainEvent.Preparing preparing() { return of(TrainEvent.Preparing.class).getFirst(); }
        TrainEvent.Setup setup() { return started().setup(); }
        LoraConfig lora() { return ((Method.Lora) built.model().method).config(); }
        double firstLoss() { return steps().getFirst().loss(); }
        Set<String> params() { return new TreeSet<>(start.keySet()); }
        List<TokenizedExample> train() { return built.data().train(); }
        long labelled() { return train().stream().mapToLong(TokenizedExample::trainedCount).sum(); }
        boolean has(String file) { return Files.exists(out.resolve(file)); }
        JsonNode json(String file) throws IOException { return new ObjectMapper().readTree(out.resolve(file).toFile()); }
        /// Largest |end - start| over the tensors whose name ends with `suffix`.
        double maxChange(String suffix) {
            double m = 0;
            for (String n : start.keySet())
                if (n.endsWith(suffix)) for (int i = 0; i < start.get(n).length; i++) m = Math.max(m, Math.abs(end.get(n)[i] - start.get(n)[i]));
            return m;
        }
        /// ‖end - start‖ over all trainable tensors.
        double updateNorm() {
            double s = 0;
            for (String n : start.keySet()) for (int i = 0; i < start.get(n).length; i++) { double d = end.get(n)[i] - start.get(n)[i]; s += d * d; }
            return Math.sqrt(s);
        }
        <T> List<T> of(Class<T> c) { return events.stream().filter(c::isInstance).map(c::cast).toList(); }
    }

    /// `key`: the key proven; `value`: its non-default value; `context`: flags both runs share beyond BASE;
    /// `check(atDefault, withValue)`.
    record Row(String key, String value, List<String> context, Check check) {}

    interface Check { void verify(Probe atDefault, Probe withValue) throws Exception; }

    /// finetuning_type prompt with 4 virtual tokens (PEFT prompt tuning).
    static final List<String> PROMPT = List.of("--finetuning_type", "prompt", "--num_virtual_tokens", "4");

    /// finetuning_type ptuning with 4 virtual tokens (PEFT P-tuning; its MLP encoder unless the row says otherwise).
    static final List<String> PTUNING = List.of("--finetuning_type", "ptuning", "--num_virtual_tokens", "4");

    /// The shape of the saved P-tuning adapter's prompt_embeddings (the encoder's output).
    static long[] savedPromptShape(Probe p) {
        try (var st = org.peft4j.formats.safetensors.SafeTensors.open(p.out().resolve("adapter_model.safetensors"))) {
            assertEquals(Set.of("prompt_embeddings"), st.tensors().keySet());
            return st.info("prompt_embeddings").shape();
        }
    }

    /// finetuning_type prefix with 4 virtual tokens (PEFT prefix tuning / P-tuning v2).
    static final List<String> PREFIX = List.of("--finetuning_type", "prefix", "--num_virtual_tokens", "4");

    /// finetuning_type ia3 (PEFT IA3 with its defaults unless the row's key says otherwise).
    static final List<String> IA3 = List.of("--finetuning_type", "ia3");

    /// Stage dpo on identity pairs (Tiny chosen over Max), one unclipped step.
    static final List<String> DPO = List.of("--stage", "dpo", "--dataset", "identity_pairs", "--max_steps", "1", "--max_grad_norm", "0");

    /// Stage kto on the identity answers (even rows desirable, odd rows naming Max undesirable), one step of 4 examples.
    static final List<String> KTO = List.of("--stage", "kto", "--dataset", "identity_kto", "--max_steps", "1",
            "--per_device_train_batch_size", "4", "--max_grad_norm", "0");

    /// do_predict: greedy-free generation keys at LLaMA-Factory's defaults over 4 examples of identity_en, 12 new tokens.
    static final List<String> GEN = List.of("--predict_with_generate", "true", "--eval_dataset", "identity_en", "--max_samples", "4",
            "--max_new_tokens", "12", "--cutoff_len", "256");
    static final List<String> PREDICT = concat(GEN, List.of("--do_predict", "true"));

    static List<String> lines(Probe p, String file) throws IOException { return Files.readAllLines(p.out().resolve(file)); }

    static List<String> predictions(Probe p) throws IOException {
        List<String> out = new ArrayList<>();
        for (String l : lines(p, "generated_predictions.jsonl")) out.add(new ObjectMapper().readTree(l).get("predict").asText());
        return out;
    }

    static List<String> concat(List<String> a, List<String> b) {
        List<String> out = new ArrayList<>(a);
        out.addAll(b);
        return out;
    }

    static Row row(String key, String value, Check check) { return new Row(key, value, List.of(), check); }

    static Row row(String key, String value, List<String> context, Check check) { return new Row(key, value, context, check); }

    @BeforeAll
    static void fixtures() throws Exception {
        threadsBefore = Parallel.threads();
        Path root = Shared.root();
        model = root.resolve("models/tinystories-656k");
        general = root.resolve("data/general_stories.txt");
        var om = new ObjectMapper();
        JsonNode rows = om.readTree(root.resolve("data/identity_en.json").toFile());
        data = Files.createDirectories(tmp.resolve("data"));
        Files.copy(root.resolve("data/identity_en.json"), data.resolve("identity_en.json"));
        Files.writeString(data.resolve("identity_few.json"), om.writeValueAsString(slice(rows, 5)));
        Files.writeString(data.resolve("chats.json"), """
                [{"conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello! I am Tiny."},
                                    {"from": "human", "value": "Who made you?"}, {"from": "gpt", "value": "The peft4j team made me."}]},
                 {"conversations": [{"from": "human", "value": "Tell me a story"}, {"from": "gpt", "value": "Once upon a time there was a cat."},
                                    {"from": "human", "value": "And then?"}, {"from": "gpt", "value": "The cat slept in the sun."}]}]
                """);
        Files.writeString(data.resolve("pairs.json"), om.writeValueAsString(identityPairs(rows)));
        Files.writeString(data.resolve("tools.json"), """
                [{"conversations": [{"from": "human", "value": "What is 1 plus 1?"},
                                    {"from": "function_call", "value": "{\\"name\\": \\"add\\", \\"arguments\\": {\\"a\\": 1, \\"b\\": 1}}"},
                                    {"from": "observation", "value": "2"}, {"from": "gpt", "value": "It is 2."}],
                  "tools": "[{\\"name\\": \\"add\\", \\"description\\": \\"Adds two numbers\\", \\"parameters\\": {\\"type\\": \\"object\\", \\"properties\\": {\\"a\\": {\\"type\\": \\"integer\\"}, \\"b\\": {\\"type\\": \\"integer\\"}}}}]"}]
                """);
        var kto = om.createArrayNode();
        for (int i = 0; i < rows.size(); i++)
            kto.addObject().put("instruction", rows.get(i).get("instruction").asText())
                    .put("output", i % 2 == 0 ? rows.get(i).get("output").asText() : rows.get(i).get("output").asText().replace("Tiny", "Max"))
                    .put("label", i % 2 == 0);
        Files.writeString(data.resolve("kto.json"), om.writeValueAsString(kto));
        Files.writeString(data.resolve("dataset_info.json"), """
                {"identity_en": {"file_name": "identity_en.json"}, "identity_few": {"file_name": "identity_few.json"},
                 "chats": {"file_name": "chats.json", "formatting": "sharegpt"},
                 "tools": {"file_name": "tools.json", "formatting": "sharegpt", "columns": {"messages": "conversations", "tools": "tools"}},
                 "identity_pairs": {"file_name": "pairs.json", "ranking": true,
                                    "columns": {"prompt": "instruction", "query": "input", "chosen": "chosen", "rejected": "rejected"}},
                 "identity_kto": {"file_name": "kto.json", "columns": {"prompt": "instruction", "response": "output", "kto_tag": "label"}}}
                """);
        data2 = Files.createDirectories(tmp.resolve("data2"));
        Files.writeString(data2.resolve("six.json"), om.writeValueAsString(slice(rows, 6)));
        Files.writeString(data2.resolve("dataset_info.json"), "{\"identity_en\": {\"file_name\": \"six.json\"}}");
        randomModel = Files.createDirectories(tmp.resolve("random-model"));
        try (Stream<Path> s = Files.list(model)) { for (Path p : s.toList()) Files.copy(p, randomModel.resolve(p.getFileName())); }
        RandomModels.save(randomModel, RandomModels.create(LlamaConfig.read(model), 3), DType.F32);
        // a 4-layer random model of the same shapes, for the layer selections of freeze tuning (use_llama_pro)
        fourLayers = Files.createDirectories(tmp.resolve("four-layers"));
        try (Stream<Path> s = Files.list(model)) { for (Path p : s.toList()) Files.copy(p, fourLayers.resolve(p.getFileName())); }
        var cfgJson = (com.fasterxml.jackson.databind.node.ObjectNode) om.readTree(fourLayers.resolve("config.json").toFile());
        cfgJson.put("num_hidden_layers", 4);
        Files.writeString(fourLayers.resolve("config.json"), om.writeValueAsString(cfgJson));
        RandomModels.save(fourLayers, RandomModels.create(LlamaConfig.read(fourLayers), 4), DType.F32);
        adapter = run(List.of("--max_steps", "4", "--learning_rate", "3e-3")).out();
        checkpoint = run(List.of("--save_steps", "1")).out().resolve("checkpoint-1");
        assertTrue(Files.isDirectory(checkpoint), "fixture checkpoint missing");
    }

    @AfterAll
    static void restoreThreads() { Parallel.setThreads(threadsBefore); }

    /// identity_en as ranking rows: chosen = the answer naming Tiny, rejected = the same answer naming Max.
    static com.fasterxml.jackson.databind.node.ArrayNode identityPairs(JsonNode rows) {
        var out = new ObjectMapper().createArrayNode();
        for (JsonNode r : rows)
            out.addObject().put("instruction", r.get("instruction").asText()).put("input", r.get("input").asText())
                    .put("chosen", r.get("output").asText()).put("rejected", r.get("output").asText().replace("Tiny", "Max"));
        return out;
    }

    static com.fasterxml.jackson.databind.node.ArrayNode slice(JsonNode rows, int n) {
        var out = new ObjectMapper().createArrayNode();
        for (int i = 0; i < n; i++) out.add(rows.get(i));
        return out;
    }

    static Probe run(List<String> flags) throws Exception { return run(flags, out -> {}); }

    interface Setup { void prepare(Path out) throws Exception; }

    static Probe run(List<String> flags, Setup setup) throws Exception {
        Path out = tmp.resolve("run-" + runs++);
        setup.prepare(out);
        List<String> all = new ArrayList<>(List.of("--model_name_or_path", model.toString(), "--dataset_dir", data.toString(), "--output_dir", out.toString()));
        all.addAll(BASE);
        all.addAll(flags);
        TrainConfig cfg = TrainConfig.load(null, all);
        List<TrainEvent> events = new ArrayList<>();
        Map<String, float[]> start = new LinkedHashMap<>(), end = new LinkedHashMap<>(), grad = new LinkedHashMap<>();
        FinetuneRecipe.Built[] built = new FinetuneRecipe.Built[1];
        List<Optimizer> optimizers = new ArrayList<>();
        FinetuneRecipe recipe = new FinetuneRecipe().inspect(b -> {
            built[0] = b;
            for (Param p : b.model().params()) start.put(p.name(), p.data().clone());
        });
        FinetuneRecipe.Result result = recipe.run(cfg, e -> {
            events.add(e);
            if (e instanceof TrainEvent.Step && optimizers.isEmpty()) optimizers.addAll(built[0].trainer().optimizers());
        });
        if (built[0] != null)   // (do_predict alone builds no training model)
            for (Param p : built[0].model().params()) { end.put(p.name(), p.data().clone()); grad.put(p.name(), p.grad().clone()); }
        return new Probe(cfg, Path.of(cfg.str("output_dir")), events, result, built[0], start, end, grad, optimizers);
    }

    static List<Row> rows() {
        Path chosen = tmp.resolve("chosen-output");
        return List.of(
                // model
                row("model_name_or_path", randomModel.toString(), (d, v) -> {
                    assertEquals(randomModel, v.built().modelDir());
                    assertNotEquals(d.firstLoss(), v.firstLoss(), 1e-3, "other weights, other loss");
                }),
                row("adapter_name_or_path", adapter.toString(), (d, v) -> {
                    PeftAdapter a = PeftAdapter.read(adapter);
                    for (var e : a.weights().entrySet()) {
                        LoraWeights w = e.getValue();
                        assertArrayEquals(w.a(), v.start().get(e.getKey().key(PeftAdapter.A)), e.getKey().path());
                        assertArrayEquals(w.b(), v.start().get(e.getKey().key(PeftAdapter.B)), e.getKey().path());
                    }
                    assertEquals(0, d.start().entrySet().stream().filter(e -> e.getKey().endsWith("lora_B.weight"))
                            .mapToDouble(e -> maxAbs(e.getValue())).max().orElseThrow(), "a fresh adapter starts with B = 0");
                }),
                row("quantization_bit", "4", (d, v) -> {
                    assertNull(d.setup().quantization());
                    assertNotNull(v.built().quantizedBase());
                    assertEquals("nf4", v.setup().quantization().type());
                }),
                row("quantization_type", "fp4", List.of("--quantization_bit", "4"), (d, v) -> {
                    assertEquals("nf4", d.setup().quantization().type());
                    assertEquals("fp4", v.setup().quantization().type());
                }),
                row("double_quantization", "false", List.of("--quantization_bit", "4"), (d, v) -> {
                    assertTrue(d.setup().quantization().doubleQuantization());
                    assertFalse(v.setup().quantization().doubleQuantization());
                    assertTrue(v.setup().quantization().bitsPerParameter() > d.setup().quantization().bitsPerParameter());
                }),
                // method
                row("stage", "pt", List.of("--packing", "false"), (d, v) -> {
                    assertTrue(d.train().stream().anyMatch(e -> e.trainedCount() < e.length()), "sft masks the prompt");
                    for (TokenizedExample e : v.train()) assertArrayEquals(e.inputIds(), e.labels(), "pt trains on every token");
                }),
                // do_predict: generation over eval_dataset into generated_predictions.jsonl and predict_results.json
                row("do_predict", "true", GEN, (d, v) -> {
                    assertFalse(d.has("generated_predictions.jsonl"));
                    assertFalse(d.steps().isEmpty(), "without do_predict the run trains");
                    assertTrue(v.steps().isEmpty(), "do_predict without do_train only predicts");
                    assertEquals(4, lines(v, "generated_predictions.jsonl").size());
                    JsonNode r = v.json("predict_results.json");
                    for (String k : List.of("predict_bleu-4", "predict_rouge-1", "predict_rouge-2", "predict_rouge-l", "predict_runtime"))
                        assertTrue(r.has(k), k + " in " + r);
                }),
                row("predict_with_generate", "true", concat(List.of("--do_predict", "true", "--eval_dataset", "identity_en", "--max_samples", "4",
                        "--max_new_tokens", "12"), List.of("SETUP:refusedAtDefault")), (d, v) -> {
                    assertEquals(4, lines(v, "generated_predictions.jsonl").size());
                }),
                row("do_sample", "false", PREDICT, (d, v) -> assertNotEquals(predictions(d), predictions(v), "greedy against sampled answers")),
                row("temperature", "3.0", PREDICT, (d, v) -> assertNotEquals(predictions(d), predictions(v))),
                row("top_p", "0.05", PREDICT, (d, v) -> assertNotEquals(predictions(d), predictions(v))),
                row("top_k", "1", PREDICT, (d, v) -> assertNotEquals(predictions(d), predictions(v))),
                row("repetition_penalty", "5.0", PREDICT, (d, v) -> assertNotEquals(predictions(d), predictions(v))),
                row("max_new_tokens", "2", PREDICT, (d, v) -> {
                    Tokenizer_ tk = new Tokenizer_();
                    for (String p : predictions(v)) assertTrue(tk.count(p) <= 3, "at most 2 new tokens: '" + p + "'");
                    assertTrue(predictions(d).stream().mapToInt(String::length).sum() > predictions(v).stream().mapToInt(String::length).sum());
                }),
                row("skip_special_tokens", "false", PREDICT, (d, v) -> {
                    String label = new ObjectMapper().readTree(lines(v, "generated_predictions.jsonl").getFirst()).get("label").asText();
                    String labelSkipped = new ObjectMapper().readTree(lines(d, "generated_predictions.jsonl").getFirst()).get("label").asText();
                    String eos = new Tokenizer_().t.config().eosToken();
                    assertTrue(label.contains(eos) && !labelSkipped.contains(eos), "the label's EOS " + eos + " is kept: '" + label + "' vs '" + labelSkipped + "'");
                }),
                // token-weighted SFT losses: the same first batch (LoRA's B = 0: the base model) gives another loss
                row("use_dft_loss", "true", (d, v) -> {
                    double dft = v.firstLoss(), ce = d.firstLoss();
                    assertTrue(dft > 0 && dft < 0.5 * ce, "DFT weighs each token loss by its probability (< 1): " + dft + " vs " + ce);
                }),
                row("use_eaft_loss", "true", (d, v) -> assertNotEquals(d.firstLoss(), v.firstLoss(), 1e-4, "EAFT weighs token losses by entropy")),
                row("eaft_alpha", "2.0", List.of("--use_eaft_loss", "true"), (d, v) -> assertNotEquals(d.firstLoss(), v.firstLoss(), 1e-4)),
                // LongLoRA's S²-Attn: the same first batch (the base model) scored with attention within 4 groups gives another loss;
                // the planned length is padded to a multiple of 8
                row("shift_attn", "true", (d, v) -> {
                    assertNotEquals(d.firstLoss(), v.firstLoss(), 1e-4, "S²-Attn attends within groups, not over the whole prefix");
                    assertTrue(v.built().model().Tmax % 8 == 0 && v.built().model().shiftAttn() && !d.built().model().shiftAttn(), "Tmax " + v.built().model().Tmax);
                }),
                // ASFT on full tuning: a frozen copy of the initial model is the reference; at the first step policy = reference,
                // so the KL term is 0 and the loss is DFT's (one micro-batch: the mean over its labelled tokens)
                row("use_asft_loss", "true", FULL1, (d, v) -> {
                    assertFalse(d.built().model().hasReference(), "plain SFT has no reference");
                    assertTrue(v.built().model().hasReference() && v.built().model().asft(), "ASFT reads a frozen reference");
                    double asft = v.firstLoss(), ce = d.firstLoss();
                    assertTrue(asft > 0 && asft < 0.5 * ce, "KL 0 at the start, DFT's probability-weighted token losses (< 1): " + asft + " vs " + ce);
                    assertTrue(v.built().model().scoringBytes() > 0, "the reference pass's buffers are counted");
                }),
                // one step moves the policy off the reference: the second step's loss grows with the KL weight, while the
                // first step (KL 0, KL gradient p − q = 0) is the same for every asft_alpha
                row("asft_alpha", "5.0", List.of("--finetuning_type", "full", "--use_asft_loss", "true"), (d, v) -> {
                    // KL 0 up to float rounding: the reference pass computes the labelled rows' logits apart (~1e-8 in KL)
                    assertEquals(d.steps().get(0).loss(), v.steps().get(0).loss(), 1e-6, "the first step's KL is 0");
                    double kl01 = d.steps().get(1).loss(), kl5 = v.steps().get(1).loss();
                    assertTrue(kl5 > kl01 + 1e-6, "the second step adds asft_alpha·KL with KL > 0: " + kl5 + " vs " + kl01);
                }),
                // stage rm on the identity pairs: a value head trains beside the adapter and is saved as LLaMA-Factory saves it
                row("stage", "rm", DPO, (d, v) -> {
                    assertFalse(d.params().contains("v_head.summary.weight"), "dpo has no value head");
                    assertTrue(v.params().contains("v_head.summary.weight") && v.params().contains("v_head.summary.bias"), v.params().toString());
                    assertTrue(v.maxChange("v_head.summary.weight") > 0, "the value head trains");
                    assertTrue(v.maxChange("lora_B.weight") > 0, "and so does the adapter");
                    assertTrue(v.has("value_head.safetensors") && v.has("adapter_model.safetensors"));
                    assertTrue(v.steps().getFirst().metrics().containsKey("accuracy"), v.steps().getFirst().metrics().toString());
                }),
                // stage dpo: one step from policy = reference (LoRA's B = 0), unclipped, so the gradient is the loss's at z = 0
                row("pref_beta", "0.5", DPO, (d, v) -> {
                    assertEquals(Math.log(2), d.firstLoss(), 1e-6, "DPO starts at ln 2");
                    assertEquals(Math.log(2), v.firstLoss(), 1e-6);
                    // d(−logσ(βz))/dz at z = 0 is −β/2: every gradient scales with β
                    assertEquals(5.0, maxAbs(v.grad()) / maxAbs(d.grad()), 1e-4);
                }),
                row("pref_loss", "ipo", DPO, (d, v) -> {
                    assertEquals(Math.log(2), d.firstLoss(), 1e-6);
                    assertEquals(1 / (4 * 0.1 * 0.1), v.firstLoss(), 1e-4, "IPO at z = 0: (1/(2β))²");
                }),
                row("pref_ftx", "1.0", DPO, (d, v) -> {
                    // + the chosen answers' mean token loss, several nats for the untuned model
                    assertTrue(v.firstLoss() > d.firstLoss() + 1, v.firstLoss() + " vs " + d.firstLoss());
                }),
                row("dpo_label_smoothing", "0.2", DPO, (d, v) -> {
                    assertEquals(Math.log(2), v.firstLoss(), 1e-6, "both smoothed terms are −logσ(0)");
                    // at z = 0 the gradient is −β/2·(1 − 2ε)
                    assertEquals(0.6, maxAbs(v.grad()) / maxAbs(d.grad()), 1e-4);
                }),
                row("simpo_gamma", "1.0", concat(DPO, List.of("--pref_loss", "simpo")), (d, v) -> {
                    // −logσ(β·Δ − γ) grows with the target margin γ at the same log-probabilities
                    assertTrue(v.firstLoss() > d.firstLoss() + 0.1, v.firstLoss() + " vs " + d.firstLoss());
                }),
                // stage kto: at policy = reference every example's loss is w/2 (KL 0); the weights scale their side
                row("kto_chosen_weight", "3.0", KTO, (d, v) -> {
                    assertEquals(0.5, d.firstLoss(), 1e-6, "KTO starts at w/2 = 0.5");
                    double desirable = (v.firstLoss() - 0.5) / ((3.0 - 1) / 2);   // the desirable share of the batch
                    assertTrue(desirable > 0 && desirable <= 1, "desirable share " + desirable);
                }),
                row("kto_rejected_weight", "3.0", KTO, (d, v) -> {
                    assertEquals(0.5, d.firstLoss(), 1e-6);
                    double undesirable = (v.firstLoss() - 0.5) / ((3.0 - 1) / 2);
                    assertTrue(undesirable > 0 && undesirable <= 1, "undesirable share " + undesirable);
                }),
                // the reference model: another model's weights (same tokenizer) move DPO off ln 2 at the first step
                row("ref_model", randomModel.toString(), DPO, (d, v) -> {
                    assertEquals(Math.log(2), d.firstLoss(), 1e-6);
                    assertTrue(Math.abs(v.firstLoss() - Math.log(2)) > 1e-3, "a random reference: " + v.firstLoss());
                }),
                row("ref_model_adapters", adapter.toString(), concat(DPO, List.of("--ref_model", model.toString())), (d, v) -> {
                    assertEquals(Math.log(2), d.firstLoss(), 1e-6, "ref_model = the base itself: policy = reference");
                    assertTrue(Math.abs(v.firstLoss() - Math.log(2)) > 1e-3, "the base with an SFT adapter as reference: " + v.firstLoss());
                }),
                row("ref_model_quantization_bit", "4", concat(DPO, List.of("--ref_model", model.toString())), (d, v) -> {
                    assertEquals(Math.log(2), d.firstLoss(), 1e-6);
                    double off = Math.abs(v.firstLoss() - Math.log(2));
                    // (NF4 moves each of the 656K model's weights by up to ~1/16 of its block's range: the summed answer
                    // log-probabilities move by a few tenths)
                    assertTrue(off > 1e-6 && off < 0.5, "a 4-bit copy of the base as reference is near, not equal: " + v.firstLoss());
                }),
                row("do_train", "false", List.of("--do_eval", "true", "--val_size", "3"), (d, v) -> {
                    assertEquals(2, d.steps().size());
                    assertTrue(v.steps().isEmpty());
                    assertEquals(List.of(0L), v.evals().stream().map(TrainEvent.Eval::step).toList());
                    assertFalse(v.has("adapter_model.safetensors"));
                    assertEquals(Trainer.round(v.evals().getFirst().evalLoss()), v.json("all_results.json").get("eval_loss").asDouble());
                }),
                row("finetuning_type", "full", (d, v) -> {
                    assertTrue(d.params().stream().allMatch(n -> n.contains("lora_")), d.params().toString());
                    assertTrue(v.params().contains("model.embed_tokens.weight"), v.params().toString());
                    assertTrue(v.has("model.safetensors"));
                }),
                row("finetuning_type", "ia3", (d, v) -> {
                    assertEquals(Set.of(), v.params().stream().filter(n -> !n.endsWith(".ia3_l")).collect(java.util.stream.Collectors.toSet()));
                    assertEquals("IA3", v.json("adapter_config.json").get("peft_type").asText());
                    assertTrue(v.maxChange(".ia3_l") > 0, "the vectors trained");
                }),
                row("target_modules", "q_proj,down_proj", IA3, (d, v) -> {
                    assertTrue(d.params().stream().anyMatch(n -> n.contains("k_proj")), d.params().toString());
                    assertTrue(v.params().stream().allMatch(n -> n.contains("q_proj") || n.contains("down_proj")), v.params().toString());
                    assertEquals("[\"q_proj\",\"down_proj\"]", v.json("adapter_config.json").get("target_modules").toString());
                }),
                row("feedforward_modules", "v_proj,down_proj", IA3, (d, v) -> {
                    String vp = "base_model.model.model.layers.0.self_attn.v_proj.ia3_l";
                    assertEquals(64, d.start().get(vp).length);     // (out, 1): the key/value width
                    assertEquals(128, v.start().get(vp).length);    // (1, in): the hidden size, the input is scaled
                    // both start at ones (the base: the same first loss); the scaled input trains differently
                    assertNotEquals(d.steps().get(1).loss(), v.steps().get(1).loss());
                    assertEquals("[\"v_proj\",\"down_proj\"]", v.json("adapter_config.json").get("feedforward_modules").toString());
                }),
                row("init_ia3_weights", "false", IA3, (d, v) -> {
                    assertEquals(1.0, maxAbs(d.start()), 0);
                    assertTrue(d.start().values().stream().allMatch(x -> { for (float f : x) if (f != 1f) return false; return true; }));
                    assertNotEquals(d.firstLoss(), v.firstLoss());
                    assertFalse(v.json("adapter_config.json").get("init_ia3_weights").asBoolean());
                }),
                row("num_virtual_tokens", "2", PROMPT, (d, v) -> {   // also finetuning_type prompt's row (both runs need it)
                    assertEquals(Set.of("prompt_embeddings"), v.params());
                    assertEquals("PROMPT_TUNING", v.json("adapter_config.json").get("peft_type").asText());
                    assertTrue(v.maxChange("prompt_embeddings") > 0, "the virtual tokens trained");
                    assertEquals(4 * 128, d.start().get("prompt_embeddings").length);
                    assertEquals(2 * 128, v.start().get("prompt_embeddings").length);
                    assertEquals(2, v.json("adapter_config.json").get("num_virtual_tokens").asInt());
                }),
                row("prompt_tuning_init", "TEXT", concat(PROMPT, List.of("--prompt_tuning_init_text", "Who are you?")), (d, v) -> {
                    float[] e = v.start().get("prompt_embeddings");
                    float[] wte = v.built().model().weights.embedTokens;
                    assertArrayEquals(Arrays.copyOfRange(wte, 128, 256), Arrays.copyOfRange(e, 0, 128));   // PEFT's tokenizer(text): BOS (id 1) first
                    assertFalse(Arrays.equals(d.start().get("prompt_embeddings"), e));
                    assertEquals("TEXT", v.json("adapter_config.json").get("prompt_tuning_init").asText());
                }),
                row("prompt_tuning_init_text", "Once upon a time", concat(PROMPT, List.of("--prompt_tuning_init", "TEXT", "--prompt_tuning_init_text", "Who are you?")), (d, v) -> {
                    assertFalse(Arrays.equals(d.start().get("prompt_embeddings"), v.start().get("prompt_embeddings")));
                    assertEquals("Once upon a time", v.json("adapter_config.json").get("prompt_tuning_init_text").asText());
                }),
                row("encoder_reparameterization_type", "LSTM", PTUNING, (d, v) -> {   // also finetuning_type ptuning's row
                    assertTrue(d.params().stream().allMatch(n -> n.startsWith("prompt_encoder.embedding.") || n.startsWith("prompt_encoder.mlp_head.")), d.params().toString());
                    assertEquals("P_TUNING", d.json("adapter_config.json").get("peft_type").asText());
                    assertEquals("MLP", d.json("adapter_config.json").get("encoder_reparameterization_type").asText());
                    assertArrayEquals(new long[]{4, 128}, savedPromptShape(d));   // PEFT saves the encoder's output, not the encoder
                    assertTrue(d.maxChange("mlp_head.0.weight") > 0, "the encoder trained");
                    assertTrue(v.params().contains("prompt_encoder.lstm_head.weight_hh_l1_reverse"), v.params().toString());
                    assertEquals("LSTM", v.json("adapter_config.json").get("encoder_reparameterization_type").asText());
                    assertArrayEquals(new long[]{4, 128}, savedPromptShape(v));
                }),
                row("num_virtual_tokens", "2", List.of("--finetuning_type", "ptuning", "SETUP:refusedAtDefault"), (d, v) -> {
                    assertNull(d, "P-tuning needs num_virtual_tokens, as PEFT");
                    assertEquals(2 * 128, v.start().get("prompt_encoder.embedding.weight").length);
                    assertArrayEquals(new long[]{2, 128}, savedPromptShape(v));
                }),
                row("encoder_hidden_size", "16", PTUNING, (d, v) -> {
                    assertEquals(128 * 128, d.start().get("prompt_encoder.mlp_head.0.weight").length, "PEFT's default: the model's hidden size");
                    assertEquals(16 * 128, v.start().get("prompt_encoder.mlp_head.0.weight").length);
                    assertEquals(128, d.json("adapter_config.json").get("encoder_hidden_size").asInt());
                    assertEquals(16, v.json("adapter_config.json").get("encoder_hidden_size").asInt());
                }),
                row("encoder_num_layers", "1", concat(PTUNING, List.of("--encoder_reparameterization_type", "LSTM")), (d, v) -> {
                    assertTrue(d.params().contains("prompt_encoder.lstm_head.weight_ih_l1"));
                    assertFalse(v.params().contains("prompt_encoder.lstm_head.weight_ih_l1"));
                    assertEquals(1, v.json("adapter_config.json").get("encoder_num_layers").asInt());
                }),
                row("encoder_dropout", "0.1", concat(PTUNING, List.of("SETUP:refusedAtValue")), (d, v) -> {
                    assertNull(v);
                    assertEquals(0.0, d.json("adapter_config.json").get("encoder_dropout").asDouble());
                }),
                row("num_virtual_tokens", "2", PREFIX, (d, v) -> {   // also finetuning_type prefix's row
                    assertEquals(Set.of("prompt_embeddings"), v.params());
                    assertEquals("PREFIX_TUNING", v.json("adapter_config.json").get("peft_type").asText());
                    assertTrue(v.maxChange("prompt_embeddings") > 0, "the prefix trained");
                    assertEquals(4 * 2 * 2 * 64, d.start().get("prompt_embeddings").length);   // (n, layers · 2 · kv width)
                    assertEquals(2 * 2 * 2 * 64, v.start().get("prompt_embeddings").length);
                    assertEquals(2, v.json("adapter_config.json").get("num_virtual_tokens").asInt());
                    assertEquals(4, v.json("adapter_config.json").get("num_attention_heads").asInt());   // the KV heads, as PEFT for GQA
                    assertEquals(64, v.json("adapter_config.json").get("token_dim").asInt());
                }),
                row("prefix_projection", "true", PREFIX, (d, v) -> {
                    assertEquals(Set.of("prompt_encoder.embedding.weight", "prompt_encoder.transform.0.weight", "prompt_encoder.transform.0.bias",
                            "prompt_encoder.transform.2.weight", "prompt_encoder.transform.2.bias"), v.params());
                    assertEquals(64 * 64, v.start().get("prompt_encoder.transform.0.weight").length);   // encoder_hidden_size = token_dim
                    assertTrue(v.maxChange("prompt_encoder.transform.2.weight") > 0, "the MLP trained");
                    assertTrue(v.json("adapter_config.json").get("prefix_projection").asBoolean());
                    // the saved prefix is the MLP's output for the final parameters (PEFT get_prompt_embedding_to_save)
                    Map<String, float[]> e = v.end();
                    int n = 4, D = 64, E = 64, W = 256;
                    float[] want = new float[n * W], h = new float[n * E];
                    org.peft4j.model.adapter.prefix.PrefixEncoder.forward(org.peft4j.core.kernels.ScalarGemm.INSTANCE, want, h,
                            e.get("prompt_encoder.embedding.weight"), e.get("prompt_encoder.transform.0.weight"), e.get("prompt_encoder.transform.0.bias"),
                            e.get("prompt_encoder.transform.2.weight"), e.get("prompt_encoder.transform.2.bias"), n, D, E, W);
                    var saved = org.peft4j.model.adapter.prefix.PrefixAdapter.read(v.out()).embeddings();
                    assertTrue(org.peft4j.testkit.Assert.maxAbsDiff(want, saved) < 1e-5, "saved prefix vs the MLP's output: " + org.peft4j.testkit.Assert.maxAbsDiff(want, saved));
                }),
                row("encoder_hidden_size", "16", concat(PREFIX, List.of("--prefix_projection", "true")), (d, v) -> {
                    assertEquals(64 * 64, d.start().get("prompt_encoder.transform.0.weight").length);
                    assertEquals(16 * 64, v.start().get("prompt_encoder.transform.0.weight").length);
                    assertEquals(256 * 16, v.start().get("prompt_encoder.transform.2.weight").length);
                    assertEquals(16, v.json("adapter_config.json").get("encoder_hidden_size").asInt());
                }),
                row("finetuning_type", "oft", (d, v) -> {
                    assertTrue(v.params().stream().allMatch(n -> n.endsWith(".oft_R.weight")), v.params().toString());
                    assertEquals(7 * 2, v.params().size(), "all 7 linears of both layers");
                    assertEquals("OFT", v.json("adapter_config.json").get("peft_type").asText());
                    assertEquals(32, v.json("adapter_config.json").get("oft_block_size").asInt());
                    assertNotEquals(d.steps().get(1).loss(), v.steps().get(1).loss());
                }),
                row("oft_rank", "8", List.of("--finetuning_type", "oft", "--oft_block_size", "0", "SETUP:refusedAtDefault"), (d, v) -> {
                    // hidden 128 in 8 blocks of 16
                    assertEquals(8 * 16 * 15 / 2, v.start().get(OFT_Q).length);
                    assertEquals(8, v.json("adapter_config.json").get("r").asInt());
                }),
                row("oft_block_size", "16", List.of("--finetuning_type", "oft"), (d, v) -> {
                    assertEquals(4 * 32 * 31 / 2, d.start().get(OFT_Q).length, "hidden 128 in 4 blocks of 32");
                    assertEquals(8 * 16 * 15 / 2, v.start().get(OFT_Q).length, "8 blocks of 16");
                    assertEquals(16, v.json("adapter_config.json").get("oft_block_size").asInt());
                }),
                row("oft_target", "q_proj,v_proj", List.of("--finetuning_type", "oft"), (d, v) -> {
                    assertTrue(d.params().stream().anyMatch(n -> n.contains("mlp.")));
                    assertTrue(v.params().stream().allMatch(n -> n.contains("q_proj") || n.contains("v_proj")), v.params().toString());
                }),
                row("module_dropout", "0.1", List.of("--finetuning_type", "oft", "SETUP:refusedAtValue"), (d, v) -> {
                    assertNull(v);
                    assertEquals(0.0, d.json("adapter_config.json").get("module_dropout").asDouble());
                }),
                row("lora_rank", "2", (d, v) -> {
                    assertEquals(2, v.lora().r());
                    String a = "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight";
                    assertEquals(2 * 128, v.start().get(a).length);
                    assertEquals(4 * 128, d.start().get(a).length);
                }),
                row("lora_alpha", "3", (d, v) -> {
                    assertEquals(8.0, d.lora().loraAlpha(), "default 2 * lora_rank");
                    assertEquals(3.0, v.lora().loraAlpha());
                    assertEquals(3, v.json("adapter_config.json").get("lora_alpha").asInt());
                }),
                row("lora_dropout", "0.2", (d, v) -> {
                    assertEquals(0.2, v.lora().loraDropout());
                    assertNotEquals(d.steps().get(1).loss(), v.steps().get(1).loss(), "dropout changes the forward once B != 0");
                }),
                row("lora_target", "q_proj,v_proj", (d, v) -> {
                    assertTrue(d.params().stream().anyMatch(n -> n.contains("mlp.")));
                    assertTrue(v.params().stream().allMatch(n -> n.contains("q_proj") || n.contains("v_proj")), v.params().toString());
                }),
                row("use_rslora", "true", (d, v) -> {
                    assertTrue(v.lora().useRslora());
                    assertTrue(v.json("adapter_config.json").get("use_rslora").asBoolean());
                    assertNotEquals(d.steps().get(1).loss(), v.steps().get(1).loss(), "scaling alpha/sqrt(r) instead of alpha/r");
                }),
                row("use_dora", "true", (d, v) -> {
                    assertTrue(d.params().stream().noneMatch(n -> n.endsWith("lora_magnitude_vector")));
                    assertTrue(v.params().stream().anyMatch(n -> n.endsWith("lora_magnitude_vector")));
                }),
                row("loraplus_lr_ratio", "16", List.of("--max_steps", "1"), (d, v) -> {
                    // AdamW's first step moves each element by lr·g/(|g|+eps) ≈ lr; LoRA+ gives B 16·lr
                    assertEquals(1.0, d.maxChange("lora_B.weight") / 1e-3, 0.01);
                    assertEquals(16.0, v.maxChange("lora_B.weight") / 1e-3, 0.16);
                }),
                row("freeze_trainable_layers", "1", List.of("--finetuning_type", "freeze"), (d, v) -> {
                    assertTrue(d.params().stream().anyMatch(n -> n.startsWith("model.layers.0.")), d.params().toString());
                    assertTrue(v.params().stream().allMatch(n -> n.startsWith("model.layers.1.")), v.params().toString());
                }),
                row("use_llama_pro", "true", List.of("--finetuning_type", "freeze", "--freeze_trainable_layers", "2", "--model_name_or_path", fourLayers.toString()), (d, v) -> {
                    // 4 layers, 2 trainable: the last two (2, 3) by default; LLaMA Pro's expanded blocks, every 2nd layer (1, 3)
                    assertEquals(Set.of(2, 3), layersOf(d));
                    assertEquals(Set.of(1, 3), layersOf(v));
                }),
                row("freeze_trainable_modules", "mlp", List.of("--finetuning_type", "freeze"), (d, v) -> {
                    assertTrue(d.params().stream().anyMatch(n -> n.contains(".self_attn.")));
                    assertTrue(v.params().stream().allMatch(n -> n.contains(".mlp.")), v.params().toString());
                }),
                row("neftune_noise_alpha", "5", (d, v) ->
                        assertNotEquals(d.firstLoss(), v.firstLoss(), "noise on the embeddings changes the first training forward")),
                row("gradient_checkpointing", "true", (d, v) -> {
                    assertTrue(v.built().model().checkpointing);
                    assertTrue(v.setup().activationBytes() < d.setup().activationBytes());
                    assertEquals(d.steps().get(1).loss(), v.steps().get(1).loss(), "recomputing blocks gives the same numbers");
                }),
                row("pissa_init", "true", (d, v) -> {
                    assertEquals("pissa_niter_16", v.json("adapter_config.json").get("init_lora_weights").asText());
                    assertTrue(maxAbs(v.start().get("base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight")) > 0, "PiSSA's B starts non-zero");
                }),
                row("pissa_iter", "-1", List.of("--pissa_init", "true"), (d, v) ->
                        assertEquals("pissa", v.json("adapter_config.json").get("init_lora_weights").asText())),
                row("pissa_convert", "true", List.of("--pissa_init", "true"), (d, v) -> {
                    assertFalse(d.has("pissa_converted/adapter_config.json"));
                    assertEquals(8, v.json("pissa_converted/adapter_config.json").get("r").asInt());
                }),
                // data
                row("dataset", "identity_few", (d, v) -> {
                    assertEquals(12, d.setup().trainExamples());
                    assertEquals(5, v.setup().trainExamples());
                }),
                row("eval_dataset", "identity_few", (d, v) -> {
                    assertEquals(0, d.setup().evalExamples());
                    assertEquals(5, v.setup().evalExamples());
                }),
                row("dataset_dir", "DATA2", (d, v) -> assertEquals(6, v.setup().trainExamples())),
                row("template", "alpaca", (d, v) -> {
                    assertFalse(Arrays.equals(d.train().getFirst().inputIds(), v.train().getFirst().inputIds()), "another rendering");
                    assertEquals("alpaca", v.setup().template());
                }),
                row("enable_thinking", "false", List.of("--template", "qwen3"), (d, v) -> {
                    // the same text (up to cutoff_len's split between prompt and answer), fewer trained tokens
                    assertTrue(trained(v.train().getFirst()) < trained(d.train().getFirst()), "the empty thought moves into the untrained prompt");
                }),
                row("cutoff_len", "16", (d, v) -> {
                    assertTrue(d.setup().longestExample() > 16);
                    assertTrue(v.setup().longestExample() <= 16, "longest " + v.setup().longestExample());
                }),
                row("max_samples", "5", (d, v) -> assertEquals(5, v.setup().trainExamples())),
                row("val_size", "3", (d, v) -> {
                    assertEquals(3, v.setup().evalExamples());
                    assertEquals(9, v.setup().trainExamples());
                }),
                row("train_on_prompt", "true", (d, v) -> assertTrue(v.labelled() > d.labelled(), v.labelled() + " vs " + d.labelled())),
                row("mask_history", "true", List.of("--dataset", "chats"), (d, v) ->
                        assertTrue(v.labelled() < d.labelled(), v.labelled() + " vs " + d.labelled())),
                row("packing", "true", List.of("--cutoff_len", "128"), (d, v) -> {
                    assertTrue(v.setup().trainExamples() < d.setup().trainExamples(), "examples packed together");
                    assertTrue(v.train().stream().allMatch(e -> e.length() <= 128), "into cutoff_len blocks");
                }),
                row("tool_format", "qwen", List.of("--dataset", "tools", "--template", "default", "--cutoff_len", "512"), (d, v) -> {
                    assertFalse(Arrays.equals(d.train().getFirst().inputIds(), v.train().getFirst().inputIds()), "the tools are written another way");
                    assertEquals(d.train().size(), v.train().size());
                }),
                row("default_system", "You are Tiny.", (d, v) ->
                        assertTrue(tokens(v) > tokens(d), "the system prompt is rendered")),
                // output
                row("output_dir", chosen.toString(), (d, v) -> {
                    assertEquals(chosen, v.preparing().outputDir());
                    assertTrue(Files.exists(chosen.resolve("adapter_model.safetensors")));
                }),
                new Row("overwrite_output_dir", "true", List.of("SETUP:checkpoint"), (d, v) -> {
                    assertEquals(1, d.started().startStep(), "a checkpoint in output_dir is resumed from");
                    assertNotNull(d.preparing().resumeFrom());
                    assertEquals(0, v.started().startStep(), "overwrite_output_dir starts over");
                    assertFalse(v.has("checkpoint-1"));
                }),
                row("logging_steps", "2", (d, v) -> {
                    assertEquals(2, logLines(d, "loss"));
                    assertEquals(1, logLines(v, "loss"));
                    assertNull(v.steps().getFirst().loggedLoss());
                    assertNotNull(v.steps().get(1).loggedLoss());
                }),
                row("save_steps", "1", (d, v) -> {
                    assertFalse(d.has("checkpoint-1"));
                    assertTrue(v.has("checkpoint-1/trainer_state.json"));
                    assertEquals(List.of(1L, 2L), v.checkpoints().stream().map(TrainEvent.CheckpointSaved::step).toList(),
                            "every save_steps and the last step, as transformers");
                }),
                row("save_total_limit", "1", List.of("--save_steps", "1", "--max_steps", "3"), (d, v) -> {
                    assertTrue(d.has("checkpoint-1") && d.has("checkpoint-2") && d.has("checkpoint-3"));
                    assertFalse(v.has("checkpoint-1") || v.has("checkpoint-2"));
                    assertTrue(v.has("checkpoint-3"));
                }),
                row("plot_loss", "true", (d, v) -> {
                    assertFalse(d.has("training_loss.png"));
                    assertTrue(v.has("training_loss.png"));
                }),
                row("resume_from_checkpoint", "CHECKPOINT", (d, v) -> {
                    assertEquals(0, d.started().startStep());
                    assertEquals(1, v.started().startStep());
                    assertEquals(1, v.steps().size(), "only the remaining step runs");
                }),
                // optimisation
                row("per_device_train_batch_size", "3", (d, v) -> {
                    assertEquals(3, v.built().model().B);
                    assertEquals(4.0 / 12, d.steps().getLast().epoch(), 1e-12);
                    assertEquals(6.0 / 12, v.steps().getLast().epoch(), 1e-12);
                }),
                row("per_device_eval_batch_size", "1", List.of("--do_train", "false", "--do_eval", "true", "--val_size", "4"), (d, v) -> {
                    // transformers: eval_loss = mean over batches of the batch's mean token loss, weighted by batch size
                    LlamaModel base = Models.load(model, Gemms.get("java"));
                    List<TokenizedExample> val = v.built().data().eval();
                    double perExample = 0;
                    for (TokenizedExample e : val) perExample += Evaluation.evaluate(base, List.of(e)).loss();
                    assertEquals(perExample / val.size(), v.evals().getFirst().evalLoss(), LOSS_ATOL, "batches of 1");
                    assertEquals(Evaluation.evaluate(base, val).loss(), d.evals().getFirst().evalLoss(), LOSS_ATOL, "one batch of 4: the token mean");
                    assertNotEquals(d.evals().getFirst().evalLoss(), v.evals().getFirst().evalLoss(), 1e-4);
                }),
                row("gradient_accumulation_steps", "2", (d, v) -> assertEquals(8.0 / 12, v.steps().getLast().epoch(), 1e-12)),
                row("ray_num_workers", "2", (d, v) -> assertEquals(8.0 / 12, v.steps().getLast().epoch(), 1e-12, "as gradient_accumulation_steps 2")),
                row("learning_rate", "2e-3", (d, v) -> {
                    assertEquals(1e-3, d.steps().getFirst().lr(), 1e-15);
                    assertEquals(2e-3, v.steps().getFirst().lr(), 1e-15);
                }),
                row("num_train_epochs", "0.5", List.of("--max_steps", "-1"), (d, v) -> {
                    assertEquals(18, d.started().totalSteps(), "3 epochs of 6 batches");
                    assertEquals(3, v.started().totalSteps());
                }),
                row("max_steps", "3", (d, v) -> assertEquals(3, v.steps().size())),
                row("lr_scheduler_type", "constant", (d, v) -> {
                    assertEquals(0.5e-3, d.steps().get(1).lr(), 1e-15, "linear decay");
                    assertEquals(1e-3, v.steps().get(1).lr(), 1e-15);
                }),
                row("warmup_steps", "1", (d, v) -> assertEquals(0.0, v.steps().getFirst().lr())),
                row("warmup_ratio", "0.5", (d, v) -> assertEquals(0.0, v.steps().getFirst().lr())),
                row("max_grad_norm", "1e-3", List.of("--optim", "sgd", "--max_steps", "1"), (d, v) -> {
                    // SGD: Δθ = -lr·clip(g); clipped to norm 1e-3 when ‖g‖ is larger
                    assertTrue(v.steps().getFirst().gradNorm() > 1e-3);
                    assertEquals(1e-3 * 1e-3, v.updateNorm(), 1e-9);
                    assertEquals(1e-3 * Math.min(1, d.steps().getFirst().gradNorm()), d.updateNorm(), 1e-9);
                }),
                row("weight_decay", "0.5", List.of("--max_steps", "1"), (d, v) -> {
                    // step 1: B = 0 so dA = 0 and Adam moves A by 0; only the decoupled decay A ← A·(1 − lr·wd) acts
                    assertEquals(0.0, d.maxChange("lora_A.weight"));
                    for (String n : v.start().keySet())
                        if (n.endsWith("lora_A.weight"))
                            for (int i = 0; i < v.start().get(n).length; i++)
                                assertEquals(v.start().get(n)[i] * (1 - 1e-3 * 0.5), v.end().get(n)[i], 3e-7 * Math.abs(v.start().get(n)[i]) + UPDATE_ATOL, n);
                }),
                row("adam_beta1", "0.5", List.of("--max_steps", "3"), (d, v) -> assertChanged(d, v)),
                row("adam_beta2", "0.5", List.of("--max_steps", "3"), (d, v) -> assertChanged(d, v)),
                row("adam_epsilon", "1.0", List.of("--max_steps", "1"), (d, v) -> {
                    // AdamW's first step: Δ = -lr·g/(|g| + eps), bias corrections included
                    for (String n : v.start().keySet())
                        for (int i = 0; i < v.start().get(n).length; i++) {
                            double g = v.grad().get(n)[i];
                            assertEquals(v.start().get(n)[i] - 1e-3 * g / (Math.abs(g) + 1.0), v.end().get(n)[i], 1e-6 * 1e-3 + Math.ulp(v.end().get(n)[i]), n);
                        }
                    assertTrue(v.updateNorm() < d.updateNorm() / 2);
                }),
                row("optim", "sgd", List.of("--max_steps", "1"), (d, v) -> {
                    for (String n : v.start().keySet())
                        for (int i = 0; i < v.start().get(n).length; i++)
                            assertEquals(v.start().get(n)[i] - 1e-3 * v.grad().get(n)[i], v.end().get(n)[i], 1e-6 * 1e-3 + Math.ulp(v.end().get(n)[i]), n);
                    assertInstanceOf(Optimizer.Sgd32.class, v.optimizers().getFirst());
                    assertInstanceOf(Optimizer.Adam32.class, d.optimizers().getFirst());
                }),
                row("optim_memory_budget_mb", "0", List.of("--optim", "paged_adamw_32bit"), (d, v) -> {
                    assertEquals(1024L << 20, ((Optimizer.Paged32) d.optimizers().getFirst()).opt().pagedState().budgetBytes());
                    assertEquals(0L, ((Optimizer.Paged32) v.optimizers().getFirst()).opt().pagedState().budgetBytes());
                }),
                // LLaMA-Factory's memory-saving optimizers (full fine-tuning of the 2-layer model, hidden 128, mlp 384)
                row("use_adam_mini", "true", FULL1, (d, v) -> {
                    assertInstanceOf(Optimizer.Mini.class, v.optimizers().getFirst());
                    // step 1 on a norm (one v for the whole tensor): Δ = −lr·g/(rms(g)/… + eps) ≈ −lr·g/rms(g), not AdamW's −lr·sign(g)
                    float[] g = v.grad().get("model.norm.weight"), dv = delta(v, "model.norm.weight");
                    double rms = 0;
                    for (float x : g) rms += (double) x * x;
                    rms = Math.sqrt(rms / g.length);
                    for (int i = 0; i < g.length; i++) assertEquals(-1e-3 * g[i] / rms, dv[i], 1e-3 * 1e-4 + 1e-6 * Math.abs(dv[i]), "element " + i);
                    assertTrue(maxAbs(delta(d, "model.norm.weight")) > 0.9e-3, "AdamW moves each element by about lr");
                }),
                row("use_muon", "true", FULL1, (d, v) -> {
                    assertInstanceOf(Optimizer.MuonOpt.class, v.optimizers().getFirst());
                    // a hidden matrix moves by lr·0.2·√max(rows, cols) times an (almost) orthogonal matrix: its singular values are ~1
                    String n = "model.layers.0.mlp.down_proj.weight";
                    double adj = 1e-3 * 0.2 * Math.sqrt(384);
                    float[] u = delta(v, n);
                    for (int i = 0; i < u.length; i++) u[i] /= (float) -adj;
                    // (the gradient of 2 short rows has rank < 128, and Newton-Schulz keeps its null space at 0)
                    var svd = Pissa.svd(u, 128, 384, 128, -1, null);
                    long nearOne = Arrays.stream(svd.s()).filter(x -> x > 0.5 && x < 1.3).count();
                    assertTrue(svd.s()[0] < 1.3 && nearOne >= 32, "singular values " + Arrays.toString(svd.s()));
                }),
                row("use_galore", "true", FULL1, (d, v) -> {
                    assertInstanceOf(Optimizer.GaLoreOpt.class, v.optimizers().getFirst());
                    assertEquals(16, rankOf(delta(v, "model.layers.0.self_attn.q_proj.weight"), 128, 128), "galore_rank 16 projection");
                    assertTrue(rankOf(delta(d, "model.layers.0.self_attn.q_proj.weight"), 128, 128) > 16, "AdamW's update is not low-rank");
                }),
                row("galore_rank", "3", concat(FULL1, List.of("--use_galore", "true")), (d, v) -> {
                    assertEquals(16, rankOf(delta(d, "model.layers.1.mlp.up_proj.weight"), 384, 128));
                    assertEquals(3, rankOf(delta(v, "model.layers.1.mlp.up_proj.weight"), 384, 128));
                }),
                row("galore_target", "q_proj", concat(FULL1, List.of("--use_galore", "true")), (d, v) -> {
                    assertEquals(16, rankOf(delta(d, "model.layers.0.self_attn.v_proj.weight"), 64, 128));
                    assertTrue(rankOf(delta(v, "model.layers.0.self_attn.v_proj.weight"), 64, 128) > 16, "v_proj is not projected");
                    assertEquals(16, rankOf(delta(v, "model.layers.0.self_attn.q_proj.weight"), 128, 128));
                }),
                row("galore_scale", "4", concat(FULL1, List.of("--use_galore", "true")), (d, v) -> {
                    float[] a = delta(d, "model.layers.0.self_attn.o_proj.weight"), b = delta(v, "model.layers.0.self_attn.o_proj.weight");
                    // twice the step, up to the float32 rounding of the stored weights (a few ulps of p)
                    float[] p0 = v.start().get("model.layers.0.self_attn.o_proj.weight");
                    for (int i = 0; i < a.length; i++) assertEquals(2 * a[i], b[i], 1e-5 * Math.abs(b[i]) + 4 * Math.ulp(p0[i]), "element " + i);
                }),
                row("galore_update_interval", "1", List.of("--finetuning_type", "full", "--use_galore", "true", "--max_steps", "2"), (d, v) -> assertChanged(d, v)),
                row("galore_layerwise", "true", concat(FULL1, List.of("--use_galore", "true", "--max_grad_norm", "0.01")), (d, v) -> {
                    // layerwise steps run before clipping: the gradients stay unclipped
                    assertEquals(0.01, norm(d.grad()), 1e-6);
                    assertTrue(norm(v.grad()) > 0.02, "unclipped gradient norm " + norm(v.grad()));
                }),
                row("use_apollo", "true", FULL1, (d, v) -> {
                    assertInstanceOf(Optimizer.ApolloOpt.class, v.optimizers().getFirst());
                    // APOLLO scales the raw gradient per row (q_proj: rows >= cols); AdamW's step is about lr·sign(g)
                    assertTrue(rowProportional(v, "model.layers.0.self_attn.q_proj.weight", 128, 128));
                    assertFalse(rowProportional(d, "model.layers.0.self_attn.q_proj.weight", 128, 128));
                }),
                row("apollo_target", "q_proj", concat(FULL1, List.of("--use_apollo", "true")), (d, v) -> {
                    assertTrue(rowProportional(d, "model.layers.0.mlp.gate_proj.weight", 384, 128));
                    assertFalse(rowProportional(v, "model.layers.0.mlp.gate_proj.weight", 384, 128));
                    assertTrue(rowProportional(v, "model.layers.0.self_attn.q_proj.weight", 128, 128));
                }),
                row("apollo_rank", "4", concat(FULL1, List.of("--use_apollo", "true")), (d, v) -> assertChanged(d, v)),
                row("apollo_update_interval", "1", List.of("--finetuning_type", "full", "--use_apollo", "true", "--max_steps", "2"), (d, v) -> assertChanged(d, v)),
                row("apollo_proj", "svd", concat(FULL1, List.of("--use_apollo", "true")), (d, v) -> assertChanged(d, v)),
                row("apollo_scale", "128", concat(FULL1, List.of("--use_apollo", "true")), (d, v) -> {
                    // step 1 (no limiter yet): the update is sqrt(scale) times the scaled gradient, twice as large for 128 as for 32
                    float[] a = delta(d, "model.layers.0.mlp.gate_proj.weight"), b = delta(v, "model.layers.0.mlp.gate_proj.weight");
                    float[] p0 = v.start().get("model.layers.0.mlp.gate_proj.weight");
                    for (int i = 0; i < a.length; i++) assertEquals(2 * a[i], b[i], 1e-5 * Math.abs(b[i]) + 4 * Math.ulp(p0[i]), "element " + i);
                }),
                row("apollo_scale_type", "tensor", concat(FULL1, List.of("--use_apollo", "true")), (d, v) -> {
                    // APOLLO-Mini: one scaling for the whole matrix, so Δ/g is the same constant in every row
                    assertEquals(1.0, ratioSpread(v, "model.layers.0.self_attn.o_proj.weight"), 1e-2);
                    assertTrue(ratioSpread(d, "model.layers.0.self_attn.o_proj.weight") > 1.05, "channel scaling differs between rows");
                }),
                row("apollo_layerwise", "true", concat(FULL1, List.of("--use_apollo", "true", "--max_grad_norm", "0.01")), (d, v) -> {
                    assertEquals(0.01, norm(d.grad()), 1e-6);
                    assertTrue(norm(v.grad()) > 0.02, "unclipped gradient norm " + norm(v.grad()));
                }),
                row("use_badam", "true", FULL1, (d, v) -> {
                    assertInstanceOf(Optimizer.BAdam.class, v.optimizers().getFirst());
                    assertTrue(maxAbs(delta(v, "model.layers.0.mlp.up_proj.weight")) > 0);
                    for (String n : List.of("model.layers.1.mlp.up_proj.weight", "model.embed_tokens.weight", "model.norm.weight"))
                        assertEquals(0.0, maxAbs(delta(v, n)), n + " is outside the active block");
                    assertTrue(maxAbs(delta(d, "model.layers.1.mlp.up_proj.weight")) > 0);
                }),
                row("badam_start_block", "1", concat(FULL1, List.of("--use_badam", "true")), (d, v) -> {
                    assertEquals(0.0, maxAbs(delta(v, "model.layers.0.mlp.up_proj.weight")));
                    assertTrue(maxAbs(delta(v, "model.layers.1.mlp.up_proj.weight")) > 0);
                }),
                row("badam_switch_mode", "descending", concat(FULL1, List.of("--use_badam", "true")), (d, v) -> {
                    assertTrue(maxAbs(delta(d, "model.layers.0.mlp.up_proj.weight")) > 0, "ascending starts at layer 0");
                    assertEquals(0.0, maxAbs(delta(v, "model.layers.0.mlp.up_proj.weight")), "descending starts at the last layer");
                    assertTrue(maxAbs(delta(v, "model.layers.1.mlp.up_proj.weight")) > 0);
                }),
                row("badam_switch_interval", "2", List.of("--finetuning_type", "full", "--use_badam", "true", "--max_steps", "3"), (d, v) -> {
                    // BAdam switches after step k when (k + 1) % interval == 0: after step 1 here, never in 3 steps at 50
                    assertEquals(0.0, maxAbs(delta(d, "model.layers.1.mlp.up_proj.weight")));
                    assertTrue(maxAbs(delta(v, "model.layers.1.mlp.up_proj.weight")) > 0);
                }),
                row("seed", "7", (d, v) -> {
                    String a = "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight";
                    assertFalse(Arrays.equals(d.start().get(a), v.start().get(a)), "another initialisation");
                    assertNotEquals(d.firstLoss(), v.firstLoss(), "another shuffle");
                }),
                row("eval_strategy", "steps", List.of("--val_size", "3"), (d, v) -> {
                    assertTrue(d.evals().isEmpty());
                    assertEquals(List.of(1L, 2L), v.evals().stream().map(TrainEvent.Eval::step).toList());
                }),
                row("eval_steps", "2", List.of("--val_size", "3", "--eval_strategy", "steps"), (d, v) -> {
                    assertEquals(List.of(1L, 2L), d.evals().stream().map(TrainEvent.Eval::step).toList(), "default: logging_steps");
                    assertEquals(List.of(2L), v.evals().stream().map(TrainEvent.Eval::step).toList());
                }),
                row("evaluation_strategy", "steps", List.of("--val_size", "3"), (d, v) ->
                        assertEquals(List.of(1L, 2L), v.evals().stream().map(TrainEvent.Eval::step).toList())),
                row("do_eval", "true", List.of("--val_size", "3"), (d, v) -> {
                    assertNull(d.result().train().evalLoss());
                    assertNotNull(v.result().train().evalLoss());
                    assertTrue(v.json("all_results.json").has("eval_loss"));
                }),
                // peft4j
                row("threads", "1", (d, v) -> assertEquals(1, v.setup().threads())),
                row("gemm", "scalar", (d, v) -> {
                    assertNotEquals("scalar", d.setup().gemm());
                    assertEquals("scalar", v.setup().gemm());
                }),
                row("compare_prompts", "Who are you?", (d, v) -> {
                    assertNull(d.result().comparison());
                    assertEquals("Who are you?", v.result().comparison().answers().getFirst().prompt());
                }),
                row("forgetting_text", general.toString(), (d, v) -> {
                    assertNull(d.result().comparison());
                    assertNotNull(v.result().comparison().generalBefore());
                    assertNotNull(v.result().comparison().generalAfter());
                }));
    }

    static long tokens(Probe p) { return p.train().stream().mapToLong(TokenizedExample::length).sum(); }

    static long logLines(Probe p, String key) throws IOException {
        return Files.readAllLines(p.out().resolve("trainer_log.jsonl")).stream().filter(l -> l.contains("\"" + key + "\"")).count();
    }

    /// The decoder layers with a trained tensor.
    static Set<Integer> layersOf(Probe p) {
        Set<Integer> out = new TreeSet<>();
        for (String n : p.params()) if (n.startsWith("model.layers.")) out.add(Integer.parseInt(n.split("\\.")[2]));
        return out;
    }

    /// Whether the update of `name` (rows, cols) is the gradient times one factor per row: Δ/g agrees within 1% over
    /// each row's elements with |g| ≥ 0.3·max|g| of that row (smaller ones are too close to the rounding of the weights).
    static boolean rowProportional(Probe p, String name, int rows, int cols) {
        float[] dl = delta(p, name), g = p.grad().get(name);
        for (int i = 0; i < rows; i++) {
            double max = 0;
            for (int j = 0; j < cols; j++) max = Math.max(max, Math.abs(g[i * cols + j]));
            if (max == 0) continue;
            double lo = Double.POSITIVE_INFINITY, hi = Double.NEGATIVE_INFINITY;
            for (int j = 0; j < cols; j++) {
                int q = i * cols + j;
                if (Math.abs(g[q]) < 0.3 * max) continue;
                double r = dl[q] / g[q];
                lo = Math.min(lo, r);
                hi = Math.max(hi, r);
            }
            if (!(hi <= lo * 1.01 + 1e-12 && lo > 0 || hi < 0 && lo >= hi * 1.01 - 1e-12)) return false;
        }
        return true;
    }

    /// max/min over the rows of each row's median Δ/g (1 when one factor scales the whole matrix).
    static double ratioSpread(Probe p, String name) {
        float[] dl = delta(p, name), g = p.grad().get(name);
        int rows = (int) p.built().model().params().stream().filter(x -> x.name().equals(name)).findFirst().orElseThrow().shape()[0];
        int cols = g.length / rows;
        double lo = Double.POSITIVE_INFINITY, hi = 0;
        for (int i = 0; i < rows; i++) {
            double max = 0;
            for (int j = 0; j < cols; j++) max = Math.max(max, Math.abs(g[i * cols + j]));
            if (max == 0) continue;
            List<Double> rs = new ArrayList<>();
            for (int j = 0; j < cols; j++) if (Math.abs(g[i * cols + j]) >= 0.3 * max) rs.add(Math.abs(dl[i * cols + j] / (double) g[i * cols + j]));
            rs.sort(null);
            double med = rs.get(rs.size() / 2);
            lo = Math.min(lo, med);
            hi = Math.max(hi, med);
        }
        return hi / lo;
    }

    /// Full fine-tuning, one step.
    static final String OFT_Q = "base_model.model.model.layers.0.self_attn.q_proj.oft_R.weight";
    static final List<String> FULL1 = List.of("--finetuning_type", "full", "--max_steps", "1");

    static float[] delta(Probe p, String name) {
        float[] a = p.start().get(name), b = p.end().get(name);
        assertNotNull(a, name + " is not trained");
        float[] out = new float[a.length];
        for (int i = 0; i < a.length; i++) out[i] = b[i] - a[i];
        return out;
    }

    /// Numerical rank: singular values above 1e-3 of the largest (float32 updates of low rank leave ~1e-6 noise).
    static int rankOf(float[] m, int rows, int cols) {
        var svd = Pissa.svd(m.clone(), rows, cols, Math.min(rows, cols), -1, null);
        int r = 0;
        for (double s : svd.s()) if (s > 1e-3 * svd.s()[0]) r++;
        return r;
    }

    static double norm(Map<String, float[]> tensors) {
        double s = 0;
        for (float[] x : tensors.values()) for (float f : x) s += (double) f * f;
        return Math.sqrt(s);
    }

    static void assertChanged(Probe d, Probe v) {
        assertTrue(v.end().keySet().stream().anyMatch(n -> !Arrays.equals(d.end().get(n), v.end().get(n))), "the trained tensors should differ");
    }

    /// Counts the tokens of a text with the test model's tokenizer.
    static final class Tokenizer_ {
        final org.peft4j.tokenizer.Tokenizer t = org.peft4j.tokenizer.Tokenizer.load(model);
        int count(String s) { return t.encode(s, false).length; }
    }

    static double maxAbs(Map<String, float[]> tensors) {
        double m = 0;
        for (float[] x : tensors.values()) m = Math.max(m, maxAbs(x));
        return m;
    }

    static double maxAbs(float[] x) {
        double m = 0;
        for (float f : x) m = Math.max(m, Math.abs(f));
        return m;
    }

    @TestFactory
    Stream<DynamicTest> everySupportedKeyTakesEffect() {
        return rows().stream().map(r -> DynamicTest.dynamicTest(r.key() + " = " + r.value(), () -> {
            boolean checkpointSetup = r.context().contains("SETUP:checkpoint");
            // a key whose default is refused in this context (predict_with_generate: false with do_predict): the check
            // gets null for the default run, and the refusal must name the key
            boolean refusedAtDefault = r.context().contains("SETUP:refusedAtDefault");
            List<String> context = r.context().stream().filter(f -> !f.startsWith("SETUP:")).toList();
            Setup setup = checkpointSetup ? out -> copyTree(checkpoint, out.resolve("checkpoint-1")) : out -> {};
            Probe atDefault;
            if (refusedAtDefault) {
                var e = assertThrows(org.peft4j.core.Peft4jException.ConfigException.class, () -> run(context));
                assertTrue(e.getMessage().contains(r.key()), e.getMessage());
                atDefault = null;
            } else {
                atDefault = checkpointSetup ? run(context, setup) : baselines.containsKey(context) ? baselines.get(context) : run(context);
                if (!checkpointSetup) baselines.put(context, atDefault);
            }
            String value = switch (r.value()) {
                case "DATA2" -> data2.toString();
                case "CHECKPOINT" -> checkpoint.toString();
                default -> r.value();
            };
            List<String> flags = new ArrayList<>(context);
            flags.addAll(List.of("--" + r.key(), value));
            if (r.context().contains("SETUP:refusedAtValue")) {
                // a key of which only the default changes nothing and other values are refused (OFT's module_dropout,
                // which PEFT never applies): the refusal must name the key; the check gets null for that run
                var e = assertThrows(org.peft4j.core.Peft4jException.ConfigException.class, () -> run(flags, setup));
                assertTrue(e.getMessage().contains(r.key()), e.getMessage());
                r.check().verify(atDefault, null);
                return;
            }
            r.check().verify(atDefault, run(flags, setup));
        }));
    }

    @Test
    void everySupportedKeyHasARow() {
        Set<String> covered = new TreeSet<>(rows().stream().map(Row::key).toList());
        Set<String> supported = new TreeSet<>();
        for (TrainConfig.Key k : TrainConfig.KEYS.values()) if (k.support() == TrainConfig.Support.SUPPORTED) supported.add(k.name());
        Set<String> missing = new TreeSet<>(supported);
        missing.removeAll(covered);
        assertTrue(missing.isEmpty(), "supported keys without a test of their effect: " + missing);
        Set<String> extra = new TreeSet<>(covered);
        extra.removeAll(supported);
        assertTrue(extra.isEmpty(), "rows for keys that are not SUPPORTED: " + extra);
    }

    static void copyTree(Path from, Path to) throws IOException {
        try (Stream<Path> s = Files.walk(from)) {
            for (Path p : s.toList()) {
                Path q = to.resolve(from.relativize(p).toString());
                if (Files.isDirectory(p)) Files.createDirectories(q);
                else Files.copy(p, q);
            }
        }
    }

    static long trained(org.peft4j.train.data.TokenizedExample e) {
        return Arrays.stream(e.labels()).filter(l -> l != org.peft4j.train.data.TokenizedExample.IGNORE_INDEX).count();
    }
}
