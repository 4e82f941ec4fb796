package org.peft4j.board;

import com.fasterxml.jackson.databind.JsonNode;
import org.peft4j.core.Gemms;
import org.peft4j.core.Peft4jException;
import org.peft4j.model.GenerationConfig;
import org.peft4j.model.Models;
import org.peft4j.model.adapter.LoadedAdapter;
import org.peft4j.model.generate.Sampler;
import org.peft4j.model.llama.LlamaModel;
import org.peft4j.serve.Engine;
import org.peft4j.serve.Metrics;
import org.peft4j.template.ChatMessage;
import org.peft4j.tokenizer.Tokenizer;
import org.peft4j.train.generate.ChatPrompt;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.stream.IntStream;

/// The Chat tab: one base model loaded at a time into `peft4j serve`'s [Engine] (continuous batching, an adapter per
/// row), so the base and one or two adapters answer the same prompt side by side in one batch. Adapters are values
/// read from their folder (again when the folder's weights changed, e.g. after more training).
public final class ChatRoom implements AutoCloseable {
    /// Rows decoded together: a base and two adapters, twice over.
    static final int MAX_BATCH = 6;
    /// Positions per sequence at most (less when the model's context is shorter).
    static final int MAX_CONTEXT = 2048;

    private record Loaded(Path dir, LlamaModel model, Tokenizer tokenizer, int[] eosIds, Engine engine) {}
    private record CachedAdapter(Path dir, long modified, LoadedAdapter adapter) {}

    private final Roots roots;
    private final Workbench bench;
    private final String gemm;
    private Loaded loaded;
    private final List<CachedAdapter> adapters = new ArrayList<>();

    ChatRoom(Roots roots, Workbench bench, String gemm) {
        this.roots = roots;
        this.bench = bench;
        this.gemm = gemm;
    }

    /// A chat request made ready to run: the engine job and its stream.
    public record Started(Engine.Stream stream, int promptTokens) {}

    /// Starts the answer to `body`: model, adapter (a run folder or blank for the base), template (blank: the model's
    /// chat template, else plain), system, messages [{role, content}], temperature, top_p, top_k, repetition_penalty,
    /// max_new_tokens, seed. Bad values are refused with the field named.
    public Started start(JsonNode body) {
        Path modelDir = roots.model(Workbench.text(body, "model"), "model");
        Loaded m = load(modelDir);
        String adapterName = Workbench.text(body, "adapter");
        LoadedAdapter adapter = adapterName == null ? null : adapter(bench.adapter(adapterName, "adapter"), m);
        ChatPrompt prompt;
        try {
            prompt = ChatPrompt.of(Workbench.text(body, "template"), m.tokenizer(), modelDir);
        } catch (Peft4jException e) {
            throw BoardException.invalid("template", e.getMessage());
        }
        List<ChatMessage> messages = new ArrayList<>();
        String system = Workbench.text(body, "system");
        if (system != null) messages.add(ChatMessage.system(system));
        JsonNode ms = body.get("messages");
        if (ms == null || !ms.isArray() || ms.isEmpty()) throw BoardException.invalid("messages", "type a message first");
        for (JsonNode n : ms) messages.add(new ChatMessage(n.path("role").asText("user"), n.path("content").asText("")));
        int[] ids;
        try {
            ids = prompt.encode(messages);
        } catch (Peft4jException e) {
            throw BoardException.invalid("messages", e.getMessage());
        }
        double temperature = real(body, "temperature", 0, 0, 5), topP = real(body, "top_p", 1, 1e-6, 1), rp = real(body, "repetition_penalty", 1, 0.01, 10);
        int topK = Workbench.number(body, "top_k", 0);
        if (topK < 0) throw BoardException.invalid("top_k", "top_k must be >= 0 (0 = off), got " + topK);
        int maxNew = Workbench.number(body, "max_new_tokens", 128);
        if (maxNew < 1) throw BoardException.invalid("max_new_tokens", "max_new_tokens must be >= 1, got " + maxNew);
        maxNew = Math.min(maxNew, m.engine().capacity() - ids.length);
        if (maxNew < 1) throw BoardException.invalid("messages", "the conversation (" + ids.length + " tokens) fills the context of " + m.engine().capacity() + "; clear it");
        Sampler sampler = temperature == 0 ? new Sampler.Greedy(rp) : new Sampler.Random(temperature, topK, topP, rp);
        int[] stopIds = IntStream.concat(IntStream.of(m.eosIds()), IntStream.of(prompt.stopIds())).distinct().toArray();
        long seed = Workbench.number(body, "seed", 0);
        Engine.Stream s = m.engine().submit(new Engine.Job(ids, sampler, seed, maxNew, stopIds, prompt.stopStrings(), adapter));
        return new Started(s, ids.length);
    }

    private synchronized Loaded load(Path dir) {
        if (loaded != null && loaded.dir().equals(dir)) return loaded;
        if (loaded != null) loaded.engine().close();
        adapters.clear();
        LlamaModel model = Models.load(dir, Gemms.get(gemm));
        Tokenizer tok = Tokenizer.load(dir);
        GenerationConfig gen = GenerationConfig.read(dir, model.config);
        List<Integer> eos = new ArrayList<>(gen.eosTokenIds());
        if (tok.eosId() >= 0 && !eos.contains(tok.eosId())) eos.add(tok.eosId());
        int ctx = Math.min(MAX_CONTEXT, model.config.maxPositionEmbeddings());
        Engine engine = new Engine(model, tok, MAX_BATCH, ctx, 256, 64, new Metrics());
        loaded = new Loaded(dir, model, tok, eos.stream().mapToInt(Integer::intValue).toArray(), engine);
        return loaded;
    }

    private synchronized LoadedAdapter adapter(Path dir, Loaded m) {
        long modified;
        try {
            modified = Files.getLastModifiedTime(dir.resolve("adapter_model.safetensors")).toMillis();
        } catch (IOException e) {
            throw BoardException.invalid("adapter", roots.show(dir) + " has no adapter_model.safetensors yet; wait for the run to finish");
        }
        for (CachedAdapter c : adapters) if (c.dir().equals(dir) && c.modified() == modified) return c.adapter();
        adapters.removeIf(c -> c.dir().equals(dir));
        LoadedAdapter a;
        try {
            a = LoadedAdapter.read(roots.show(dir), dir, m.model().config);
        } catch (Peft4jException e) {
            throw BoardException.invalid("adapter", e.getMessage());
        }
        adapters.add(new CachedAdapter(dir, modified, a));
        return a;
    }

    private static double real(JsonNode body, String field, double fallback, double min, double max) {
        String t = Workbench.text(body, field);
        if (t == null) return fallback;
        double v;
        try {
            v = Double.parseDouble(t);
        } catch (NumberFormatException e) {
            throw BoardException.invalid(field, "'" + field + "' must be a number, got '" + t + "'");
        }
        if (!(v >= min && v <= max)) throw BoardException.invalid(field, field + " must be in [" + min + ", " + max + "], got " + t);
        return v;
    }

    @Override
    public synchronized void close() {
        if (loaded != null) loaded.engine().close();
        loaded = null;
    }
}
