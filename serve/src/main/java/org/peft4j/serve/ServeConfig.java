package org.peft4j.serve;

import org.peft4j.core.Peft4jException.ConfigException;

import java.nio.file.Path;
import java.util.List;
import java.util.Map;

/// The server's settings, read once by the CLI (`peft4j serve`) or built by an embedding program.
///
/// @param modelName         the id the base model is listed and selected under (`model` in requests)
/// @param adapters          adapters registered at start, name to PEFT folder (loaded on first use)
/// @param adapterDir        the folder adapters may be loaded from at run time (by name, or `/v1/load_lora_adapter`), or null
/// @param template          the chat format: null (the model's chat template, else plain), `model`, or a LLaMA-Factory name
/// @param host              the address to bind (default loopback only)
/// @param port              the port, 0 for any free one
/// @param apiKeys           accepted bearer keys; empty = no authentication
/// @param maxBatch          rows decoded together (KV-cache slots)
/// @param maxLoadedAdapters adapters kept in memory at most (least recently used ones are dropped)
/// @param maxModelLen       positions per sequence (prompt + completion); the KV cache holds maxBatch × maxModelLen
/// @param maxQueue          requests waiting for a slot at most; more are refused with 429
/// @param prefillChunk      prompt tokens prefilled per engine step at most (between decode steps)
/// @param maxBodyBytes      request bodies larger than this are refused with 413
/// @param kvCacheBytes      the KV cache's budget: without maxModelLen the context per sequence is cut to fit it; with it, a
///                          cache that does not fit is an error at start
public record ServeConfig(String modelName, Map<String, Path> adapters, Path adapterDir, String template, String host, int port,
                          List<String> apiKeys, int maxBatch, int maxLoadedAdapters, int maxModelLen, int maxQueue,
                          int prefillChunk, int maxBodyBytes, long kvCacheBytes) {
    public ServeConfig {
        if (modelName == null || modelName.isBlank()) throw new ConfigException("the served model needs a name");
        adapters = Map.copyOf(adapters);
        apiKeys = List.copyOf(apiKeys);
        if (port < 0 || port > 65535) throw new ConfigException("--port must be in [0, 65535], got " + port);
        if (maxBatch < 1) throw new ConfigException("--max-batch must be >= 1, got " + maxBatch);
        if (maxLoadedAdapters < 1) throw new ConfigException("--max-loaded-adapters must be >= 1, got " + maxLoadedAdapters);
        if (maxModelLen < 0) throw new ConfigException("--max-model-len must be >= 1 (0 = the model's), got " + maxModelLen);
        if (maxQueue < 0) throw new ConfigException("--max-queue must be >= 0, got " + maxQueue);
        if (prefillChunk < 1) throw new ConfigException("--prefill-chunk must be >= 1, got " + prefillChunk);
        if (maxBodyBytes < 1024) throw new ConfigException("--max-body-bytes must be >= 1024, got " + maxBodyBytes);
        if (kvCacheBytes < 1) throw new ConfigException("--kv-cache-gb must be > 0, got " + kvCacheBytes + " bytes");
        for (String name : adapters.keySet())
            if (name.equals(modelName)) throw new ConfigException("adapter name '" + name + "' is the base model's name; pick another");
    }

    /// Defaults for `modelName`: loopback:8000, no key, 16 rows, 8 loaded adapters, the model's context (within a 2 GiB
    /// KV cache), 256 queued.
    public static ServeConfig defaults(String modelName) {
        return new ServeConfig(modelName, Map.of(), null, null, "127.0.0.1", 8000, List.of(), 16, 8, 0, 256, 256, 1 << 20, 2L << 30);
    }

    public ServeConfig withPort(int port) {
        return new ServeConfig(modelName, adapters, adapterDir, template, host, port, apiKeys, maxBatch, maxLoadedAdapters,
                maxModelLen, maxQueue, prefillChunk, maxBodyBytes, kvCacheBytes);
    }

    public ServeConfig withAdapters(Map<String, Path> adapters, Path adapterDir) {
        return new ServeConfig(modelName, adapters, adapterDir, template, host, port, apiKeys, maxBatch, maxLoadedAdapters,
                maxModelLen, maxQueue, prefillChunk, maxBodyBytes, kvCacheBytes);
    }

    public ServeConfig withApiKeys(List<String> apiKeys) {
        return new ServeConfig(modelName, adapters, adapterDir, template, host, port, apiKeys, maxBatch, maxLoadedAdapters,
                maxModelLen, maxQueue, prefillChunk, maxBodyBytes, kvCacheBytes);
    }

    public ServeConfig withLimits(int maxBatch, int maxLoadedAdapters, int maxModelLen, int maxQueue) {
        return new ServeConfig(modelName, adapters, adapterDir, template, host, port, apiKeys, maxBatch, maxLoadedAdapters,
                maxModelLen, maxQueue, prefillChunk, maxBodyBytes, kvCacheBytes);
    }
}
