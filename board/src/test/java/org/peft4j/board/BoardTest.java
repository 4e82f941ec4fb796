package org.peft4j.board;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.MethodOrderer;
import org.junit.jupiter.api.Order;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestInstance;
import org.junit.jupiter.api.TestMethodOrder;
import org.junit.jupiter.api.io.TempDir;
import org.peft4j.core.Gemms;
import org.peft4j.model.LlamaConfig;
import org.peft4j.model.Models;
import org.peft4j.model.adapter.LoadedAdapter;
import org.peft4j.model.generate.GenerateRequest;
import org.peft4j.model.generate.Sampler;
import org.peft4j.model.llama.LlamaModel;
import org.peft4j.template.ChatMessage;
import org.peft4j.testkit.Shared;
import org.peft4j.tokenizer.Tokenizer;
import org.peft4j.train.Checkpoint;
import org.peft4j.train.Evaluation;
import org.peft4j.train.TrainConfig;
import org.peft4j.train.TrainData;
import org.peft4j.train.estimate.MemoryEstimate;
import org.peft4j.train.generate.ChatPrompt;
import org.peft4j.train.generate.Completion;
import org.peft4j.train.generate.TextStream;

import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.*;

/// The server side of every form action, over HTTP on loopback with the bundled model: the form, the preview against
/// the CLI's own resolution, arguments saved and loaded, field errors, the roots, the origin checks, datasets,
/// the estimate, a run started, aborted and resumed (with a second job queued behind it), the runs list, evaluation,
/// chat and export — each result checked against the library computing the same thing another way.
@TestInstance(TestInstance.Lifecycle.PER_CLASS)
@TestMethodOrder(MethodOrderer.OrderAnnotation.class)
class BoardTest {
    private static final ObjectMapper JSON = new ObjectMapper();
    /// Logits of the merged export against the unmerged base + adapter: float32 sums in another order.
    private static final double MERGE_TOLERANCE = 1e-4;

    Path tmp, root, saves, model;
    Board board;
    HttpClient http = HttpClient.newHttpClient();

    @BeforeAll
    void start(@TempDir Path tmp) {
        this.tmp = tmp;
        root = Shared.root();
        model = root.resolve("models/tinystories-656k");
        saves = tmp.resolve("saves");
        board = Board.start(new BoardConfig("127.0.0.1", 0, saves, root.resolve("data"), List.of(root.resolve("models")), model, null, "java"));
    }

    @AfterAll
    void stop() { board.close(); }

    /// A small run of the bundled model: identity_en, 12 steps, a checkpoint every 4.
    ObjectNode run(String outputDir) {
        ObjectNode v = JSON.createObjectNode().put("model_name_or_path", "tinystories-656k").put("dataset", "identity_en").put("template", "default")
                .put("cutoff_len", "64").put("max_samples", "8").put("max_steps", "12").put("per_device_train_batch_size", "2")
                .put("learning_rate", "0.01").put("logging_steps", "2").put("save_steps", "4").put("lora_rank", "4").put("output_dir", outputDir)
                .put("gemm", "java");
        ObjectNode body = JSON.createObjectNode();
        body.set("values", v);
        return body;
    }

    record Reply(int status, JsonNode body) {}

    Reply post(String path, JsonNode body, String... headers) throws Exception {
        var b = HttpRequest.newBuilder(URI.create("http://127.0.0.1:" + board.port() + path)).header("Content-Type", "application/json")
                .POST(HttpRequest.BodyPublishers.ofString(body.toString()));
        for (int i = 0; i < headers.length; i += 2) b.header(headers[i], headers[i + 1]);
        HttpResponse<String> r = http.send(b.build(), HttpResponse.BodyHandlers.ofString());
        return new Reply(r.statusCode(), r.body().startsWith("{") || r.body().startsWith("[") ? JSON.readTree(r.body()) : null);
    }

    JsonNode get(String path) throws Exception {
        HttpResponse<String> r = http.send(HttpRequest.newBuilder(URI.create("http://127.0.0.1:" + board.port() + path)).build(), HttpResponse.BodyHandlers.ofString());
        assertEquals(200, r.statusCode(), r.body());
        return JSON.readTree(r.body());
    }

    static void assertFieldError(Reply r, int status, String field, String text) {
        assertEquals(status, r.status(), String.valueOf(r.body()));
        assertEquals(field, r.body().path("field").isNull() ? null : r.body().path("field").asText(), r.body().toString());
        assertTrue(r.body().get("error").asText().contains(text), r.body().toString());
    }

    @Test @Order(1)
    void theFormHasEveryKeyWithItsDefaultAndHelp() throws Exception {
        JsonNode form = get("/api/form");
        List<String> names = new ArrayList<>();
        for (JsonNode g : form.get("groups")) for (JsonNode f : g.get("fields")) {
            names.add(f.get("name").asText());
            TrainConfig.Key k = TrainConfig.KEYS.get(f.get("name").asText());
            assertEquals(k.help(), f.get("help").asText());
            assertEquals(k.type().name().toLowerCase(), f.get("type").asText());
        }
        List<String> expected = new ArrayList<>(TrainConfig.KEYS.keySet());
        expected.remove("evaluation_strategy");   // the old alias of eval_strategy
        assertEquals(expected.stream().sorted().toList(), names.stream().sorted().toList());
        assertEquals("tinystories-656k", get("/api/info").get("default_model").asText());
    }

    @Test @Order(2)
    void previewEqualsTheCliResolution() throws Exception {
        Reply r = post("/api/preview", run("preview-run"));
        assertEquals(200, r.status(), String.valueOf(r.body()));
        String resolved = r.body().get("resolved").asText();
        Path yaml = tmp.resolve("preview.yaml");
        Files.writeString(yaml, r.body().get("yaml").asText());
        assertEquals(resolved, TrainConfig.load(yaml, List.of()).toJson(), "the YAML resolves as the board did");
        List<String> args = new ArrayList<>();
        r.body().get("args").forEach(a -> args.add(a.asText()));
        assertEquals(List.of("./peft4j", "train"), args.subList(0, 2));
        assertEquals(resolved, TrainConfig.load(null, args.subList(2, args.size())).toJson(), "the command line resolves as the board did");
        assertEquals(String.join(" ", args), r.body().get("command").asText(), "no argument needed quoting");
        JsonNode cfg = JSON.readTree(resolved);
        assertEquals(saves.resolve("preview-run").toString(), cfg.get("output_dir").asText());
        assertEquals(model.toString(), cfg.get("model_name_or_path").asText());
        assertEquals(0.01, cfg.get("learning_rate").asDouble());
    }

    @Test @Order(3)
    void argumentsAreSavedAndLoadedAsYaml() throws Exception {
        ObjectNode body = run("saved-run");
        body.put("path", "args/mine.yaml");
        Reply s = post("/api/args/save", body);
        assertEquals(200, s.status(), String.valueOf(s.body()));
        assertTrue(Files.readString(saves.resolve("args/mine.yaml")).contains("learning_rate: 0.01"));
        Reply l = post("/api/args/load", JSON.createObjectNode().put("path", "args/mine.yaml"));
        assertEquals(200, l.status(), String.valueOf(l.body()));
        JsonNode v = l.body().get("values");
        assertEquals("tinystories-656k", v.get("model_name_or_path").asText(), "paths come back relative to their root");
        assertEquals("saved-run", v.get("output_dir").asText());
        assertEquals("12", v.get("max_steps").asText());
        assertEquals("0.01", v.get("learning_rate").asText());
        assertFieldError(post("/api/args/load", JSON.createObjectNode().put("path", "args/none.yaml")), 400, "config_path", "no arguments file");
        body.put("path", "../outside.yaml");
        assertFieldError(post("/api/args/save", body), 400, "config_path", "outside the saves folder");
    }

    @Test @Order(4)
    void badValuesGetTheCliMessageOnTheirField() throws Exception {
        ObjectNode b = run("bad");
        ((ObjectNode) b.get("values")).put("learning_rate", "fast");
        assertFieldError(post("/api/preview", b), 400, "learning_rate", "'learning_rate' must be a number, got 'fast'");
        b = run("bad");
        ((ObjectNode) b.get("values")).put("lora_dropout", "1.5");
        assertFieldError(post("/api/train/start", b), 400, "lora_dropout", "lora_dropout must be in [0, 1), got 1.5");
        b = run("bad");
        ((ObjectNode) b.get("values")).put("optim", "adafactor");
        assertFieldError(post("/api/preview", b), 400, "optim", "optim 'adafactor' is not supported yet");
        b = run("bad");
        ((ObjectNode) b.get("values")).put("learning_rat", "1");
        assertFieldError(post("/api/preview", b), 400, "learning_rate", "unknown key 'learning_rat' (did you mean 'learning_rate'?)");
        b = run("bad");
        ((ObjectNode) b.get("values")).remove("dataset");
        assertFieldError(post("/api/preview", b), 400, "dataset", "'dataset' is required");
    }

    @Test @Order(5)
    void pathsOutsideTheRootsAreRefused() throws Exception {
        for (String[] c : new String[][] {{"output_dir", "../escape", "outside the saves folder"}, {"output_dir", "/etc/peft4j", "outside the saves folder"},
                {"model_name_or_path", "/etc", "outside the model folders"}, {"model_name_or_path", "../../..", "no model folder"},
                {"dataset_dir", "../..", "outside the data folder"}, {"forgetting_text", "/etc/passwd", "outside the data folder"},
                {"adapter_name_or_path", "../../x", "outside the saves folder"}}) {
            ObjectNode b = run("paths");
            ((ObjectNode) b.get("values")).put(c[0], c[1]);
            assertFieldError(post("/api/preview", b), 400, c[0], c[2]);
        }
        Files.createDirectories(saves);
        Files.createSymbolicLink(saves.resolve("link-out"), tmp);   // a link inside the saves folder that leads out
        ObjectNode b = run("link-out/run");
        assertFieldError(post("/api/preview", b), 400, "output_dir", "links outside the saves folder");
        assertFieldError(post("/api/export", JSON.createObjectNode().put("model", "tinystories-656k").put("export_dir", "../../tmp/x")), 400, "export_dir", "outside");
        assertFieldError(post("/api/evaluate", JSON.createObjectNode().put("model", "tinystories-656k").put("text", "../pom.xml")), 400, "text", "outside the data folder");
    }

    @Test @Order(6)
    void stateChangesFromAnotherOriginAreRefused() throws Exception {
        String host = "127.0.0.1:" + board.port();
        assertFieldError(post("/api/train/start", run("x"), "Origin", "http://evil.example"), 403, null, "cross-origin request from http://evil.example refused");
        assertFieldError(post("/api/train/start", run("x"), "Sec-Fetch-Site", "cross-site"), 403, null, "cross-site request");
        assertEquals(400, post("/api/preview", JSON.createObjectNode().put("x", 1), "Origin", "http://" + host, "Sec-Fetch-Site", "same-origin").status(),
                "the page's own origin passes the check (and gets the body's error)");
        var plain = HttpRequest.newBuilder(URI.create("http://" + host + "/api/train/start")).header("Content-Type", "text/plain")
                .POST(HttpRequest.BodyPublishers.ofString(run("x").toString())).build();
        assertEquals(415, http.send(plain, HttpResponse.BodyHandlers.ofString()).statusCode(), "a form post (no CORS preflight) is refused");
        assertTrue(board.jobs().jobs().isEmpty(), "nothing was queued");
        // java.net.http does not let a request set Host; a raw socket does
        try (var s = new java.net.Socket("127.0.0.1", board.port())) {
            s.getOutputStream().write("GET /api/runs HTTP/1.1\r\nHost: attacker.example\r\nConnection: close\r\n\r\n".getBytes(StandardCharsets.US_ASCII));
            String status = new BufferedReader(new InputStreamReader(s.getInputStream())).readLine();
            assertTrue(status.contains(" 403 "), "a rebound Host name is refused: " + status);
        }
    }

    @Test @Order(7)
    void datasetsAndTheirPreviewAsTrainingEncodesThem() throws Exception {
        JsonNode sets = get("/api/datasets?dataset_dir=.");
        List<String> names = new ArrayList<>();
        sets.forEach(s -> names.add(s.get("name").asText()));
        assertTrue(names.containsAll(List.of("identity_en", "identity_dpo_en")), names.toString());
        ObjectNode body = run("p");
        body.put("rows", 2);
        Reply r = post("/api/datasets/preview", body);
        assertEquals(200, r.status(), String.valueOf(r.body()));
        JsonNode rows = r.body().get("datasets").get(0).get("rows");
        assertEquals(2, rows.size());
        // the token counts are those of the examples training builds (prompt masked, response learned)
        TrainConfig c = TrainConfig.load(null, List.of("--model_name_or_path", model.toString(), "--dataset", "identity_en", "--dataset_dir",
                root.resolve("data").toString(), "--template", "default", "--cutoff_len", "64", "--max_samples", "2", "--output_dir", "-"));
        var examples = TrainData.prepare(c, Tokenizer.load(model), model).train();
        for (int i = 0; i < 2; i++) {
            JsonNode turn = rows.get(i).get("turns").get(0);
            var e = examples.get(i);
            assertEquals(e.length(), turn.get("prompt_tokens").asInt() + turn.get("response_tokens").asInt());
            assertEquals(e.trainedCount(), turn.get("response_tokens").asInt());
            assertTrue(turn.get("prompt").asText().contains("Human: "), turn.toString());
        }
        assertFieldError(post("/api/datasets/preview", JSON.createObjectNode().put("rows", 2).set("values",
                ((ObjectNode) run("p").get("values")).put("dataset", "nope"))), 400, "dataset", "nope");
    }

    @Test @Order(8)
    void theEstimateIsMemoryEstimatesAndWarnsWhenItDoesNotFit() throws Exception {
        Reply r = post("/api/estimate", run("e"));
        assertEquals(200, r.status(), String.valueOf(r.body()));
        int seq = r.body().get("seq").asInt();
        assertTrue(seq > 2 && seq <= 64, "the planned length is the longest example within cutoff_len: " + seq);
        var args = TrainConfig.load(null, List.of("--model_name_or_path", model.toString(), "--dataset", "identity_en", "--lora_rank", "4", "--output_dir", "-")).args();
        MemoryEstimate e = MemoryEstimate.estimate(LlamaConfig.read(model.resolve("config.json")), args.finetuning().method(), false, 2, seq, false, "adamw_torch", 64, true);
        assertEquals(e.total(), r.body().get("total").asLong());
        assertTrue(r.body().get("fits").asBoolean());
        ObjectNode big = run("e");
        ((ObjectNode) big.get("values")).put("per_device_train_batch_size", "30000");
        Reply w = post("/api/estimate", big);
        assertFalse(w.body().path("fits").asBoolean(true), w.body().toString());
        assertTrue(w.body().get("warning").asText().contains("over this board's heap limit"), w.body().toString());
        ((ObjectNode) big.get("values")).put("per_device_train_batch_size", "200000");
        assertFieldError(post("/api/estimate", big), 400, "per_device_train_batch_size", "more than one Java array holds");
    }

    /// Waits for an event of `type` (and `status` for job events) on a page's event stream.
    static JsonNode await(BlockingQueue<String> events, String type, String status, int minStep) throws Exception {
        long end = System.nanoTime() + TimeUnit.SECONDS.toNanos(120);
        while (System.nanoTime() < end) {
            String s = events.poll(1, TimeUnit.SECONDS);
            if (s == null) continue;
            JsonNode e = JSON.readTree(s);
            if (!e.get("type").asText().equals(type)) continue;
            if (status != null && !e.path("job").path("status").asText().equals(status)) continue;
            if (e.path("step").asInt(0) < minStep) continue;
            return e;
        }
        return fail("no " + type + " " + status + " event within 120 s");
    }

    @Test @Order(9)
    void aRunStartsQueuesAbortsResumesAndIsListed() throws Exception {
        BlockingQueue<String> events = board.jobs().subscribe();
        try {
            assertEquals("snapshot", JSON.readTree(events.take()).get("type").asText());
            Reply s = post("/api/train/start", run("runs/a"));
            assertEquals(200, s.status(), String.valueOf(s.body()));
            Reply q = post("/api/train/start", run("runs/b"));
            assertEquals("queued", q.body().get("status").asText(), "one job at a time: the second waits");
            assertFieldError(post("/api/train/start", run("runs/b")), 409, "output_dir", "already queued");
            assertEquals("queued", find(get("/api/runs"), "runs/b").get("status").asText(), "the runs list shows the queue");
            assertEquals(200, post("/api/train/abort", JSON.createObjectNode().put("run", "runs/b")).status());
            await(events, "step", null, 5);
            // a page loading now sees the running job with its curve so far
            JsonNode snap = board.jobs().snapshot().get("current");
            assertEquals("runs/a", snap.get("run").asText());
            assertTrue(snap.get("losses").size() >= 5, snap.toString());
            assertEquals(200, post("/api/train/abort", JSON.createObjectNode().put("run", "runs/a")).status());
            await(events, "job", "aborted", 0);
            Path dir = saves.resolve("runs/a");
            long stoppedAt = Long.parseLong(Checkpoint.last(dir).getFileName().toString().substring(Checkpoint.PREFIX.length()));
            assertTrue(stoppedAt >= 4, "a checkpoint was kept: " + stoppedAt);
            assertTrue(Files.readString(dir.resolve(Jobs.STATUS_FILE)).contains("\"aborted\""));
            JsonNode listed = find(get("/api/runs"), "runs/a");
            assertEquals("aborted", listed.get("status").asText());

            assertEquals(200, post("/api/train/resume", JSON.createObjectNode().put("run", "runs/a")).status());
            JsonNode started = await(events, "log", null, 0);
            while (!started.get("line").asText().startsWith("resumed at step")) started = await(events, "log", null, 0);
            assertEquals("resumed at step " + stoppedAt + " of 12", started.get("line").asText());
            JsonNode curve = board.jobs().snapshot().get("current").get("losses");
            assertEquals(2, curve.get(0).get(0).asInt(), "the resumed job's curve starts with the steps logged before the abort: " + curve);
            await(events, "job", "finished", 0);
            listed = find(get("/api/runs"), "runs/a");
            assertEquals("finished", listed.get("status").asText());
            assertTrue(listed.get("has_adapter").asBoolean());
            assertEquals(6, listed.get("losses").size(), "trainer_log.jsonl's loss every 2 of 12 steps: " + listed.get("losses"));
            assertEquals(0.01, listed.get("config").get("learning_rate").asDouble());
            assertEquals("aborted", find(get("/api/runs"), "runs/b").path("status").asText("aborted"), "b never ran");
        } finally {
            board.jobs().unsubscribe(events);
        }
    }

    @Test @Order(10)
    void aFailedRunIsListedWithItsError() throws Exception {
        BlockingQueue<String> events = board.jobs().subscribe();
        try {
            ObjectNode b = run("runs/failing");
            // a dataset that dataset_info.json does not name: valid as a key value, refused when the run loads its data
            ((ObjectNode) b.get("values")).put("dataset", "no_such_dataset");
            assertEquals(200, post("/api/train/start", b).status());
            JsonNode e = await(events, "job", "failed", 0);
            assertTrue(e.get("job").get("error").asText().contains("no_such_dataset"), e.toString());
            JsonNode listed = find(get("/api/runs"), "runs/failing");
            assertEquals("failed", listed.get("status").asText());
            assertTrue(listed.get("error").asText().contains("no_such_dataset"));
        } finally {
            board.jobs().unsubscribe(events);
        }
    }

    static JsonNode find(JsonNode runs, String name) {
        for (JsonNode r : runs) if (r.get("run").asText().equals(name)) return r;
        return JSON.createObjectNode();
    }

    @Test @Order(11)
    void chatStreamsWhatTheGeneratorAnswers() throws Exception {
        String body = JSON.createObjectNode().put("model", "tinystories-656k").put("adapter", "runs/a").put("template", "default")
                .put("max_new_tokens", "24").set("messages", JSON.readTree("[{\"role\": \"user\", \"content\": \"Who are you?\"}]")).toString();
        HttpResponse<java.util.stream.Stream<String>> r = http.send(HttpRequest.newBuilder(URI.create("http://127.0.0.1:" + board.port() + "/api/chat"))
                .header("Content-Type", "application/json").POST(HttpRequest.BodyPublishers.ofString(body)).build(), HttpResponse.BodyHandlers.ofLines());
        assertEquals(200, r.statusCode());
        assertTrue(r.headers().firstValue("Content-Type").orElse("").startsWith("text/event-stream"));
        StringBuilder text = new StringBuilder();
        int pieces = 0;
        JsonNode done = null;
        for (String line : (Iterable<String>) r.body()::iterator) {
            if (!line.startsWith("data: ")) continue;
            JsonNode e = JSON.readTree(line.substring(6));
            if (e.has("text")) { text.append(e.get("text").asText()); pieces++; }
            if (e.has("done")) { done = e; break; }
        }
        assertNotNull(done);
        // the same answer from the one-sequence generator, without the engine's batching
        LlamaModel m = Models.load(model, Gemms.get("java"));
        Tokenizer tok = Tokenizer.load(model);
        ChatPrompt p = ChatPrompt.of("default", tok, model);
        LoadedAdapter a = LoadedAdapter.read("a", saves.resolve("runs/a"), m.config);
        int[] stopIds = java.util.stream.IntStream.concat(java.util.stream.IntStream.of(tok.eosId()), java.util.stream.IntStream.of(p.stopIds())).distinct().toArray();
        Completion c = TextStream.complete(m, tok, new GenerateRequest(p.encode(List.of(new ChatMessage("user", "Who are you?"))), new Sampler.Greedy(),
                0, 24, stopIds, a), p.stopStrings(), null);
        assertEquals(c.text(), text.toString());
        assertEquals(c.tokens().length, done.get("completion_tokens").asInt());
        assertTrue(pieces > 1, "streamed in pieces: " + pieces);
        Reply bad = post("/api/chat", JSON.createObjectNode().put("model", "tinystories-656k").put("temperature", "hot")
                .set("messages", JSON.readTree("[{\"role\": \"user\", \"content\": \"hi\"}]")));
        assertFieldError(bad, 400, "temperature", "must be a number");
    }

    @Test @Order(12)
    void evaluationMatchesTheLibrary() throws Exception {
        Reply r = post("/api/evaluate", JSON.createObjectNode().put("model", "tinystories-656k").put("dataset", "identity_en").put("template", "default")
                .put("cutoff_len", "64").put("max_samples", "4").put("text", "general_stories.txt").set("adapters", JSON.readTree("[\"runs/a\"]")));
        assertEquals(200, r.status(), String.valueOf(r.body()));
        assertEquals(List.of("base", "runs/a"), List.of(r.body().get("models").get(0).asText(), r.body().get("models").get(1).asText()));
        LlamaModel m = Models.load(model, Gemms.get("java"));
        Tokenizer tok = Tokenizer.load(model);
        LoadedAdapter a = LoadedAdapter.read("a", saves.resolve("runs/a"), m.config);
        var texts = Evaluation.texts(Files.readAllLines(root.resolve("data/general_stories.txt")), t -> tok.encode(t, true));
        JsonNode general = r.body().get("rows").get(1).get("results");
        assertEquals(Evaluation.evaluate(m, texts).loss(), general.get(0).get("loss").asDouble(), 1e-12);
        assertEquals(Evaluation.evaluate(m, a, texts).loss(), general.get(1).get("loss").asDouble(), 1e-12);
        JsonNode learned = r.body().get("rows").get(0).get("results");
        assertTrue(learned.get(1).get("loss").asDouble() < learned.get(0).get("loss").asDouble(), "the adapter learned its data: " + learned);
        assertEquals(Math.exp(learned.get(0).get("loss").asDouble()), learned.get(0).get("perplexity").asDouble(), 1e-9);
    }

    @Test @Order(13)
    void exportWritesAMergedFolderThatAnswersAsBasePlusAdapter() throws Exception {
        Reply r = post("/api/export", JSON.createObjectNode().put("model", "tinystories-656k").put("adapter", "runs/a").put("export_dir", "merged")
                .put("export_dtype", "float32"));
        assertEquals(200, r.status(), String.valueOf(r.body()));
        Path out = saves.resolve("merged");
        assertTrue(Files.isRegularFile(out.resolve("config.json")) && Files.isRegularFile(out.resolve("tokenizer.json")));
        LlamaModel merged = Models.load(out, Gemms.get("java")), base = Models.load(model, Gemms.get("java"));
        LoadedAdapter a = LoadedAdapter.read("a", saves.resolve("runs/a"), base.config);
        int[] ids = Tokenizer.load(model).encode("Who are you?", true);
        float[] x = merged.logits(ids, null), y = base.logits(ids, a);
        double max = 0;
        for (int i = 0; i < x.length; i++) max = Math.max(max, Math.abs(x[i] - y[i]));
        assertTrue(max < MERGE_TOLERANCE, "merged logits differ from base + adapter by " + max);
        assertTrue(get("/api/info").get("models").toString().contains("merged"), "the export is a model the page can pick");
        Reply q = post("/api/export", JSON.createObjectNode().put("model", "tinystories-656k").put("adapter", "runs/a").put("export_dir", "merged-nf4")
                .put("export_format", "nf4"));
        assertEquals(200, q.status(), String.valueOf(q.body()));
        assertTrue(Files.readString(saves.resolve("merged-nf4/config.json")).contains("quantization_config"));
        // a GGUF file (f32) that loads as a model and answers as base + adapter
        Reply g = post("/api/export", JSON.createObjectNode().put("model", "tinystories-656k").put("adapter", "runs/a").put("export_dir", "gguf")
                .put("export_format", "gguf").put("export_quant", "f32"));
        assertEquals(200, g.status(), String.valueOf(g.body()));
        float[] z = Models.load(saves.resolve("gguf/model-f32.gguf"), Gemms.get("java")).logits(ids, null);
        double maxG = 0;
        for (int i = 0; i < z.length; i++) maxG = Math.max(maxG, Math.abs(z[i] - y[i]));
        assertTrue(maxG < MERGE_TOLERANCE, "GGUF logits differ from base + adapter by " + maxG);
        assertFieldError(post("/api/export", JSON.createObjectNode().put("model", "tinystories-656k").put("export_dir", "g").put("export_format", "gguf")
                .put("export_dtype", "bfloat16")), 400, "export_dtype", "export_dtype does not apply to export_format gguf");
        assertFieldError(post("/api/export", JSON.createObjectNode().put("model", "tinystories-656k").put("export_dir", "g").put("export_format", "gif")),
                400, "export_format", "export_format must be hf, nf4, fp4 or gguf");
        assertFieldError(post("/api/export", JSON.createObjectNode().put("model", "tinystories-656k").put("export_dir", "d").put("export_dtype", "int3")),
                400, "export_dtype", "export_dtype 'int3'");
        assertFieldError(post("/api/export", JSON.createObjectNode().put("model", "tinystories-656k").put("export_dir", "runs/a")), 400, "export_dir",
                "not an exported model");
        assertEquals(200, post("/api/export", JSON.createObjectNode().put("model", "tinystories-656k").put("export_dir", "merged")).status(),
                "an earlier export may be written again");
    }
}
