package org.peft4j.train.recipe;

import com.fasterxml.jackson.databind.ObjectMapper;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;
import org.peft4j.core.Gemm;
import org.peft4j.core.Gemms;
import org.peft4j.core.Peft4jException.ConfigException;
import org.peft4j.model.Models;
import org.peft4j.model.llama.LlamaModel;
import org.peft4j.testkit.Shared;
import org.peft4j.tokenizer.Tokenizer;
import org.peft4j.train.Evaluation;
import org.peft4j.train.TrainConfig;
import org.peft4j.train.TrainData;
import org.peft4j.train.data.TokenizedExample;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.stream.Stream;

import static org.junit.jupiter.api.Assertions.*;

/// The recipe end to end on the bundled TinyStories-656K: its events, cancellation that a rerun resumes from, a
/// failure reported as an event, continuing training from an adapter, and the before/after comparison checked
/// against [Evaluation] computed here.
class FinetuneRecipeTest {
    /// LlamaModel (inference, one sequence at a time) and TrainModel (training, a padded batch) sum the same token
    /// losses in different orders; their means agree to ~1e-6.
    static final double LOSS_ATOL = 1e-5;
    static final Gemm GEMM = Gemms.get("java");

    static Path model() { return Shared.root().resolve("models/tinystories-656k"); }

    static TrainConfig config(Path out, String... extra) {
        List<String> flags = new ArrayList<>(List.of("--model_name_or_path", model().toString(), "--output_dir", out.toString(),
                "--dataset", "identity_en", "--dataset_dir", Shared.root().resolve("data").toString(), "--template", "default",
                "--cutoff_len", "64", "--per_device_train_batch_size", "2", "--learning_rate", "3e-3", "--logging_steps", "1",
                "--save_steps", "0", "--gemm", "java"));
        flags.addAll(List.of(extra));
        return TrainConfig.load(null, flags);
    }

    record Run(FinetuneRecipe.Result result, List<TrainEvent> events) {
        <T> List<T> of(Class<T> c) { return events.stream().filter(c::isInstance).map(c::cast).toList(); }
    }

    static Run run(TrainConfig cfg) {
        List<TrainEvent> events = new ArrayList<>();
        var r = new FinetuneRecipe().run(cfg, events::add);
        return new Run(r, events);
    }

    static List<String> kinds(List<TrainEvent> events) {
        return events.stream().map(e -> e.getClass().getSimpleName() + (e instanceof TrainEvent.Step s ? s.step()
                : e instanceof TrainEvent.Eval v ? "@" + v.step() : e instanceof TrainEvent.CheckpointSaved c ? "@" + c.step() : "")).toList();
    }

    /// The events come in the documented order, and a step's logged loss is what trainer_log.jsonl holds.
    @Test
    void eventsInOrder(@TempDir Path tmp) throws Exception {
        Run r = run(config(tmp, "--max_steps", "4", "--logging_steps", "2", "--save_steps", "2", "--val_size", "3",
                "--eval_strategy", "steps", "--lora_rank", "4"));
        assertEquals(List.of("Preparing", "Started", "Step1", "Step2", "Eval@2", "CheckpointSaved@2", "Step3", "Step4", "Eval@4", "CheckpointSaved@4", "Finished"),
                kinds(r.events()));
        TrainEvent.Started s = r.of(TrainEvent.Started.class).getFirst();
        assertEquals(4, s.totalSteps());
        assertEquals(0, s.startStep());
        assertEquals(3, s.setup().evalExamples());
        assertEquals(tmp, s.outputDir());
        assertTrue(Files.exists(tmp.resolve("training_args.json")));
        var steps = r.of(TrainEvent.Step.class);
        assertNull(steps.get(0).loggedLoss());
        var log = Files.readAllLines(tmp.resolve("trainer_log.jsonl"));
        double logged = new ObjectMapper().readTree(log.getFirst()).get("loss").asDouble();
        assertEquals(logged, steps.get(1).loggedLoss());
        assertEquals((steps.get(0).loss() + steps.get(1).loss()) / 2, logged, 5e-5, "the mean of the window, rounded to 4 decimals");
        TrainEvent.Finished f = r.of(TrainEvent.Finished.class).getFirst();
        assertSame(r.result(), f.result());
        assertFalse(f.result().train().cancelled());
        assertEquals(r.of(TrainEvent.Eval.class).getLast().evalLoss(), f.result().train().evalLoss(), 1e-12);
    }

    /// cancel() stops the run before its next step: nothing is written after the last checkpoint, which stays complete,
    /// and running the same config again resumes from it to the same adapter bytes as an uninterrupted run.
    @Test
    void cancelLeavesTheLastCheckpointAndARerunResumesFromIt(@TempDir Path tmp) throws Exception {
        String[] flags = {"--max_steps", "8", "--save_steps", "2", "--lora_rank", "4", "--lora_dropout", "0.1"};
        run(config(tmp.resolve("straight"), flags));
        Path out = tmp.resolve("cancelled");
        FinetuneRecipe recipe = new FinetuneRecipe();
        List<TrainEvent> events = new ArrayList<>();
        var result = recipe.run(config(out, flags), e -> {
            events.add(e);
            if (e instanceof TrainEvent.CheckpointSaved c && c.step() == 4) recipe.cancel();
        });
        assertTrue(recipe.isCancelled());
        assertTrue(result.train().cancelled());
        assertEquals(4, result.train().steps());
        assertEquals(List.of("Step1", "Step2", "CheckpointSaved@2", "Step3", "Step4", "CheckpointSaved@4", "Finished"),
                kinds(events).subList(2, events.size()));
        assertFalse(Files.exists(out.resolve("adapter_model.safetensors")), "no final adapter after a cancel");
        assertFalse(Files.exists(out.resolve("all_results.json")));
        assertTrue(Files.exists(out.resolve("checkpoint-4/trainer_state.json")));
        try (Stream<Path> s = Files.list(out)) {
            assertTrue(s.noneMatch(p -> p.getFileName().toString().startsWith(".tmp-")), "no half-written checkpoint");
        }

        Run rerun = run(config(out, flags));
        assertEquals(out.resolve("checkpoint-4"), rerun.of(TrainEvent.Preparing.class).getFirst().resumeFrom());
        assertEquals(4, rerun.of(TrainEvent.Started.class).getFirst().startStep());
        assertEquals(4, rerun.of(TrainEvent.Step.class).size());
        assertArrayEquals(Files.readAllBytes(tmp.resolve("straight/adapter_model.safetensors")), Files.readAllBytes(out.resolve("adapter_model.safetensors")),
                "cancel + resume must end where an uninterrupted run ends");
    }

    @Test
    void aFailureIsAnEventAndTheExceptionIsRethrown(@TempDir Path tmp) {
        List<TrainEvent> events = new ArrayList<>();
        var e = assertThrows(ConfigException.class, () -> new FinetuneRecipe().run(config(tmp, "--dataset", "no_such_dataset"), events::add));
        assertEquals(List.of("Preparing", "Failed"), kinds(events));
        TrainEvent.Failed f = (TrainEvent.Failed) events.getLast();
        assertSame(e, f.error());
        assertTrue(f.message().contains("no_such_dataset"), f.message());
    }

    /// The proof of adapter_name_or_path: the first logged loss of a run continuing an adapter is that adapter's
    /// evaluation loss on the same batch (computed here with the inference engine and the adapter file), not the base's.
    @ParameterizedTest(name = "dora={0}")
    @ValueSource(booleans = {false, true})
    void continuingFromAnAdapterStartsAtItsLoss(boolean dora, @TempDir Path tmp) throws Exception {
        Path adapter = tmp.resolve("adapter");
        run(config(adapter, "--max_steps", "6", "--lora_rank", "4", "--lora_alpha", "8", "--lora_target", "q_proj,v_proj,down_proj",
                "--use_dora", String.valueOf(dora)));
        // 8 examples in one batch of 8: the first step's batch is the whole training set, whatever the shuffle
        TrainConfig cfg = config(tmp.resolve("continued"), "--adapter_name_or_path", adapter.toString(), "--max_samples", "8",
                "--per_device_train_batch_size", "8", "--max_steps", "1");
        Run r = run(cfg);
        TrainEvent.ContinuedAdapter c = r.of(TrainEvent.Started.class).getFirst().setup().adapter();
        assertEquals(4, c.rank(), "rank adopted from the adapter (lora_rank's default is 8)");
        assertEquals(List.of("q_proj", "v_proj", "down_proj"), c.targets());
        assertEquals(dora, c.dora());

        double first = r.of(TrainEvent.Step.class).getFirst().loss();
        double logged = new ObjectMapper().readTree(Files.readAllLines(tmp.resolve("continued/trainer_log.jsonl")).getFirst()).get("loss").asDouble();
        List<TokenizedExample> batch = TrainData.prepare(cfg, Tokenizer.load(model()), model()).train();
        assertEquals(8, batch.size());
        LlamaModel withAdapter = Models.load(model(), GEMM);
        var a = withAdapter.loadAdapter("a", adapter);
        double adapterLoss = Evaluation.evaluate(withAdapter, a, batch).loss();
        double baseLoss = Evaluation.evaluate(Models.load(model(), GEMM), batch).loss();
        assertEquals(adapterLoss, first, LOSS_ATOL, "first step's loss vs the adapter's evaluation loss");
        assertEquals(adapterLoss, logged, 5e-5 + LOSS_ATOL, "trainer_log.jsonl's first loss (4 decimals)");
        assertTrue(Math.abs(baseLoss - first) > 0.1, "the base's loss " + baseLoss + " should differ clearly from the adapter's " + adapterLoss);
        var saved = new ObjectMapper().readTree(tmp.resolve("continued/adapter_config.json").toFile());
        assertEquals(4, saved.get("r").asInt());
        assertEquals(dora, saved.get("use_dora").asBoolean());
    }

    @Test
    void anAdapterContradictedByTheConfigIsRefused(@TempDir Path tmp) {
        Path adapter = tmp.resolve("adapter");
        run(config(adapter, "--max_steps", "1", "--lora_rank", "4"));
        var e = assertThrows(ConfigException.class, () -> run(config(tmp.resolve("b"), "--adapter_name_or_path", adapter.toString(),
                "--lora_rank", "16", "--max_steps", "1")));
        assertTrue(e.getMessage().contains("lora_rank 16 (adapter: r 4)"), e.getMessage());
        e = assertThrows(ConfigException.class, () -> config(tmp.resolve("c"), "--adapter_name_or_path", adapter.toString(), "--finetuning_type", "full"));
        assertTrue(e.getMessage().contains("finetuning_type full"), e.getMessage());
        e = assertThrows(ConfigException.class, () -> config(tmp.resolve("d"), "--adapter_name_or_path", adapter + "," + adapter));
        assertTrue(e.getMessage().contains("several adapters"), e.getMessage());
    }

    @Test
    void doTrainFalseOnlyEvaluates(@TempDir Path tmp) throws Exception {
        var e = assertThrows(ConfigException.class, () -> config(tmp, "--do_train", "false"));
        assertTrue(e.getMessage().contains("nothing to do"), e.getMessage());
        Run r = run(config(tmp, "--do_train", "false", "--do_eval", "true", "--val_size", "3"));
        assertEquals(List.of("Preparing", "Started", "Eval@0", "Finished"), kinds(r.events()));
        assertFalse(Files.exists(tmp.resolve("adapter_model.safetensors")));
        assertTrue(new ObjectMapper().readTree(tmp.resolve("all_results.json").toFile()).has("eval_loss"));
    }

    /// compare_prompts and forgetting_text: the comparison's losses are Evaluation's, computed here on the base and on
    /// the base with the saved adapter (unmerged, where the recipe merges it); training lowers the validation loss.
    @Test
    void comparisonLossesAreTheEvaluationsOfBaseAndAdapter(@TempDir Path tmp) throws Exception {
        Path general = Shared.root().resolve("data/general_stories.txt");
        TrainConfig cfg = config(tmp, "--max_steps", "60", "--per_device_train_batch_size", "4", "--cutoff_len", "96", "--val_size", "3",
                "--lora_rank", "8", "--compare_prompts", "Who are you?|Once upon a time", "--forgetting_text", general.toString());
        Comparison c = run(cfg).result().comparison();
        assertEquals(List.of("Who are you?", "Once upon a time"), c.answers().stream().map(Comparison.Answer::prompt).toList());
        assertNotEquals(c.answers().getFirst().before(), c.answers().getFirst().after());

        Tokenizer tok = Tokenizer.load(model());
        List<TokenizedExample> texts = Evaluation.texts(Files.readAllLines(general), s -> tok.encode(s, true));
        List<TokenizedExample> val = TrainData.prepare(cfg, tok, model()).eval();
        LlamaModel base = Models.load(model(), GEMM);
        LlamaModel tuned = Models.load(model(), GEMM);
        var t = tuned.loadAdapter("t", tmp);
        assertEquals(Evaluation.evaluate(base, texts).loss(), c.generalBefore().loss(), LOSS_ATOL);
        assertEquals(Evaluation.evaluate(tuned, t, texts).loss(), c.generalAfter().loss(), LOSS_ATOL);
        assertEquals(Evaluation.evaluate(base, val).loss(), c.validationBefore().loss(), LOSS_ATOL);
        assertEquals(Evaluation.evaluate(tuned, t, val).loss(), c.validationAfter().loss(), LOSS_ATOL);
        assertEquals(Math.exp(c.generalAfter().loss()), c.generalAfter().perplexity(), 1e-9);
        assertTrue(c.validationAfter().loss() < c.validationBefore().loss() / 2,
                "validation loss should fall: " + c.validationBefore().loss() + " -> " + c.validationAfter().loss());
        assertNotEquals(c.generalBefore().loss(), c.generalAfter().loss(), 1e-3);
    }

    /// transformers saves at the last step too: checkpoint-N of the final step exists, and a later run of the same
    /// output_dir with more max_steps continues from it (LLaMA-Factory users extend runs this way).
    @Test
    void theLastStepIsCheckpointedAndALongerRunContinuesFromIt(@TempDir Path tmp) throws Exception {
        Path out = tmp.resolve("out");
        Run first = run(config(out, "--max_steps", "2", "--save_steps", "2", "--lora_rank", "4"));
        assertEquals(List.of(2L), first.of(TrainEvent.CheckpointSaved.class).stream().map(TrainEvent.CheckpointSaved::step).toList());
        assertTrue(Files.exists(out.resolve("checkpoint-2/adapter_model.safetensors")));
        Run longer = run(config(out, "--max_steps", "4", "--save_steps", "2", "--lora_rank", "4"));
        assertEquals(out.resolve("checkpoint-2"), longer.of(TrainEvent.Preparing.class).getFirst().resumeFrom());
        assertEquals(2, longer.of(TrainEvent.Started.class).getFirst().startStep());
        assertEquals(List.of(3L, 4L), longer.of(TrainEvent.Step.class).stream().map(TrainEvent.Step::step).toList());
        assertTrue(Files.exists(out.resolve("checkpoint-4")));
        var e = assertThrows(ConfigException.class, () -> run(config(out, "--max_steps", "3", "--save_steps", "2", "--lora_rank", "4")));
        assertTrue(e.getMessage().contains("checkpoint-4 is at step 4, past this run's 3 steps; raise max_steps"), e.getMessage());
        Path partial = Files.createDirectories(tmp.resolve("partial/checkpoint-9"));
        e = assertThrows(ConfigException.class, () -> run(config(out, "--max_steps", "4", "--resume_from_checkpoint", partial.toString())));
        assertTrue(e.getMessage().contains("has no trainer_state.json, so it is not a complete checkpoint"), e.getMessage());
    }

    /// Full and freeze tuning write a folder that loads as a model: weights, the tokenizer files, and (the bundled model
    /// having no chat template) the training template as Jinja, whose prompt ids are the named template's; the LoRA
    /// adapter and every checkpoint get the tokenizer files too, as LLaMA-Factory's trainer saves its tokenizer.
    @ParameterizedTest
    @ValueSource(strings = {"full", "freeze", "lora"})
    void savedFoldersCarryTheTokenizerAndChatTemplate(String type, @TempDir Path tmp) throws Exception {
        Path out = tmp.resolve(type);
        run(config(out, "--finetuning_type", type, "--max_steps", "1", "--save_steps", "1", "--freeze_trainable_layers", "1"));
        for (Path dir : List.of(out, out.resolve("checkpoint-1"))) {
            for (String f : List.of("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"))
                assertTrue(Files.exists(dir.resolve(f)), dir + "/" + f);
            assertTrue(TrainData.hasChatTemplate(dir), dir + " has a chat template");
        }
        // the saved Jinja renders what training rendered (token ids may differ at slot boundaries: LLaMA-Factory encodes
        // each slot alone, a chat template's text is encoded whole)
        var messages = List.of(new org.peft4j.template.ChatMessage("user", "Who are you?"), new org.peft4j.template.ChatMessage("assistant", "Tiny."));
        var saved = org.peft4j.template.ChatTemplate.fromTokenizerConfig(out.resolve("tokenizer_config.json"));
        assertEquals(org.peft4j.train.data.SlotTemplate.named("default").render(org.peft4j.train.data.Conversation.of("", "Who are you?", "Tiny."),
                "<|start_story|>", "<|end_story|>"), saved.render(messages, false), "the saved chat template is the training template");
        if (!type.equals("lora")) {
            assertEquals(Models.loadWeights(model()).config, Models.loadWeights(out).config);
            assertTrue(Files.exists(out.resolve("generation_config.json")));
        }
    }

    /// template unset: the model's own chat template when it has one, else `empty` (LLaMA-Factory's
    /// get_template_and_fix_tokenizer); an unknown name says so, lists the names and what unset does.
    @Test
    void anUnsetTemplateIsTheModelsOwnElseEmpty(@TempDir Path tmp) throws Exception {
        TrainConfig plain = TrainConfig.load(null, List.of("--model_name_or_path", model().toString(), "--output_dir", tmp.toString(), "--dataset", "x"));
        assertNull(plain.str("template"));
        assertEquals("empty", TrainData.template(plain.args().data(), model()).name());
        Path withTemplate = copyModel(tmp.resolve("chat"));
        var om = new ObjectMapper();
        var tc = (com.fasterxml.jackson.databind.node.ObjectNode) om.readTree(withTemplate.resolve("tokenizer_config.json").toFile());
        tc.put("chat_template", "{% for message in messages %}{{ '[' + message['role'] + ']' + message['content'] + '\\n' }}{% endfor %}");
        Files.writeString(withTemplate.resolve("tokenizer_config.json"), om.writeValueAsString(tc));
        var t = TrainData.template(plain.args().data(), withTemplate);
        assertEquals("model", t.name());
        var turns = t.encodeMultiturn(TrainData.encoder(Tokenizer.load(withTemplate)), org.peft4j.train.data.Conversation.of("", "Q", "A"));
        assertArrayEquals(Tokenizer.load(withTemplate).encode("[user]Q\n[assistant]", false), turns.getFirst().prompt());
        assertArrayEquals(Tokenizer.load(withTemplate).encode("A\n", false), turns.getFirst().response());
        var e = assertThrows(ConfigException.class, () -> org.peft4j.train.data.SlotTemplate.named("nosuch"));
        assertTrue(e.getMessage().contains("llama3") && e.getMessage().contains("empty when the model has none"), e.getMessage());
    }

    /// LLaMA-Factory only truncates at cutoff_len; peft4j stays within the model's context and says so, naming
    /// cutoff_len and the longest example correctly; a cutoff_len beyond the context whose examples fit trains.
    @Test
    void examplesLongerThanTheContextAreRefusedNamingCutoffLen(@TempDir Path tmp) throws Exception {
        Path small = copyModel(tmp.resolve("ctx32"));
        Path cfg = small.resolve("config.json");
        Files.writeString(cfg, Files.readString(cfg).replace("\"max_position_embeddings\": 512", "\"max_position_embeddings\": 32"));
        var e = assertThrows(ConfigException.class, () -> run(config(tmp.resolve("a"), "--model_name_or_path", small.toString(),
                "--cutoff_len", "2048", "--max_steps", "1")));
        assertTrue(e.getMessage().contains("after cutoff_len 2048") && e.getMessage().contains("max_position_embeddings 32")
                && e.getMessage().contains("set cutoff_len to 32 or less"), e.getMessage());
        Run fits = run(config(tmp.resolve("b"), "--model_name_or_path", small.toString(), "--cutoff_len", "32", "--max_steps", "1"));
        assertEquals(1, fits.of(TrainEvent.Step.class).size());
    }

    static Path copyModel(Path to) throws Exception {
        Files.createDirectories(to);
        try (Stream<Path> s = Files.list(model())) {
            for (Path p : s.toList()) Files.copy(p, to.resolve(p.getFileName()));
        }
        return to;
    }
    /// overwrite_output_dir never deletes what a resume needs (issue 17, item 1): with an explicit
    /// resume_from_checkpoint it resumes from it and ends where an uninterrupted run ends; without one it starts over
    /// and moves the old checkpoints into previous-run-1/. save_total_limit 0 keeps every checkpoint (item 3).
    @Test
    void overwriteOutputDirKeepsTheCheckpointsAResumeNeeds(@TempDir Path tmp) throws Exception {
        String[] flags = {"--max_steps", "3", "--save_steps", "1", "--lora_rank", "4", "--save_total_limit", "0"};
        run(config(tmp.resolve("straight"), flags));
        Path out = tmp.resolve("out");
        run(config(out, "--max_steps", "2", "--save_steps", "1", "--lora_rank", "4", "--save_total_limit", "0"));
        assertTrue(Files.isDirectory(out.resolve("checkpoint-1")) && Files.isDirectory(out.resolve("checkpoint-2")), "save_total_limit 0 keeps all");
        Run explicit = run(config(out, concat(flags, "--overwrite_output_dir", "true", "--resume_from_checkpoint", out.resolve("checkpoint-1").toString())));
        assertEquals(1, explicit.of(TrainEvent.Started.class).getFirst().startStep());
        assertTrue(Files.isDirectory(out.resolve("checkpoint-3")));
        assertArrayEquals(Files.readAllBytes(tmp.resolve("straight/adapter_model.safetensors")), Files.readAllBytes(out.resolve("adapter_model.safetensors")));
        Run again = run(config(out, concat(flags, "--overwrite_output_dir", "true")));
        assertEquals(0, again.of(TrainEvent.Started.class).getFirst().startStep());
        for (int step = 1; step <= 3; step++) assertTrue(Files.exists(out.resolve("previous-run-1/checkpoint-" + step + "/trainer_state.json")));
        assertTrue(Files.exists(out.resolve("previous-run-1/trainer_log.jsonl")));
    }

    /// A folder left by a run killed before its first checkpoint is started afresh by the same command (item 10); a
    /// file, or a folder holding something else, is refused unless overwrite_output_dir is set (items 4 and 9).
    @Test
    void outputDirRules(@TempDir Path tmp) throws Exception {
        Path killed = Files.createDirectories(tmp.resolve("killed/.tmp-checkpoint-1"));
        Files.writeString(killed.resolveSibling("training_args.json"), "{}");
        Files.writeString(killed.resolveSibling("trainer_log.jsonl"), "{}\n");
        assertNull(FinetuneRecipe.prepareOutputDir(config(tmp.resolve("killed")), config(tmp.resolve("killed")).args().output()));
        assertFalse(Files.exists(killed), "the half-written checkpoint is removed");
        assertFalse(Files.exists(killed.resolveSibling("trainer_log.jsonl")), "the stale log is removed");
        // killed while writing training_args.json (Checkpoint.writeAtomically's temporary is left): started afresh too
        Path early = Files.createDirectories(tmp.resolve("early"));
        Files.writeString(early.resolve(".training_args.json.tmp"), "{\"stage");
        assertNull(FinetuneRecipe.prepareOutputDir(config(early), config(early).args().output()));
        assertFalse(Files.exists(early.resolve(".training_args.json.tmp")));

        var uri = assertThrows(ConfigException.class, () -> new FinetuneRecipe().run(config(tmp.resolve("u")).with("output_dir", "hdfs://nn:8020/runs/a"), ev -> {}));
        assertTrue(uri.getMessage().contains("only a run on Spark"), uri.getMessage());

        Path file = Files.writeString(tmp.resolve("a-file"), "x");
        var e = assertThrows(ConfigException.class, () -> FinetuneRecipe.prepareOutputDir(config(file), config(file).args().output()));
        assertTrue(e.getMessage().contains("is a file, not a folder"), e.getMessage());

        Path other = Files.createDirectories(tmp.resolve("other"));
        Files.writeString(other.resolve("notes.txt"), "mine");
        e = assertThrows(ConfigException.class, () -> FinetuneRecipe.prepareOutputDir(config(other), config(other).args().output()));
        assertTrue(e.getMessage().contains("holds no checkpoint") && e.getMessage().contains("overwrite_output_dir"), e.getMessage());
        TrainConfig over = config(other, "--overwrite_output_dir", "true");
        assertNull(FinetuneRecipe.prepareOutputDir(over, over.args().output()));
        assertEquals("mine", Files.readString(other.resolve("notes.txt")), "overwrite deletes nothing");
        Path done = Files.createDirectories(tmp.resolve("done/checkpoint-4"));
        Files.writeString(done.resolve("trainer_state.json"), "{}");
        TrainConfig resumed = config(done.getParent());
        assertEquals(done, FinetuneRecipe.prepareOutputDir(resumed, resumed.args().output()));
        assertEquals(done.toString(), resumed.str("resume_from_checkpoint"));
    }

    /// A tokenizer.json added token whose id is past the model's vocab_size is refused before training, naming both
    /// numbers (issue 17, item 5), instead of an index error in the embedding.
    @Test
    void anAddedTokenPastTheVocabularyIsRefused(@TempDir Path tmp) throws Exception {
        Path m = Files.createDirectories(tmp.resolve("model"));
        try (Stream<Path> s = Files.list(model())) {
            for (Path f : s.toList()) Files.copy(f, m.resolve(f.getFileName()));
        }
        var om = new ObjectMapper();
        var tj = (com.fasterxml.jackson.databind.node.ObjectNode) om.readTree(m.resolve("tokenizer.json").toFile());
        tj.withArray("added_tokens").addObject().put("id", 5000).put("content", "<tool>").put("special", true);
        om.writeValue(m.resolve("tokenizer.json").toFile(), tj);
        TrainConfig cfg = config(tmp.resolve("out"), "--max_steps", "1", "--model_name_or_path", m.toString());
        var e = assertThrows(ConfigException.class, () -> run(cfg));
        assertTrue(e.getMessage().contains("has ids up to 5000 ('<tool>'), but the model's vocab_size in config.json is 2048"), e.getMessage());
    }

    /// lora_rank 100000 is refused from the memory estimate, with the numbers, before anything is allocated (item 5).
    @Test
    void aRunThatCannotFitInMemoryIsRefusedBeforeAllocating(@TempDir Path tmp) {
        var e = assertThrows(ConfigException.class, () -> run(config(tmp.resolve("out"), "--max_steps", "1", "--lora_rank", "100000")));
        assertTrue(e.getMessage().startsWith("this run needs about ") && e.getMessage().contains("GiB this JVM may use; lower lora_rank (100000)"), e.getMessage());
    }

    private static String[] concat(String[] a, String... b) {
        return Stream.concat(Stream.of(a), Stream.of(b)).toArray(String[]::new);
    }
}
