package org.peft4j.cli;

import org.peft4j.core.Peft4jException.ConfigException;
import org.peft4j.serve.ServeConfig;
import org.peft4j.serve.Server;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Callable;
import java.util.concurrent.CountDownLatch;

/// `peft4j serve`: an OpenAI-compatible server for one base model and many LoRA adapters (see [Server]).
@Command(name = "serve", mixinStandardHelpOptions = true,
        description = "Serve a model and its LoRA adapters over OpenAI's API (/v1/models, /v1/completions, /v1/chat/completions).")
final class ServeCommand implements Callable<Integer> {
    /// Environment variable holding API keys (comma-separated), besides --api-key.
    static final String KEY_ENV = "PEFT4J_API_KEY";

    @Mixin ModelOptions modelOptions;
    @Mixin KvCacheOption kvCache;

    @Option(names = "--adapter", paramLabel = "NAME=DIR|FILE.gguf", description = "A LoRA adapter (PEFT folder or GGUF LoRA file) served as model NAME (repeatable).")
    List<String> adapters = List.of();

    @Option(names = "--adapter-dir", paramLabel = "DIR",
            description = "Adapters under DIR load on first use by folder name, and through /v1/load_lora_adapter (paths only inside DIR).")
    Path adapterDir;

    @Option(names = "--template", paramLabel = "NAME|model",
            description = "Chat format: 'model' (the model's chat template) or a LLaMA-Factory template name; default: the model's template, else plain.")
    String template;

    @Option(names = "--served-model-name", paramLabel = "NAME", description = "The base model's id in the API (default: the --model value or the folder name).")
    String servedName;

    @Option(names = "--host", defaultValue = "127.0.0.1", description = "Address to bind (default: ${DEFAULT-VALUE}, this machine only).")
    String host;

    @Option(names = "--port", defaultValue = "8000", description = "Port (default: ${DEFAULT-VALUE}; 0 = any free port).")
    int port;

    @Option(names = "--api-key", paramLabel = "KEY", description = "Require 'Authorization: Bearer KEY' on /v1 (repeatable; also from $" + KEY_ENV + ", comma-separated).")
    List<String> apiKeys = List.of();

    @Option(names = "--max-batch", defaultValue = "16", description = "Sequences decoded together, each with a KV-cache slot (default: ${DEFAULT-VALUE}).")
    int maxBatch;

    @Option(names = "--max-loaded-adapters", defaultValue = "8", description = "Adapters kept in memory, least recently used dropped (default: ${DEFAULT-VALUE}).")
    int maxLoaded;

    @Option(names = "--max-model-len", defaultValue = "0", description = "Positions per sequence, prompt + completion (default: the model's context).")
    int maxModelLen;

    @Option(names = "--max-queue", defaultValue = "256", description = "Requests waiting for a slot before 429 (default: ${DEFAULT-VALUE}).")
    int maxQueue;

    @Option(names = "--prefill-chunk", defaultValue = "256", description = "Prompt tokens prefilled per engine step (default: ${DEFAULT-VALUE}).")
    int prefillChunk;

    @Option(names = "--max-body-bytes", defaultValue = "1048576", description = "Largest request body; larger ones get 413 (default: ${DEFAULT-VALUE}).")
    int maxBody;

    @Option(names = "--kv-cache-gb", defaultValue = "2", description = "KV-cache budget in GB; without --max-model-len the context is cut to fit it (default: ${DEFAULT-VALUE}).")
    double kvCacheGb;

    @Override
    public Integer call() throws InterruptedException {
        kvCache.dtype();   // a bad --kv-cache is refused before the model loads
        Path dir = modelOptions.modelDir();
        Map<String, Path> named = new LinkedHashMap<>();
        for (String a : adapters) {
            int eq = a.indexOf('=');
            if (eq <= 0 || eq == a.length() - 1) throw new ConfigException("--adapter takes NAME=DIR, got '" + a + "'");
            if (named.put(a.substring(0, eq), Path.of(a.substring(eq + 1))) != null)
                throw new ConfigException("--adapter name '" + a.substring(0, eq) + "' is given twice");
        }
        List<String> keys = new ArrayList<>(apiKeys);
        String env = System.getenv(KEY_ENV);
        if (env != null) for (String k : env.split(",")) if (!k.isBlank()) keys.add(k.strip());
        String name = servedName != null ? servedName : modelOptions.model != null ? modelOptions.model : dir.getFileName().toString();
        ServeConfig cfg = new ServeConfig(name, named, adapterDir, template, host, port, keys, maxBatch, maxLoaded, maxModelLen,
                maxQueue, prefillChunk, maxBody, (long) (kvCacheGb * (1L << 30)));
        var model = kvCache.apply(org.peft4j.model.Models.load(dir, modelOptions.setup()));
        Server server = Server.start(model, org.peft4j.tokenizer.Tokenizer.load(dir, model.config.vocabSize()),
                org.peft4j.model.GenerationConfig.read(dir, model.config), dir, cfg);
        Runtime.getRuntime().addShutdownHook(new Thread(server::close));
        System.err.printf("peft4j serve: %s on http://%s:%d/v1 (%d rows x %d positions, KV cache %.1f MB %s; %s; adapters: %s)%n",
                name, host, server.port(), server.engine().maxBatch(), server.engine().capacity(), server.engine().kvCacheBytes() / 1e6, model.kvCacheType(),
                keys.isEmpty() ? "no API key" : "API key required", String.join(", ", server.adapters().names().subList(1, server.adapters().names().size())));
        new CountDownLatch(1).await();
        return 0;
    }
}
