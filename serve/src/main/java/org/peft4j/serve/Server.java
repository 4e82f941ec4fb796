package org.peft4j.serve;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.javalin.Javalin;
import io.javalin.compression.CompressionStrategy;
import io.javalin.http.Context;
import org.peft4j.core.Gemm;
import org.peft4j.core.Peft4jException;
import org.peft4j.model.GenerationConfig;
import org.peft4j.model.Models;
import org.peft4j.model.adapter.LoadedAdapter;
import org.peft4j.model.llama.KvCache;
import org.peft4j.model.llama.LlamaModel;
import org.peft4j.tokenizer.Tokenizer;
import org.peft4j.train.generate.ChatPrompt;

import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.util.ArrayList;
import java.util.List;
import java.util.UUID;
import java.util.concurrent.TimeUnit;
import java.util.stream.IntStream;

/// `peft4j serve`: one base model and many LoRA adapters behind OpenAI's HTTP API, on Javalin 7 (Jetty 12) with a
/// virtual thread per request. Handlers parse and check the request ([OpenAiRequest]), pick the adapter by the
/// `model` field ([AdapterRegistry]), submit to the [Engine] and write its text back, whole or as server-sent events.
/// Every refusal is OpenAI's error shape `{"error": {"message", "type", "param", "code"}}`.
/// Reference: OpenAI API reference; vLLM's OpenAI server (`/v1/load_lora_adapter`, `/metrics`).
public final class Server implements AutoCloseable {
    private static final System.Logger LOG = System.getLogger(Server.class.getName());
    private static final ObjectMapper JSON = new ObjectMapper();
    /// Milliseconds a stream waits for an event before it writes an SSE comment (see [#stream]).
    static final long KEEP_ALIVE_MS = 1000;

    private final ServeConfig config;
    private final Tokenizer tokenizer;
    private final GenerationConfig generation;
    private final ChatPrompt chat;
    private final int[] eosIds;
    private final Engine engine;
    private final AdapterRegistry adapters;
    private final Metrics metrics = new Metrics();
    private final long created = System.currentTimeMillis() / 1000;
    private final Javalin app;

    /// Loads the model folder and starts serving it.
    public static Server start(Path modelDir, ServeConfig config, Gemm gemm) {
        LlamaModel model = Models.load(modelDir, gemm);
        return start(model, Tokenizer.load(modelDir, model.config.vocabSize()), GenerationConfig.read(modelDir, model.config), modelDir, config);
    }

    /// Serves a loaded model (`modelDir`: where its chat template is read from).
    public static Server start(LlamaModel model, Tokenizer tokenizer, GenerationConfig generation, Path modelDir, ServeConfig config) {
        return new Server(model, tokenizer, generation, modelDir, config);
    }

    private Server(LlamaModel model, Tokenizer tokenizer, GenerationConfig generation, Path modelDir, ServeConfig config) {
        this.config = config; this.tokenizer = tokenizer; this.generation = generation;
        this.chat = ChatPrompt.of(config.template(), tokenizer, modelDir);
        List<Integer> eos = new ArrayList<>(generation.eosTokenIds());
        if (tokenizer.eosId() >= 0 && !eos.contains(tokenizer.eosId())) eos.add(tokenizer.eosId());
        this.eosIds = eos.stream().mapToInt(Integer::intValue).toArray();
        int ctx = config.maxModelLen() > 0 ? config.maxModelLen() : model.config.maxPositionEmbeddings();
        if (ctx > model.config.maxPositionEmbeddings())
            throw new Peft4jException.ConfigException("--max-model-len " + ctx + " exceeds the model's max_position_embeddings "
                    + model.config.maxPositionEmbeddings() + "; ask for at most that");
        long perPosition = KvCache.bytes(model.config, config.maxBatch(), 1, model.kvCacheType());
        if (perPosition * ctx > config.kvCacheBytes()) {
            long fit = config.kvCacheBytes() / perPosition;
            if (config.maxModelLen() > 0 || fit < 16)
                throw new Peft4jException.ConfigException(String.format("a KV cache of %d sequences x %d positions needs %.2f GB, over the budget of %.2f GB;"
                        + " lower --max-batch or --max-model-len, or raise --kv-cache-gb", config.maxBatch(), ctx, perPosition * ctx / 1e9, config.kvCacheBytes() / 1e9));
            LOG.log(System.Logger.Level.INFO, "context per sequence cut from " + ctx + " to " + fit + " positions to fit the KV-cache budget");
            ctx = (int) fit;
        }
        this.adapters = new AdapterRegistry(model.config, config.modelName(), config.adapters(), config.adapterDir(), config.maxLoadedAdapters());
        this.engine = new Engine(model, tokenizer, config.maxBatch(), ctx, config.prefillChunk(), config.maxQueue(), metrics);
        metrics.gauges(engine::queued, engine::running, adapters::loadedCount);
        try {
            this.app = Javalin.create(c -> {
                c.concurrency.useVirtualThreads = true;
                c.http.compressionStrategy = CompressionStrategy.NONE;
                c.startup.showJavalinBanner = false;
                c.jetty.host = config.host();
                c.jetty.port = config.port();
                c.routes.before("/v1/*", this::authorize);
                c.routes.get("/health", ctx1 -> ctx1.status(200).result(""));
                c.routes.get("/metrics", ctx1 -> ctx1.contentType("text/plain; version=0.0.4; charset=utf-8").result(metrics.text()));
                c.routes.get("/v1/models", this::models);
                c.routes.post("/v1/completions", ctx1 -> generate(ctx1, false));
                c.routes.post("/v1/chat/completions", ctx1 -> generate(ctx1, true));
                c.routes.post("/v1/load_lora_adapter", this::loadAdapter);
                c.routes.post("/v1/unload_lora_adapter", this::unloadAdapter);
                c.routes.exception(ApiException.class, (ex, ctx1) -> error(ctx1, ex));
                c.routes.exception(Exception.class, (ex, ctx1) -> {
                    LOG.log(System.Logger.Level.ERROR, "request failed: " + ctx1.method() + " " + ctx1.path(), ex);
                    error(ctx1, new ApiException(500, "server_error", null, "internal_error", "internal error: " + ex));
                });
                c.routes.error(404, ctx1 -> {
                    if (ctx1.attribute("peft4j.error") == null)
                        error(ctx1, new ApiException(404, "invalid_request_error", null, "not_found",
                                "no endpoint " + ctx1.method() + " " + ctx1.path() + "; see GET /v1/models, POST /v1/completions, POST /v1/chat/completions"));
                });
            }).start();
        } catch (RuntimeException ex) {
            engine.close();
            throw new Peft4jException.ConfigException("cannot start the HTTP server on " + config.host() + ":" + config.port() + ": " + ex.getMessage(), ex);
        }
    }

    /// The port it listens on (the one chosen when the config asked for 0).
    public int port() { return app.port(); }

    public Engine engine() { return engine; }

    public AdapterRegistry adapters() { return adapters; }

    public Metrics metrics() { return metrics; }

    /// Stops accepting requests, then the engine.
    @Override
    public void close() {
        app.stop();
        engine.close();
    }

    /// In-process use without HTTP: a completion of `prompt` (BOS added) with adapter `model` (or the base's name),
    /// greedy, as the server runs it.
    public Engine.Stream complete(String model, String prompt, int maxTokens) {
        LoadedAdapter a = adapters.get(model);
        return engine.submit(new Engine.Job(tokenizer.encode(prompt, true), new org.peft4j.model.generate.Sampler.Greedy(), 0, maxTokens,
                eosIds, List.of(), a));
    }

    // ---- handlers

    private void authorize(Context ctx) {
        if (config.apiKeys().isEmpty()) return;
        String h = ctx.header("Authorization");
        String key = h != null && h.regionMatches(true, 0, "Bearer ", 0, 7) ? h.substring(7).trim() : null;
        if (key != null) {
            byte[] k = key.getBytes(StandardCharsets.UTF_8);
            for (String ok : config.apiKeys())
                if (MessageDigest.isEqual(k, ok.getBytes(StandardCharsets.UTF_8))) return;
        }
        throw new ApiException(401, "invalid_request_error", null, "invalid_api_key",
                key == null ? "Missing API key: send 'Authorization: Bearer KEY'" : "Incorrect API key provided");
    }

    private void models(Context ctx) {
        ObjectNode out = JSON.createObjectNode().put("object", "list");
        ArrayNode data = out.putArray("data");
        for (String name : adapters.names()) {
            boolean base = name.equals(config.modelName());
            ObjectNode m = data.addObject().put("id", name).put("object", "model").put("created", created).put("owned_by", "peft4j")
                    .put("root", base ? name : name);
            if (base) m.putNull("parent");
            else m.put("parent", config.modelName());
        }
        json(ctx, 200, out);
        metrics.request("models", 200);
    }

    private void loadAdapter(Context ctx) {
        JsonNode body = body(ctx);
        String name = text(body, "lora_name");
        String path = body.hasNonNull("lora_path") ? text(body, "lora_path") : null;
        adapters.load(name, path);
        json(ctx, 200, JSON.createObjectNode().put("object", "lora_adapter").put("id", name).put("parent", config.modelName()).put("loaded", true));
        metrics.request("load_lora_adapter", 200);
    }

    private void unloadAdapter(Context ctx) {
        JsonNode body = body(ctx);
        String name = text(body, "lora_name");
        if (!adapters.unload(name)) throw ApiException.unknownModel(name, adapters.names());
        json(ctx, 200, JSON.createObjectNode().put("object", "lora_adapter").put("id", name).put("loaded", false));
        metrics.request("load_lora_adapter", 200);
    }

    private void generate(Context ctx, boolean isChat) throws Exception {
        String endpoint = isChat ? "chat_completions" : "completions";
        JsonNode body = body(ctx);
        OpenAiRequest r = isChat ? OpenAiRequest.chat(body, generation) : OpenAiRequest.completion(body, generation);
        LoadedAdapter adapter = adapters.get(r.model());
        int[] prompt;
        int[] stopIds = eosIds;
        List<String> stops = new ArrayList<>(r.stop());
        if (isChat) {
            try {
                prompt = chat.encode(r.messages());
            } catch (ApiException e) {
                throw e;
            } catch (RuntimeException e) {
                throw ApiException.invalid("messages", "the chat template cannot render these messages: " + e.getMessage());
            }
            stops.addAll(chat.stopStrings());
            stopIds = IntStream.concat(IntStream.of(eosIds), IntStream.of(chat.stopIds())).distinct().toArray();
        } else if (r.promptIds() != null) {
            prompt = r.promptIds();
            int V = engine.model().config.vocabSize();
            for (int i = 0; i < prompt.length; i++)
                if (prompt[i] < 0 || prompt[i] >= V) throw ApiException.invalid("prompt", "token id " + prompt[i] + " at index " + i + " is outside the vocabulary [0, " + V + ")");
        } else {
            prompt = tokenizer.encode(r.prompt(), true);
        }
        if (prompt.length == 0) throw ApiException.invalid(isChat ? "messages" : "prompt", "the prompt encodes to no tokens");
        int maxTokens = r.maxTokens() != null ? r.maxTokens() : Math.max(0, engine.capacity() - prompt.length);
        Engine.Stream s = engine.submit(new Engine.Job(prompt, r.sampler(), r.seed(), maxTokens, stopIds, stops, adapter));
        String id = (isChat ? "chatcmpl-" : "cmpl-") + UUID.randomUUID().toString().replace("-", "");
        long now = System.currentTimeMillis() / 1000;
        if (r.stream()) stream(ctx, s, r, id, now, isChat, endpoint);
        else whole(ctx, s, r, id, now, isChat, endpoint);
    }

    private void whole(Context ctx, Engine.Stream s, OpenAiRequest r, String id, long now, boolean isChat, String endpoint) throws InterruptedException {
        StringBuilder text = new StringBuilder();
        Engine.Done d;
        try {
            d = s.collect(text);
        } catch (InterruptedException e) {
            s.cancel();
            throw e;
        }
        if (d.error() != null) throw new ApiException(500, "server_error", null, "engine_error", d.error());
        ObjectNode out = head(id, isChat ? "chat.completion" : "text_completion", now, r.model());
        ObjectNode c = out.putArray("choices").addObject().put("index", 0);
        if (isChat) c.putObject("message").put("role", "assistant").put("content", text.toString());
        else c.put("text", text.toString());
        c.putNull("logprobs");
        c.put("finish_reason", reason(d));
        usage(out.putObject("usage"), d);
        json(ctx, 200, out);
        metrics.request(endpoint, 200);
    }

    private void stream(Context ctx, Engine.Stream s, OpenAiRequest r, String id, long now, boolean isChat, String endpoint) throws Exception {
        String object = isChat ? "chat.completion.chunk" : "text_completion";
        ctx.status(200);
        ctx.res().setContentType("text/event-stream; charset=utf-8");
        ctx.res().setHeader("Cache-Control", "no-cache");
        ctx.res().setHeader("X-Accel-Buffering", "no");
        OutputStream os = ctx.res().getOutputStream();
        try {
            if (isChat) {
                ObjectNode first = chunk(id, object, now, r, true);
                ((ObjectNode) first.get("choices").get(0)).putObject("delta").put("role", "assistant").put("content", "");
                send(os, first);
            }
            while (true) {
                // a queued stream writes nothing until its first token: a comment line each idle second is how a client
                // that hung up is noticed (the write after its reset fails) and its place in the queue freed within seconds
                Engine.Event e = s.next(KEEP_ALIVE_MS, TimeUnit.MILLISECONDS);
                if (e == null) { os.write(": keep-alive\n\n".getBytes(StandardCharsets.UTF_8)); os.flush(); continue; }
                if (e instanceof Engine.Text t) {
                    ObjectNode c = chunk(id, object, now, r, true);
                    ObjectNode choice = (ObjectNode) c.get("choices").get(0);
                    if (isChat) choice.putObject("delta").put("content", t.text());
                    else choice.put("text", t.text());
                    send(os, c);
                } else if (e instanceof Engine.Done d) {
                    if (d.error() != null) {
                        send(os, errorBody(new ApiException(500, "server_error", null, "engine_error", d.error())));
                    } else {
                        ObjectNode c = chunk(id, object, now, r, true);
                        ObjectNode choice = (ObjectNode) c.get("choices").get(0);
                        if (isChat) choice.putObject("delta");
                        else choice.put("text", "");
                        choice.put("finish_reason", reason(d));
                        send(os, c);
                        if (r.includeUsage()) {
                            ObjectNode u = chunk(id, object, now, r, false);
                            usage(u.putObject("usage"), d);
                            send(os, u);
                        }
                    }
                    os.write("data: [DONE]\n\n".getBytes(StandardCharsets.UTF_8));
                    os.flush();
                    metrics.request(endpoint, 200);
                    return;
                }
            }
        } catch (IOException | RuntimeException | InterruptedException e) {
            // the client went away (or the connection broke): free its row now
            s.cancel();
            metrics.request(endpoint, 499);
        }
    }

    private static String reason(Engine.Done d) {
        return d.finishReason().equals("length") ? "length" : "stop";
    }

    private ObjectNode chunk(String id, String object, long now, OpenAiRequest r, boolean withChoice) {
        ObjectNode c = head(id, object, now, r.model());
        ArrayNode choices = c.putArray("choices");
        if (withChoice) {
            ObjectNode ch = choices.addObject().put("index", 0);
            ch.putNull("logprobs");
            ch.putNull("finish_reason");
        }
        if (r.includeUsage() && withChoice) c.putNull("usage");
        return c;
    }

    private static ObjectNode head(String id, String object, long now, String model) {
        return JSON.createObjectNode().put("id", id).put("object", object).put("created", now).put("model", model)
                .put("system_fingerprint", "peft4j");
    }

    private static void usage(ObjectNode u, Engine.Done d) {
        u.put("prompt_tokens", d.promptTokens()).put("completion_tokens", d.completionTokens())
                .put("total_tokens", d.promptTokens() + d.completionTokens());
    }

    private static void send(OutputStream os, JsonNode event) throws IOException {
        os.write(("data: " + JSON.writeValueAsString(event) + "\n\n").getBytes(StandardCharsets.UTF_8));
        os.flush();
    }

    // ---- plumbing

    /// The request body as a JSON object, read up to the size limit (413 beyond it, 400 when it is not JSON).
    private JsonNode body(Context ctx) {
        long declared = ctx.req().getContentLengthLong();
        int limit = config.maxBodyBytes();
        if (declared > limit) throw tooLarge(declared);
        byte[] bytes;
        try (InputStream in = ctx.req().getInputStream()) {
            bytes = in.readNBytes(limit + 1);
        } catch (IOException e) {
            throw ApiException.invalid(null, "cannot read the request body: " + e.getMessage());
        }
        if (bytes.length > limit) throw tooLarge(bytes.length);
        return parseBody(bytes);
    }

    /// A request body's bytes as a JSON object, or a 400 saying why not (ServeFuzzTest feeds it arbitrary bytes).
    static JsonNode parseBody(byte[] bytes) {
        JsonNode n;
        try {
            n = JSON.readTree(bytes);
        } catch (JsonProcessingException e) {
            throw ApiException.invalid(null, "the request body is not valid JSON: " + e.getOriginalMessage());
        } catch (IOException e) {
            throw ApiException.invalid(null, "cannot read the request body: " + e.getMessage());
        }
        if (n == null || !n.isObject()) throw ApiException.invalid(null, "the request body must be a JSON object");
        return n;
    }

    private ApiException tooLarge(long n) {
        return new ApiException(413, "invalid_request_error", null, "request_too_large",
                "the request body has " + (n > config.maxBodyBytes() ? "more than " + config.maxBodyBytes() : n)
                        + " bytes; this server accepts at most " + config.maxBodyBytes() + " (--max-body-bytes)");
    }

    private static String text(JsonNode body, String key) {
        JsonNode v = body.get(key);
        if (v == null || v.isNull()) throw ApiException.invalid(key, "'" + key + "' is a required property");
        if (!v.isTextual()) throw ApiException.invalid(key, "'" + key + "' must be a string");
        return v.asText();
    }

    private void error(Context ctx, ApiException e) {
        ctx.attribute("peft4j.error", e.status);
        json(ctx, e.status, errorBody(e));
        metrics.request(ctx.path().startsWith("/v1/") ? ctx.path().substring(4).replace('/', '_') : "other", e.status);
    }

    private static ObjectNode errorBody(ApiException e) {
        ObjectNode out = JSON.createObjectNode();
        ObjectNode err = out.putObject("error").put("message", e.getMessage()).put("type", e.type);
        if (e.param == null) err.putNull("param"); else err.put("param", e.param);
        if (e.code == null) err.putNull("code"); else err.put("code", e.code);
        return out;
    }

    private static void json(Context ctx, int status, JsonNode body) {
        try {
            ctx.status(status).contentType("application/json").result(JSON.writeValueAsBytes(body));
        } catch (JsonProcessingException e) {
            throw new IllegalStateException(e);
        }
    }
}
