package org.peft4j.train;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.peft4j.core.Gemms;
import org.peft4j.core.Peft4jException.ConfigException;
import org.peft4j.model.Models;
import org.peft4j.model.adapter.lora.LoraConfig;
import org.peft4j.model.layers.PreferenceLoss;
import org.peft4j.testkit.Shared;
import org.peft4j.tokenizer.Tokenizer;
import org.peft4j.train.data.Conversation;
import org.peft4j.train.data.DatasetInfo;
import org.peft4j.train.data.DatasetLoader;
import org.peft4j.train.data.Feedback;
import org.peft4j.train.data.Pairwise;
import org.peft4j.train.data.Supervised;
import org.peft4j.train.data.TokenizedExample;
import org.peft4j.train.engine.Method;
import org.peft4j.train.engine.Param;
import org.peft4j.train.engine.PreferenceObjective;
import org.peft4j.train.engine.SequenceObjective;
import org.peft4j.train.engine.TrainModel;
import org.peft4j.train.recipe.FinetuneRecipe;
import org.peft4j.train.recipe.TrainEvent;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

import static org.junit.jupiter.api.Assertions.*;

/// Stage dpo end to end on the bundled TinyStories-656K (tiny models, few steps): LoRA DPO starts at ln 2 with zero
/// rewards (the reference is the base with the adapter off, LoRA's B = 0), also over a 4-bit base; pairs are encoded
/// with the prompt masked exactly as SFT masks it and both answers of a pair share a batch; gradient accumulation
/// equals one large batch; training moves held-out reward accuracy; ORPO and SimPO train without a reference (full
/// fine-tuning too); what is not supported is refused with a message.
class PreferenceTrainTest {
    /// At policy = reference the two passes compute the same products (the LoRA term adds exact zeros); they differ
    /// only in attention's path (training vs inference plan), which sums in another order: ~1e-7 per token logprob.
    static final double LN2_ATOL = 1e-6;

    @TempDir static Path tmp;
    static Path model, data;

    @BeforeAll
    static void fixtures() throws Exception {
        Path root = Shared.root();
        model = root.resolve("models/tinystories-656k");
        var om = new ObjectMapper();
        JsonNode rows = om.readTree(root.resolve("data/identity_en.json").toFile());
        data = Files.createDirectories(tmp.resolve("data"));
        var alpaca = om.createArrayNode();
        var sharegpt = om.createArrayNode();
        for (JsonNode r : rows) {
            String chosen = r.get("output").asText(), rejected = chosen.replace("Tiny", "Max").replace("peft4j team", "Acme lab");
            alpaca.addObject().put("instruction", r.get("instruction").asText()).put("input", "").put("chosen", chosen).put("rejected", rejected);
            var s = sharegpt.addObject();
            s.putArray("conversations").addObject().put("from", "human").put("value", r.get("instruction").asText());
            s.putObject("chosen").put("from", "gpt").put("value", chosen);
            s.putObject("rejected").put("from", "gpt").put("value", rejected);
        }
        // KTO: the same answers unpaired, LLaMA-Factory's kto_en_demo layout (sharegpt messages + a boolean label);
        // alternating rows keep both labels in every part of the data
        var kto = om.createArrayNode();
        int k = 0;
        for (JsonNode r : rows) {
            boolean good = k++ % 2 == 0;
            String answer = r.get("output").asText();
            if (!good) answer = answer.replace("Tiny", "Max").replace("peft4j team", "Acme lab");
            var o = kto.addObject();
            var m = o.putArray("messages");
            m.addObject().put("role", "user").put("content", r.get("instruction").asText());
            m.addObject().put("role", "assistant").put("content", answer);
            o.put("label", good);
        }
        Files.writeString(data.resolve("kto.json"), om.writeValueAsString(kto));
        Files.writeString(data.resolve("pairs.json"), om.writeValueAsString(alpaca));
        Files.writeString(data.resolve("pairs_sharegpt.json"), om.writeValueAsString(sharegpt));
        Files.copy(root.resolve("data/identity_en.json"), data.resolve("identity_en.json"));
        Files.writeString(data.resolve("dataset_info.json"), """
                {"pairs": {"file_name": "pairs.json", "ranking": true,
                           "columns": {"prompt": "instruction", "query": "input", "chosen": "chosen", "rejected": "rejected"}},
                 "pairs_sharegpt": {"file_name": "pairs_sharegpt.json", "ranking": true, "formatting": "sharegpt",
                                    "columns": {"messages": "conversations", "chosen": "chosen", "rejected": "rejected"}},
                 "kto": {"file_name": "kto.json", "formatting": "sharegpt", "columns": {"messages": "messages", "kto_tag": "label"},
                         "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant"}},
                 "identity_en": {"file_name": "identity_en.json"}}
                """);
    }

    static List<String> flags(String out, String... more) {
        List<String> f = new ArrayList<>(List.of("--model_name_or_path", model.toString(), "--dataset_dir", data.toString(),
                "--output_dir", tmp.resolve(out).toString(), "--overwrite_output_dir", "--stage", "dpo", "--dataset", "pairs",
                "--template", "default", "--cutoff_len", "64", "--per_device_train_batch_size", "2", "--logging_steps", "1",
                "--save_steps", "0", "--lora_rank", "8", "--gemm", "java", "--seed", "7"));
        f.addAll(List.of(more));
        return f;
    }

    static List<TrainEvent> run(List<String> flags) {
        List<TrainEvent> events = new ArrayList<>();
        new FinetuneRecipe().run(TrainConfig.load(null, flags), events::add);
        return events;
    }

    static void assertPng(Path p) {
        try {
            byte[] b = Files.readAllBytes(p);
            assertTrue(b.length > 1000 && b[1] == 'P' && b[2] == 'N' && b[3] == 'G', p + " is a PNG image");
        } catch (java.io.IOException e) {
            fail(p + " was not written: " + e);
        }
    }

    static <T> List<T> of(List<TrainEvent> events, Class<T> c) { return events.stream().filter(c::isInstance).map(c::cast).toList(); }

    @Test
    void loraDpoStartsAtLn2WithZeroRewards() {
        // lora_dropout stays off in the policy pass (LLaMA-Factory's disable_dropout), so it cannot move the start
        for (String[] extra : new String[][] {{}, {"--quantization_bit", "4"}, {"--lora_dropout", "0.3"}}) {
            List<String> f = new ArrayList<>(flags("ln2" + String.join("", extra).replace("-", ""), "--max_steps", "1"));
            f.addAll(List.of(extra));
            TrainEvent.Step s = of(run(f), TrainEvent.Step.class).getFirst();
            String what = "LoRA DPO " + Arrays.toString(extra);
            assertEquals(Math.log(2), s.loss(), LN2_ATOL, what + ": the first loss is ln 2");
            assertEquals(0.0, s.metrics().get("rewards/chosen"), 1e-4, what);
            assertEquals(0.0, s.metrics().get("rewards/rejected"), 1e-4, what);
            assertEquals(0.0, s.metrics().get("rewards/margins"), 1e-4, what);
            assertTrue(s.metrics().get("logps/chosen") < -1, what + ": log-probabilities of whole answers: " + s.metrics());
        }
    }

    /// The chosen sequence of a pair is exactly SFT's encoding of (prompt, chosen) with mask_history (only the answer
    /// labelled); the rejected one has the same prompt ids and mask. Alpaca and sharegpt rows give the same pairs.
    @Test
    void pairsAreMaskedAsInSft() throws Exception {
        Tokenizer tok = Tokenizer.load(model);
        var enc = TrainData.encoder(tok);
        var template = org.peft4j.train.data.Template.named("default");
        DatasetInfo info = DatasetInfo.load(data);
        List<Conversation[]> alpaca = DatasetLoader.loadPairs(info, List.of("pairs"), null, 0);
        List<Conversation[]> sharegpt = DatasetLoader.loadPairs(info, List.of("pairs_sharegpt"), null, 0);
        assertEquals(16, alpaca.size());
        for (int i = 0; i < alpaca.size(); i++) {
            Pairwise.Pair p = Pairwise.encode(template, enc, alpaca.get(i), 1024);
            assertEquals(p, Pairwise.encode(template, enc, sharegpt.get(i), 1024), "alpaca and sharegpt rows " + i);
            TokenizedExample sft = Supervised.encode(template, enc, alpaca.get(i)[0], new Supervised.Options(1024, false, true));
            assertEquals(sft, p.chosen(), "row " + i + ": chosen = SFT's encoding");
            int prompt = 0;
            while (p.chosen().labels()[prompt] == TokenizedExample.IGNORE_INDEX) prompt++;
            assertTrue(prompt > 0);
            assertArrayEquals(Arrays.copyOf(p.chosen().inputIds(), prompt), Arrays.copyOf(p.rejected().inputIds(), prompt), "shared prompt");
            for (int t = 0; t < p.rejected().length(); t++)
                assertEquals(t < prompt ? TokenizedExample.IGNORE_INDEX : p.rejected().inputIds()[t], p.rejected().labels()[t]);
            assertFalse(Arrays.equals(p.chosen().inputIds(), p.rejected().inputIds()));
        }
        // dpo_en_demo (sharegpt, from LLaMA-Factory): every pair parses, and a short cutoff keeps the prompt equal
        Path lf = Shared.require("data/llamafactory");
        List<Conversation[]> demo = DatasetLoader.loadPairs(DatasetInfo.load(lf), List.of("dpo_en_demo"), 40, 0);
        assertEquals(40, demo.size());
        for (Conversation[] c : demo) {
            Pairwise.Pair p = Pairwise.encode(template, enc, c, 128);
            assertTrue(p.chosen().length() <= 128 && p.rejected().length() <= 128);
            assertTrue(p.chosen().trainedCount() > 0 && p.rejected().trainedCount() > 0);
            int prompt = p.chosen().length() - p.chosen().trainedCount();
            assertEquals(prompt, p.rejected().length() - p.rejected().trainedCount(), "both answers follow the same cut prompt");
        }
    }

    @Test
    void batchHoldsBothAnswersOfEachPair() {
        var c = List.of(new TokenizedExample(new int[] {1, 2, 3}, new int[] {-100, 2, 3}), new TokenizedExample(new int[] {4, 5}, new int[] {-100, 5}));
        var r = List.of(new TokenizedExample(new int[] {1, 9}, new int[] {-100, 9}), new TokenizedExample(new int[] {4, 8, 8, 8}, new int[] {-100, 8, 8, 8}));
        var b = SequenceObjective.batch(new SequenceObjective.Units(c, r, null), new int[] {1, 0}, 0);
        assertEquals(4, b.B());
        assertEquals(4, b.T());
        assertArrayEquals(new int[] {4, 5, 0, 0,  1, 2, 3, 0,  4, 8, 8, 8,  1, 9, 0, 0}, b.inputIds(), "chosen rows, then the rejected rows of the same pairs");
        assertArrayEquals(new int[] {-100, 5, -100, -100,  -100, 2, 3, -100,  -100, 8, 8, 8,  -100, 9, -100, -100}, b.labels());
    }

    /// Two micro-batches of one pair with scale 1/2 each give the gradient of one batch of both pairs (rows padded to
    /// other lengths: masked positions must not leak).
    @Test
    void gradientAccumulationEqualsOneBatch() {
        var weights = Models.loadWeights(model);
        var lc = new LoraConfig(4, 8, 0, LoraConfig.ALL_LINEAR, false, false, LoraConfig.Init.GAUSSIAN, "none", false, null, null, null, null, 0);
        TrainModel m = new TrainModel(weights, new Method.Lora(lc), Gemms.get("java"), 4, 32, false, 3);
        for (Param p : m.params()) if (p.name().endsWith("lora_B.weight")) for (int i = 0; i < p.data().length; i++) p.data()[i] = (float) (0.01 * Math.sin(i));
        var obj = new PreferenceObjective(m, new PreferenceLoss.Config(PreferenceLoss.Kind.SIGMOID, 0.1, 0.5, 0.1, 0.5));
        var c = List.of(new TokenizedExample(new int[] {5, 17, 99, 300, 41}, new int[] {-100, -100, 99, 300, 41}),
                new TokenizedExample(new int[] {8, 77, 12}, new int[] {-100, 77, 12}));
        var r = List.of(new TokenizedExample(new int[] {5, 17, 99, 301, 42, 43, 44}, new int[] {-100, -100, 99, 301, 42, 43, 44}),
                new TokenizedExample(new int[] {8, 70}, new int[] {-100, 70}));
        var units = new SequenceObjective.Units(c, r, null);
        m.zeroGrad();
        double l2 = obj.forward(units, new int[] {0, 1}, 0, false, 0, null, null);
        obj.backward(0.5, 0);
        List<float[]> g2 = m.params().stream().map(p -> p.grad().clone()).toList();
        m.zeroGrad();
        double l1 = 0;
        for (int i = 0; i < 2; i++) {
            l1 += obj.forward(units, new int[] {i}, 0, false, 0, null, null);
            obj.backward(0.5, 0);
        }
        assertEquals(l2, l1, 1e-6);
        double max = 0, diff = 0;
        for (int k = 0; k < g2.size(); k++) {
            float[] a = g2.get(k), b = m.params().get(k).grad();
            for (int i = 0; i < a.length; i++) { max = Math.max(max, Math.abs(a[i])); diff = Math.max(diff, Math.abs(a[i] - b[i])); }
        }
        assertTrue(max > 0);
        assertTrue(diff <= 1e-5 * max, "accumulated gradient differs by " + diff + " (max " + max + ")");
    }

    /// LoRA DPO on the identity pairs (Tiny chosen over Max): held-out pairs' reward accuracy reaches ≥ 0.9.
    @Test
    void dpoLearnsThePreferenceOnHeldOutPairs() {
        List<TrainEvent> ev = run(flags("learn", "--val_size", "4", "--learning_rate", "5e-3", "--max_steps", "24",
                "--pref_beta", "0.1", "--eval_strategy", "steps", "--eval_steps", "24", "--per_device_eval_batch_size", "4", "--plot_loss", "true"));
        for (String k : List.of("loss", "rewards/accuracies", "rewards/margins"))
            assertPng(tmp.resolve("learn").resolve(LossPlot.fileName(k)));
        TrainEvent.Eval e = of(ev, TrainEvent.Eval.class).getLast();
        assertTrue(e.metrics().get("eval_rewards/accuracies") >= 0.9, "held-out reward accuracy: " + e.metrics());
        assertTrue(e.metrics().get("eval_rewards/margins") > 0, e.metrics().toString());
        assertTrue(e.evalLoss() < Math.log(2), "eval loss below ln 2: " + e.evalLoss());
        // the saved adapter against its base, one sequence at a time through the inference engine (peft4j eval's
        // numbers), gives the trainer's last eval metrics: the same rewards computed another way
        var cfg = TrainConfig.load(null, flags("learn-data", "--val_size", "4"));
        List<TokenizedExample> evalPairs = TrainData.prepare(cfg, Tokenizer.load(model), model).eval();
        var m = Models.load(model, Gemms.get("java"));
        var p = org.peft4j.train.Evaluation.preference(m, m.loadAdapter("dpo", tmp.resolve("learn")), evalPairs, 0.1);
        assertEquals(4, p.pairs());
        assertEquals(e.metrics().get("eval_rewards/accuracies"), p.accuracy(), 1e-9);
        assertEquals(e.metrics().get("eval_rewards/margins"), p.margin(), 1e-3);
        assertEquals(e.metrics().get("eval_rewards/chosen"), p.rewardsChosen(), 1e-3);
    }

    /// ORPO and SimPO need no reference model, so full fine-tuning runs them; the loss falls.
    @Test
    void orpoAndSimpoTrainWithoutAReference() {
        for (String loss : List.of("orpo", "simpo")) {
            List<TrainEvent.Step> steps = of(run(flags("ref-free-" + loss, "--pref_loss", loss, "--finetuning_type", "full",
                    "--learning_rate", "1e-3", "--max_steps", "6")), TrainEvent.Step.class);
            assertTrue(steps.getLast().loss() < steps.getFirst().loss(), loss + ": " + steps.getFirst().loss() + " -> " + steps.getLast().loss());
        }
    }

    static List<String> ktoFlags(String out, String... more) {
        List<String> f = new ArrayList<>(flags(out, "--stage", "kto", "--dataset", "kto"));
        f.addAll(List.of(more));
        return f;
    }

    /// kto_tag rows load as labelled conversations (LLaMA-Factory's kto_en_demo: 300 rows, 150 desirable); each
    /// example's KL sequence is its own prompt with the answer of the row mirrored in its block, both prompt-masked
    /// as SFT masks them; a tag that is not a boolean is an error naming the row.
    @Test
    void ktoExamplesAndTheirKlSequences() throws Exception {
        Path lf = Shared.require("data/llamafactory");
        List<Feedback.Labelled> demo = DatasetLoader.loadFeedback(DatasetInfo.load(lf), List.of("kto_en_demo"), null, 0);
        assertEquals(300, demo.size());
        assertEquals(150, demo.stream().filter(Feedback.Labelled::desirable).count());

        Tokenizer tok = Tokenizer.load(model);
        var enc = TrainData.encoder(tok);
        var template = org.peft4j.train.data.Template.named("default");
        List<Feedback.Labelled> rows = DatasetLoader.loadFeedback(DatasetInfo.load(data), List.of("kto"), null, 0);
        assertEquals(16, rows.size());
        List<Feedback.Example> ex = Feedback.encodeAll(template, enc, rows, 1024);
        var opts = new Supervised.Options(1024, false, true);
        for (int i = 0; i < rows.size(); i++) {
            Conversation c = rows.get(i).conversation(), mirror = rows.get(rows.size() - 1 - i).conversation();
            assertEquals(rows.get(i).desirable(), ex.get(i).desirable());
            assertEquals(Supervised.encode(template, enc, c, opts), ex.get(i).target(), "row " + i + ": the example is SFT's encoding");
            var klConversation = new Conversation(c.system(), c.tools(), List.of(c.messages().get(0), mirror.messages().get(1)));
            assertEquals(Supervised.encode(template, enc, klConversation, opts), ex.get(i).kl(), "row " + i + ": prompt i, answer of row " + (rows.size() - 1 - i));
        }
        Path bad = Files.createDirectories(tmp.resolve("bad-kto"));
        Files.writeString(bad.resolve("k.json"), "[{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}, {\"role\": \"assistant\", \"content\": \"yo\"}], \"label\": \"yes\"}]");
        Files.writeString(bad.resolve("dataset_info.json"), """
                {"k": {"file_name": "k.json", "formatting": "sharegpt", "columns": {"messages": "messages", "kto_tag": "label"},
                       "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant"}}}""");
        var e = assertThrows(org.peft4j.core.Peft4jException.class, () -> DatasetLoader.loadFeedback(DatasetInfo.load(bad), List.of("k"), null, 0));
        assertTrue(e.getMessage().contains("row 0") && e.getMessage().contains("label") && e.getMessage().contains("true"), e.getMessage());
        e = assertThrows(ConfigException.class, () -> DatasetLoader.loadFeedback(DatasetInfo.load(data), List.of("pairs"), null, 0));
        assertTrue(e.getMessage().contains("kto_tag"), e.getMessage());
    }

    /// At the first step of LoRA KTO the policy is the reference (B = 0): the KL estimate is 0, every example's loss is
    /// w·(1 − σ(0)) = w/2, so the step's loss is the mean of the weights' halves and the rewards are 0; also over a
    /// 4-bit base.
    @Test
    void loraKtoStartsAtHalfTheWeights() {
        for (String[] extra : new String[][] {{}, {"--quantization_bit", "4"}, {"--kto_rejected_weight", "2.0"}}) {
            List<String> f = new ArrayList<>(ktoFlags("kto-start" + String.join("", extra).replace("-", ""), "--max_steps", "1",
                    "--per_device_train_batch_size", "4", "--gradient_accumulation_steps", "2"));
            f.addAll(List.of(extra));
            TrainEvent.Step s = of(run(f), TrainEvent.Step.class).getFirst();
            String what = "LoRA KTO " + Arrays.toString(extra);
            assertEquals(0.0, s.metrics().get("kl"), 1e-6, what);
            assertEquals(0.0, s.metrics().get("rewards/chosen"), 1e-4, what);
            assertEquals(0.0, s.metrics().get("rewards/rejected"), 1e-4, what);
            assertTrue(s.metrics().get("logps/rejected") < -1, what + ": " + s.metrics());
            // 8 examples of the shuffled data: d desirable, 8 − d undesirable; loss = (d·1 + (8 − d)·wu) / 2 / 8
            double wu = extra.length == 2 && extra[0].equals("--kto_rejected_weight") ? 2.0 : 1.0;
            double expected = Double.NaN;
            for (int d = 0; d <= 8; d++) if (Math.abs((d + (8 - d) * wu) / 16 - s.loss()) < LN2_ATOL) expected = (d + (8 - d) * wu) / 16;
            assertEquals(expected, s.loss(), LN2_ATOL, what + ": the loss is a mean of w/2 terms");
            if (wu == 1.0) assertEquals(0.5, s.loss(), LN2_ATOL, what);
        }
    }

    /// LoRA KTO on the identity answers (Tiny desirable, Max undesirable): on held-out examples the desirable answers'
    /// rewards rise above the undesirable ones', and the loss falls below its start of 0.5.
    @Test
    void ktoLearnsOnHeldOutExamples() {
        List<TrainEvent> ev = run(ktoFlags("kto-learn", "--val_size", "4", "--learning_rate", "5e-3", "--max_steps", "24",
                "--per_device_train_batch_size", "4", "--eval_strategy", "steps", "--eval_steps", "12", "--per_device_eval_batch_size", "4",
                "--plot_loss", "true"));
        for (String k : List.of("loss", "eval_loss", "rewards/chosen", "rewards/rejected", "kl", "eval_rewards/chosen", "eval_kl"))
            assertPng(tmp.resolve("kto-learn").resolve(LossPlot.fileName(k)));
        TrainEvent.Eval e = of(ev, TrainEvent.Eval.class).getLast();
        assertTrue(e.metrics().get("eval_rewards/margins") > 0.5, "held-out margin: " + e.metrics());
        assertTrue(e.metrics().get("eval_rewards/chosen") > 0, e.metrics().toString());
        assertTrue(e.metrics().get("eval_rewards/rejected") < 0, e.metrics().toString());
        assertTrue(e.evalLoss() < 0.5, "eval loss below its start 0.5: " + e.evalLoss());
        assertTrue(e.metrics().containsKey("eval_kl"));
        // the saved adapter against its base, one sequence at a time through the inference engine (peft4j eval on a
        // KTO dataset), gives the trainer's last eval rewards
        var cfg = TrainConfig.load(null, ktoFlags("kto-learn-data", "--val_size", "4"));
        TrainData held = TrainData.prepare(cfg, Tokenizer.load(model), model);
        var m = Models.load(model, Gemms.get("java"));
        var f = org.peft4j.train.Evaluation.feedback(m, m.loadAdapter("kto", tmp.resolve("kto-learn")), held.eval(), held.evalDesirable(), 0.1);
        assertEquals(4, f.desirable() + f.undesirable());
        assertEquals(e.metrics().get("eval_rewards/chosen"), f.rewardsChosen(), 1e-3);
        assertEquals(e.metrics().get("eval_rewards/rejected"), f.rewardsRejected(), 1e-3);
        assertEquals(e.metrics().get("eval_rewards/margins"), f.margin(), 1e-3);
    }

    /// Full and freeze tuning compare against a frozen copy of the model as loaded: at the first step the policy is
    /// that copy, so DPO starts at ln 2 and KTO at 0.5 with a zero KL estimate; after some steps the rewards move
    /// (the copy did not train along).
    @Test
    void fullAndFreezeTuningUseAFrozenCopyAsReference() {
        List<TrainEvent.Step> dpo = of(run(flags("full-dpo", "--finetuning_type", "full", "--learning_rate", "1e-3", "--max_steps", "4")), TrainEvent.Step.class);
        assertEquals(Math.log(2), dpo.getFirst().loss(), LN2_ATOL, "full DPO starts at ln 2");
        assertEquals(0.0, dpo.getFirst().metrics().get("rewards/margins"), 1e-4);
        assertTrue(Math.abs(dpo.getLast().metrics().get("rewards/margins")) > 1e-3, "the reference stays while the policy moves: " + dpo.getLast().metrics());
        List<TrainEvent.Step> kto = of(run(ktoFlags("freeze-kto", "--finetuning_type", "freeze", "--max_steps", "1",
                "--per_device_train_batch_size", "4")), TrainEvent.Step.class);
        assertEquals(0.5, kto.getFirst().loss(), LN2_ATOL, "freeze KTO starts at 0.5");
        assertEquals(0.0, kto.getFirst().metrics().get("kl"), 1e-6);
    }

    /// ref_model with ref_model_adapters: a fresh LoRA policy (B = 0) is the base, the reference the base with an
    /// adapter, so the held-out rewards are β·(log p_base − log p_adapter): the negatives of what `peft4j eval`'s
    /// Evaluation.preference (one sequence at a time through the inference engine) reports for that adapter. With
    /// ref_model_quantization_bit 4 the reference is the 4-bit base: close to, not equal to, the float one.
    @Test
    void refModelWithAdaptersIsTheReference() {
        run(flags("ref-adapter", "--learning_rate", "5e-3", "--max_steps", "6"));
        Path adapter = tmp.resolve("ref-adapter");
        List<String> eval = flags("ref-eval", "--do_train", "false", "--do_eval", "true", "--val_size", "4",
                "--per_device_eval_batch_size", "4", "--ref_model", model.toString(), "--ref_model_adapters", adapter.toString());
        TrainEvent.Eval e = of(run(eval), TrainEvent.Eval.class).getLast();
        var cfg = TrainConfig.load(null, flags("ref-data", "--val_size", "4"));
        List<TokenizedExample> evalPairs = TrainData.prepare(cfg, Tokenizer.load(model), model).eval();
        var m = Models.load(model, Gemms.get("java"));
        var p = org.peft4j.train.Evaluation.preference(m, m.loadAdapter("ref", adapter), evalPairs, 0.1);
        assertTrue(Math.abs(p.margin()) > 1e-3, "the adapter moved the rewards: " + p);
        assertEquals(-p.rewardsChosen(), e.metrics().get("eval_rewards/chosen"), 1e-3);
        assertEquals(-p.rewardsRejected(), e.metrics().get("eval_rewards/rejected"), 1e-3);
        assertEquals(-p.margin(), e.metrics().get("eval_rewards/margins"), 1e-3);

        List<String> q = new ArrayList<>(flags("ref-q", "--do_train", "false", "--do_eval", "true", "--val_size", "4",
                "--per_device_eval_batch_size", "4", "--ref_model", model.toString(), "--ref_model_quantization_bit", "4"));
        TrainEvent.Eval eq = of(run(q), TrainEvent.Eval.class).getLast();
        double rc = eq.metrics().get("eval_rewards/chosen");
        assertTrue(rc != 0 && Math.abs(rc) < 0.5, "a 4-bit reference is close to the base: " + eq.metrics());
        var bad = assertThrows(ConfigException.class, () -> TrainConfig.load(null, flags("x", "--ref_model_adapters", adapter.toString())));
        assertTrue(bad.getMessage().contains("ref_model"), bad.getMessage());
        bad = assertThrows(ConfigException.class, () -> TrainConfig.load(null, flags("x", "--ref_model", model.toString(), "--ref_model_quantization_bit", "8")));
        assertTrue(bad.getMessage().contains("ref_model_quantization_bit"), bad.getMessage());
    }

    /// A DPO run stopped after its checkpoint at step 2 and run again resumes there (optimizer, data position and the
    /// cached reference values from the checkpoint) and ends with the same adapter bytes as an uninterrupted run.
    @Test
    void dpoResumesBitIdentically() throws Exception {
        List<String> whole = flags("dpo-whole", "--max_steps", "5", "--save_steps", "2", "--learning_rate", "3e-3", "--num_train_epochs", "3");
        run(whole);
        List<String> cut = new ArrayList<>(flags("dpo-cut", "--max_steps", "5", "--save_steps", "2", "--learning_rate", "3e-3", "--num_train_epochs", "3"));
        var first = new FinetuneRecipe();
        first.run(TrainConfig.load(null, cut), ev -> { if (ev instanceof TrainEvent.CheckpointSaved c && c.step() == 2) first.cancel(); });
        assertTrue(Files.isDirectory(tmp.resolve("dpo-cut/checkpoint-2")));
        assertFalse(Files.exists(tmp.resolve("dpo-cut/adapter_model.safetensors")), "the cancelled run wrote no final adapter");
        cut.remove("--overwrite_output_dir");
        List<TrainEvent> resumed = run(cut);
        assertEquals(2, of(resumed, TrainEvent.Started.class).getFirst().startStep(), "resumed from checkpoint-2");
        assertArrayEquals(Files.readAllBytes(tmp.resolve("dpo-whole/adapter_model.safetensors")),
                Files.readAllBytes(tmp.resolve("dpo-cut/adapter_model.safetensors")), "same adapter bytes as the uninterrupted run");
    }

    /// LLaMA-Factory's own DPO and KTO example YAMLs (test resources llamafactory/, unchanged) run with only the model,
    /// dataset_dir, output_dir, steps and cutoff_len swapped for the bundled model and ../shared's demo data: both train
    /// and write the adapter, trainer_log.jsonl with TRL's metric names, and the loss plots.
    @Test
    void llamaFactoryDpoAndKtoExamplesRun() throws Exception {
        Path lf = Shared.require("data/llamafactory");
        for (String name : List.of("llama3_lora_dpo", "llama3_lora_kto")) {
            Path yaml = Path.of(PreferenceTrainTest.class.getResource("/llamafactory/" + name + ".yaml").toURI());
            Path out = tmp.resolve(name);
            var cfg = TrainConfig.load(yaml, List.of("--model_name_or_path", model.toString(), "--dataset_dir", lf.toString(),
                    "--output_dir", out.toString(), "--max_steps", "2", "--gradient_accumulation_steps", "2", "--cutoff_len", "96",
                    "--logging_steps", "1", "--max_samples", "40", "--gemm", "java"));
            List<TrainEvent> ev = new ArrayList<>();
            new FinetuneRecipe().run(cfg, ev::add);
            assertEquals(2, of(ev, TrainEvent.Step.class).getLast().step(), name);
            assertTrue(Files.exists(out.resolve("adapter_model.safetensors")), name);
            String log = Files.readString(out.resolve("trainer_log.jsonl"));
            // (a KTO window holds desirable or undesirable examples or both: its rewards/chosen or rewards/rejected)
            assertTrue(log.contains("\"rewards/") && log.contains("\"logps/") && log.contains(name.endsWith("dpo") ? "\"rewards/accuracies\"" : "\"kl\""), name + ": " + log);
            assertPng(out.resolve("training_loss.png"));
        }
    }

    /// Stage rm (LLaMA-Factory's reward model): LoRA + value head on the identity pairs (Tiny chosen over Max) reaches
    /// held-out accuracy ≥ 0.9 with the loss below ln 2; the output folder holds the adapter and LLaMA-Factory's
    /// value_head.safetensors (also in the checkpoint), the log has `accuracy` and the eval `eval_accuracy`; the head
    /// read back and applied to the saved adapter's hidden states gives the same rankings. Full tuning trains too.
    @Test
    void rewardModelLearnsTheRanking() throws Exception {
        List<TrainEvent> ev = run(flags("rm", "--stage", "rm", "--val_size", "4", "--learning_rate", "5e-3", "--max_steps", "24",
                "--eval_strategy", "steps", "--eval_steps", "24", "--per_device_eval_batch_size", "4", "--plot_loss", "true", "--save_steps", "24"));
        Path out = tmp.resolve("rm");
        TrainEvent.Eval e = of(ev, TrainEvent.Eval.class).getLast();
        assertTrue(e.metrics().get("eval_accuracy") >= 0.9, "held-out reward accuracy: " + e.metrics());
        assertTrue(e.evalLoss() < Math.log(2), "eval loss below ln 2: " + e.evalLoss());
        for (Path d : List.of(out, out.resolve("checkpoint-24"))) {
            assertTrue(Files.exists(d.resolve("adapter_model.safetensors")), d.toString());
            assertTrue(Files.exists(d.resolve("value_head.safetensors")), d.toString());
        }
        assertTrue(Files.readString(out.resolve("trainer_log.jsonl")).contains("\"accuracy\""));
        assertTrue(Files.readString(out.resolve("all_results.json")).contains("\"eval_accuracy\""));
        assertPng(out.resolve(LossPlot.fileName("accuracy")));
        List<TrainEvent.Step> full = of(run(flags("rm-full", "--stage", "rm", "--finetuning_type", "full", "--learning_rate", "1e-3",
                "--max_steps", "6")), TrainEvent.Step.class);
        assertTrue(full.getLast().loss() < full.getFirst().loss(), "full rm: " + full.getFirst().loss() + " -> " + full.getLast().loss());
        assertTrue(Files.exists(tmp.resolve("rm-full/value_head.safetensors")));
        assertTrue(Files.exists(tmp.resolve("rm-full/model.safetensors")));
    }

    @Test
    void unsupportedPreferenceSetupsAreRefused() {
        var e = assertThrows(ConfigException.class, () -> TrainConfig.load(null, flags("x", "--stage", "kto", "--kto_chosen_weight", "-1")));
        assertTrue(e.getMessage().contains("kto_chosen_weight"), e.getMessage());
        e = assertThrows(ConfigException.class, () -> run(ktoFlags("kto-on-pairs", "--dataset", "pairs")));
        assertTrue(e.getMessage().contains("kto_tag"), e.getMessage());
        e = assertThrows(ConfigException.class, () -> run(flags("x", "--ref_model", tmp.resolve("nowhere").toString())));
        assertTrue(e.getMessage().contains("ref_model"), e.getMessage());
        e = assertThrows(ConfigException.class, () -> TrainConfig.load(null, flags("x", "--pref_loss", "kto_pair")));
        e = assertThrows(ConfigException.class, () -> TrainConfig.load(null, flags("x", "--neftune_noise_alpha", "5")));
        assertTrue(e.getMessage().contains("dpo"), e.getMessage());
        e = assertThrows(ConfigException.class, () -> run(flags("x", "--dataset", "identity_en")));
        assertTrue(e.getMessage().contains("ranking"), e.getMessage());
        e = assertThrows(ConfigException.class, () -> run(flags("y", "--stage", "sft")));
        assertTrue(e.getMessage().contains("preference"), e.getMessage());
    }
}
