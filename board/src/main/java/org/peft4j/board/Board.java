package org.peft4j.board;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.javalin.Javalin;
import io.javalin.compression.CompressionStrategy;
import io.javalin.http.Context;
import io.javalin.http.staticfiles.Location;
import org.peft4j.core.Peft4jException;
import org.peft4j.serve.ApiException;
import org.peft4j.serve.Engine;
import org.peft4j.train.Checkpoint;
import org.peft4j.train.TrainConfig;

import java.io.IOException;
import java.io.OutputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;

/// `peft4j webui`: the web board, a single page (plain HTML, CSS and JavaScript modules under
/// `org/peft4j/board/web`, uPlot from WebJars) over a JSON API on Javalin 7, the HTTP library of `peft4j serve`.
/// Train, Runs, Evaluate, Chat and Export call the library functions the CLI commands call; live updates are
/// server-sent events. Safety: it binds loopback by default and then answers only Host names of this machine (no DNS
/// rebinding); requests that change state must come from the page's own origin (Origin / Sec-Fetch-Site) as JSON;
/// every path the page names lies under the configured [Roots].
public final class Board implements AutoCloseable {
    private static final System.Logger LOG = System.getLogger(Board.class.getName());
    private static final ObjectMapper JSON = new ObjectMapper();
    private static final Set<String> LOOPBACK = Set.of("127.0.0.1", "localhost", "::1", "[::1]");

    private final BoardConfig config;
    private final Roots roots;
    private final TrainForm form;
    private final Jobs jobs;
    private final Runs runs;
    private final Workbench bench;
    private final ChatRoom chat;
    private final Javalin app;

    /// Starts the board: creates the saves folder, checks the data folder and listens.
    public static Board start(BoardConfig config) { return new Board(config); }

    private Board(BoardConfig config) {
        this.config = config;
        try {
            Files.createDirectories(config.saves());
        } catch (IOException e) {
            throw new Peft4jException.ConfigException("cannot create the saves folder " + config.saves() + ": " + e.getMessage());
        }
        if (!Files.isDirectory(config.data()))
            throw new Peft4jException.ConfigException("the data folder " + config.data() + " does not exist; pass --data DIR with a dataset_info.json");
        this.roots = new Roots(config);
        this.form = new TrainForm(roots);
        this.jobs = new Jobs(roots);
        this.runs = new Runs(roots, jobs);
        this.bench = new Workbench(roots, form, config.gemm());
        this.chat = new ChatRoom(roots, bench, config.gemm());
        try {
            this.app = Javalin.create(c -> {
                c.concurrency.useVirtualThreads = true;
                c.http.compressionStrategy = CompressionStrategy.NONE;
                c.startup.showJavalinBanner = false;
                c.jetty.host = config.host();
                c.jetty.port = config.port();
                c.staticFiles.enableWebjars();
                c.staticFiles.add(s -> {
                    s.hostedPath = "/";
                    s.directory = "/org/peft4j/board/web";
                    s.location = Location.CLASSPATH;
                    s.headers = Map.of("Cache-Control", "no-cache");
                });
                c.routes.before(this::guard);
                c.routes.get("/api/info", ctx -> json(ctx, info()));
                c.routes.get("/api/form", ctx -> json(ctx, form.describe(defaultModel())));
                c.routes.post("/api/preview", ctx -> json(ctx, JSON.valueToTree(form.preview(form.config(values(ctx))))));
                c.routes.post("/api/args/save", this::saveArgs);
                c.routes.post("/api/args/load", this::loadArgs);
                c.routes.get("/api/datasets", ctx -> json(ctx, bench.datasets(ctx.queryParam("dataset_dir"))));
                c.routes.post("/api/datasets/preview", ctx -> json(ctx, bench.preview(values(ctx), Workbench.number(body(ctx), "rows", 3))));
                c.routes.post("/api/estimate", ctx -> json(ctx, bench.estimate(values(ctx))));
                c.routes.post("/api/train/start", ctx -> json(ctx, jobs.submit(form.config(values(ctx))).toJson(false)));
                c.routes.post("/api/train/abort", this::abort);
                c.routes.post("/api/train/resume", this::resume);
                c.routes.get("/api/runs", ctx -> json(ctx, runs.list()));
                c.routes.get("/api/events", this::events);
                c.routes.post("/api/evaluate", ctx -> json(ctx, bench.evaluate(body(ctx))));
                c.routes.post("/api/chat", this::chat);
                c.routes.post("/api/export", ctx -> json(ctx, bench.export(body(ctx))));
                c.routes.exception(BoardException.class, (ex, ctx) -> error(ctx, ex.status(), ex.field(), ex.getMessage()));
                c.routes.exception(ApiException.class, (ex, ctx) -> error(ctx, ex.status, ex.param, ex.getMessage()));
                c.routes.exception(Peft4jException.class, (ex, ctx) -> error(ctx, 400, TrainForm.fieldOf(ex.getMessage()), ex.getMessage()));
                c.routes.exception(Exception.class, (ex, ctx) -> {
                    LOG.log(System.Logger.Level.ERROR, "request failed: " + ctx.method() + " " + ctx.path(), ex);
                    error(ctx, 500, null, "internal error: " + ex);
                });
            }).start();
        } catch (RuntimeException ex) {
            jobs.close();
            throw new Peft4jException.ConfigException("cannot start the board on " + config.host() + ":" + config.port() + ": " + ex.getMessage(), ex);
        }
    }

    /// The port it listens on.
    public int port() { return app.port(); }

    public Jobs jobs() { return jobs; }

    public Roots roots() { return roots; }

    @Override
    public void close() {
        app.stop();
        jobs.close();
        chat.close();
    }

    // ---- safety

    /// Host names of this machine only when bound to loopback; state changes only from the page's own origin, as JSON.
    private void guard(Context ctx) {
        String host = ctx.header("Host");
        String name = host == null ? "" : host.startsWith("[") ? host.substring(0, host.indexOf(']') + 1) : host.replaceFirst(":\\d+$", "");
        if (LOOPBACK.contains(config.host()) && !LOOPBACK.contains(name))
            throw new BoardException(403, null, "Host '" + host + "' is not this machine; the board binds " + config.host() + " and answers only localhost");
        if (ctx.method().name().equals("GET") || ctx.method().name().equals("HEAD")) return;
        String origin = ctx.header("Origin"), site = ctx.header("Sec-Fetch-Site");
        if (origin != null && !origin.equals("http://" + host))
            throw new BoardException(403, null, "cross-origin request from " + origin + " refused; use the board's own page at http://" + host);
        if (site != null && !site.equals("same-origin") && !site.equals("none"))
            throw new BoardException(403, null, "cross-site request (Sec-Fetch-Site: " + site + ") refused; use the board's own page");
        String type = ctx.contentType();
        if (type == null || !type.toLowerCase().startsWith("application/json"))
            throw new BoardException(415, null, "send requests as application/json");
    }

    // ---- handlers

    private ObjectNode info() {
        ObjectNode o = JSON.createObjectNode().put("saves", config.saves().toString()).put("data", config.data().toString())
                .put("default_model", defaultModel());
        ArrayNode roots = o.putArray("model_roots");
        this.roots.models().forEach(p -> roots.add(p.toString()));
        ArrayNode models = o.putArray("models");
        this.roots.listModels().forEach(models::add);
        ArrayNode texts = o.putArray("texts");
        try (Stream<Path> s = Files.walk(config.data(), 3)) {
            s.filter(p -> p.toString().endsWith(".txt") && Files.isRegularFile(p)).sorted().forEach(p -> texts.add(this.roots.show(p)));
        } catch (IOException e) {
            // no text files listed
        }
        return o;
    }

    private String defaultModel() { return config.defaultModel() == null ? null : roots.show(config.defaultModel()); }

    private void saveArgs(Context ctx) {
        JsonNode body = body(ctx);
        TrainForm.Preview p = form.preview(form.config(values(ctx)));
        String name = Workbench.text(body, "path");
        if (name == null) throw BoardException.invalid("config_path", "choose a file name for the arguments (inside the saves folder)");
        Path file = roots.inSaves(name, "config_path");
        if (!file.getFileName().toString().endsWith(".yaml")) throw BoardException.invalid("config_path", "the arguments file must end in .yaml, got " + name);
        try {
            Files.createDirectories(file.getParent());
        } catch (IOException e) {
            throw BoardException.invalid("config_path", "cannot create " + file.getParent() + ": " + e.getMessage());
        }
        Checkpoint.writeAtomically(file, p.yaml());
        json(ctx, JSON.createObjectNode().put("path", roots.show(file)));
    }

    private void loadArgs(Context ctx) {
        String name = Workbench.text(body(ctx), "path");
        if (name == null) throw BoardException.invalid("config_path", "choose an arguments file (inside the saves folder)");
        Path file = roots.inSaves(name, "config_path");
        if (!Files.isRegularFile(file)) throw BoardException.invalid("config_path", "no arguments file '" + name + "' in the saves folder");
        TrainConfig c;
        try {
            c = TrainConfig.load(file, List.of());
        } catch (Peft4jException e) {
            throw BoardException.invalid("config_path", e.getMessage());
        }
        json(ctx, JSON.createObjectNode().set("values", JSON.valueToTree(pageValues(c.changed()))));
    }

    /// Config values as the page shows them: text, paths relative to their roots.
    private Map<String, String> pageValues(Map<String, Object> changed) {
        Map<String, String> out = new LinkedHashMap<>();
        changed.forEach((k, v) -> {
            if (v == null) return;
            String s = String.valueOf(v);
            if (TrainForm.PATHS.containsKey(k) && Path.of(s).isAbsolute()) s = roots.show(Path.of(s));
            out.put(k, s);
        });
        return out;
    }

    private void abort(Context ctx) {
        String run = Workbench.text(body(ctx), "run");
        if (run == null || !jobs.abort(roots.show(roots.inSaves(run, "run"))))
            throw new BoardException(409, "run", "run '" + run + "' is neither running nor queued");
        json(ctx, JSON.createObjectNode().put("run", run).put("aborting", true));
    }

    /// Runs a run's saved config again: it continues from its last checkpoint (or starts over when it has none).
    private void resume(Context ctx) {
        String run = Workbench.text(body(ctx), "run");
        Path dir = roots.inSaves(run == null ? "" : run, "run");
        Path args = dir.resolve("training_args.json");
        if (run == null || !Files.isRegularFile(args)) throw BoardException.invalid("run", "'" + run + "' is not a run folder (no training_args.json)");
        // the saved keys that differ from their defaults, through the form again (roots and validation as on Start);
        // not TrainConfig.load(training_args.json): its null evaluation_strategy (the old alias) would clear eval_strategy
        Map<String, String> values = new LinkedHashMap<>();
        JsonNode saved;
        try {
            saved = JSON.readTree(args.toFile());
        } catch (IOException e) {
            throw BoardException.invalid("run", "cannot read " + args + ": " + e.getMessage());
        }
        saved.properties().forEach(e -> {
            TrainConfig.Key k = TrainConfig.KEYS.get(e.getKey());
            if (k != null && !e.getValue().isNull() && !e.getKey().equals("evaluation_strategy")) values.put(e.getKey(), e.getValue().asText());
        });
        values.remove("resume_from_checkpoint");
        values.put("overwrite_output_dir", String.valueOf(Checkpoint.last(dir) == null));
        json(ctx, jobs.submit(form.config(values)).toJson(false));
    }

    /// Server-sent events of the training jobs: a snapshot, then each change; a comment every 15 s keeps it open.
    private void events(Context ctx) throws InterruptedException {
        OutputStream os = sse(ctx);
        BlockingQueue<String> q = jobs.subscribe();
        try {
            while (true) {
                String e = q.poll(15, TimeUnit.SECONDS);
                os.write((e == null ? ": keep-alive\n\n" : "data: " + e + "\n\n").getBytes(StandardCharsets.UTF_8));
                os.flush();
            }
        } catch (IOException e) {
            // the page went away
        } finally {
            jobs.unsubscribe(q);
        }
    }

    /// The answer as server-sent events: {"text"} pieces, then {"done", "finish_reason", token counts}. A page that
    /// stops reading (the stop button) ends the generation at the next token.
    private void chat(Context ctx) throws InterruptedException {
        ChatRoom.Started started = chat.start(body(ctx));
        Engine.Stream s = started.stream();
        OutputStream os = sse(ctx);
        try {
            while (true) {
                Engine.Event e = s.next(15, TimeUnit.SECONDS);
                ObjectNode o = JSON.createObjectNode();
                if (e == null) { os.write(": keep-alive\n\n".getBytes(StandardCharsets.UTF_8)); os.flush(); continue; }
                if (e instanceof Engine.Text t) o.put("text", t.text());
                else if (e instanceof Engine.Done d) o.put("done", true).put("finish_reason", d.finishReason()).put("error", d.error())
                        .put("prompt_tokens", d.promptTokens()).put("completion_tokens", d.completionTokens());
                os.write(("data: " + o + "\n\n").getBytes(StandardCharsets.UTF_8));
                os.flush();
                if (e instanceof Engine.Done) return;
            }
        } catch (IOException e) {
            s.cancel();
        } catch (InterruptedException e) {
            s.cancel();
            throw e;
        }
    }

    // ---- plumbing

    private static OutputStream sse(Context ctx) {
        ctx.status(200);
        ctx.res().setContentType("text/event-stream; charset=utf-8");
        ctx.res().setHeader("Cache-Control", "no-cache");
        ctx.res().setHeader("X-Accel-Buffering", "no");
        try {
            OutputStream os = ctx.res().getOutputStream();
            os.write(": open\n\n".getBytes(StandardCharsets.UTF_8));
            os.flush();
            return os;
        } catch (IOException e) {
            throw new java.io.UncheckedIOException(e);
        }
    }

    private static JsonNode body(Context ctx) {
        String text = ctx.body();
        try {
            JsonNode n = JSON.readTree(text.isBlank() ? "{}" : text);
            if (n == null || !n.isObject()) throw new BoardException(400, null, "the request body must be a JSON object");
            return n;
        } catch (IOException e) {
            throw new BoardException(400, null, "malformed JSON: " + e.getMessage());
        }
    }

    /// The form's values: {"values": {key: text}}.
    private static Map<String, String> values(Context ctx) {
        JsonNode v = body(ctx).get("values");
        if (v == null || !v.isObject()) throw new BoardException(400, null, "send the form as {\"values\": {key: value}}");
        Map<String, String> out = new LinkedHashMap<>();
        v.properties().forEach(e -> out.put(e.getKey(), e.getValue().isNull() ? null : e.getValue().asText()));
        return out;
    }

    private static void json(Context ctx, JsonNode body) {
        ctx.status(200).contentType("application/json").result(body.toString());
    }

    private static void error(Context ctx, int status, String field, String message) {
        ObjectNode o = JSON.createObjectNode().put("error", message);
        if (field != null) o.put("field", field);
        else o.putNull("field");
        ctx.status(status).contentType("application/json").result(o.toString());
    }
}
