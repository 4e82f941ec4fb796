package org.peft4j.serve;

import org.peft4j.core.Peft4jException;
import org.peft4j.model.LlamaConfig;
import org.peft4j.model.adapter.LoadedAdapter;
import org.peft4j.model.adapter.lora.PeftAdapter;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.regex.Pattern;

/// The adapters a server can run: names registered to PEFT folders (at start, by `/v1/load_lora_adapter`, or found by
/// name under the adapter folder on first use), and a least-recently-used set of those read into memory, capped.
/// Adapters are immutable values ([LoadedAdapter]): dropping one from the set never disturbs a request already
/// running with it (the request holds the value), so eviction and unloading need no coordination with the engine.
/// Reference: vLLM `--lora-modules`, `--max-loras`, `/v1/load_lora_adapter`; LoRAX's dynamic adapter loading.
public final class AdapterRegistry {
    /// Adapter names are one path segment: letters, digits, `._-`, not starting with a dot.
    private static final Pattern NAME = Pattern.compile("[A-Za-z0-9_][A-Za-z0-9._-]{0,127}");

    private final LlamaConfig base;
    private final String baseName;
    private final Path adapterDir;                 // real path, or null
    private final int maxLoaded;
    private final Map<String, Path> registered = new TreeMap<>();
    private final LinkedHashMap<String, LoadedAdapter> loaded = new LinkedHashMap<>(16, 0.75f, true);

    public AdapterRegistry(LlamaConfig base, String baseName, Map<String, Path> adapters, Path adapterDir, int maxLoaded) {
        this.base = base; this.baseName = baseName; this.maxLoaded = maxLoaded;
        try {
            this.adapterDir = adapterDir == null ? null : adapterDir.toRealPath();
        } catch (IOException e) {
            throw new Peft4jException.ConfigException("--adapter-dir " + adapterDir + " does not exist; create it or pass an existing folder");
        }
        for (var e : adapters.entrySet()) {
            checkName(e.getKey());
            if (!Files.isRegularFile(e.getValue().resolve(PeftAdapter.CONFIG_FILE)) && !org.peft4j.model.gguf.GgufModel.isGguf(e.getValue()))
                throw new Peft4jException.ConfigException("--adapter " + e.getKey() + "=" + e.getValue() + ": no " + PeftAdapter.CONFIG_FILE
                        + " there; pass a PEFT adapter folder (adapter_config.json + adapter_model.safetensors) or a GGUF LoRA file");
            registered.put(e.getKey(), e.getValue());
        }
    }

    /// The adapter `name` (read on first use, and then kept while among the most recently used), or null for the base.
    /// Unknown names get 404 naming the models that exist.
    public LoadedAdapter get(String name) {
        if (name == null || name.equals(baseName)) return null;
        Path dir;
        synchronized (this) {
            LoadedAdapter a = loaded.get(name);
            if (a != null) return a;
            dir = registered.get(name);
            if (dir == null && adapterDir != null && NAME.matcher(name).matches()
                    && Files.isRegularFile(adapterDir.resolve(name).resolve(PeftAdapter.CONFIG_FILE)))
                dir = inside(name, "model");
            if (dir == null) throw ApiException.unknownModel(name, names());
        }
        LoadedAdapter a = read(name, dir, "model");
        synchronized (this) {
            LoadedAdapter raced = loaded.get(name);
            if (raced != null) return raced;
            loaded.put(name, a);
            trim();
            return a;
        }
    }

    /// Registers and reads `name` from `path`, relative to the adapter folder (vLLM's `load_lora_adapter`).
    public LoadedAdapter load(String name, String path) {
        if (adapterDir == null)
            throw new ApiException(403, "invalid_request_error", "lora_path", "adapter_dir_unset",
                    "loading adapters at run time is off; start the server with --adapter-dir DIR and give paths inside it");
        checkName(name);
        if (name.equals(baseName)) throw ApiException.invalid("lora_name", "'" + name + "' is the base model's name; pick another adapter name");
        if (path == null || path.isBlank()) throw ApiException.invalid("lora_path", "lora_path is required: a folder inside the adapter folder");
        Path dir = inside(path, "lora_path");
        LoadedAdapter a = read(name, dir, "lora_path");
        synchronized (this) {
            registered.put(name, dir);
            loaded.put(name, a);
            trim();
        }
        return a;
    }

    /// Forgets `name`; requests already running with it finish with it. Returns whether it was known.
    public synchronized boolean unload(String name) {
        boolean known = registered.remove(name) != null;
        return loaded.remove(name) != null || known;
    }

    /// The base model's name, then every adapter name that [#get] accepts, sorted.
    public synchronized List<String> names() {
        var all = new java.util.TreeSet<>(registered.keySet());
        all.addAll(loaded.keySet());
        if (adapterDir != null) {
            try (var s = Files.list(adapterDir)) {
                s.filter(p -> NAME.matcher(p.getFileName().toString()).matches() && Files.isRegularFile(p.resolve(PeftAdapter.CONFIG_FILE)))
                        .forEach(p -> all.add(p.getFileName().toString()));
            } catch (IOException e) {
                System.getLogger(AdapterRegistry.class.getName()).log(System.Logger.Level.WARNING, "cannot list " + adapterDir + ": " + e);
            }
        }
        List<String> out = new ArrayList<>();
        out.add(baseName);
        out.addAll(all);
        return out;
    }

    /// Adapters held in memory now.
    public synchronized int loadedCount() { return loaded.size(); }

    /// Whether `name` is held in memory now.
    public synchronized boolean isLoaded(String name) { return loaded.containsKey(name); }

    private void trim() {
        var it = loaded.entrySet().iterator();
        while (loaded.size() > maxLoaded && it.hasNext()) { it.next(); it.remove(); }
    }

    private LoadedAdapter read(String name, Path dir, String param) {
        try {
            return LoadedAdapter.read(name, dir, base);
        } catch (Peft4jException e) {
            throw ApiException.invalid(param, "adapter '" + name + "' cannot be loaded: " + e.getMessage());
        } catch (RuntimeException e) {
            throw ApiException.invalid(param, "adapter '" + name + "' cannot be loaded: " + e);
        }
    }

    /// `relative` resolved inside the adapter folder, refused when it is absolute or leaves it (`..`, a symlink out).
    private Path inside(String relative, String param) {
        Path p;
        try {
            p = Path.of(relative);
        } catch (RuntimeException e) {
            throw ApiException.invalid(param, "'" + relative + "' is not a valid path");
        }
        if (p.isAbsolute() || relative.startsWith("/") || relative.startsWith("\\"))
            throw ApiException.invalid(param, "'" + relative + "' is absolute; give a path relative to the adapter folder");
        Path dir = adapterDir.resolve(p).normalize();
        if (!dir.startsWith(adapterDir) || dir.equals(adapterDir))
            throw ApiException.invalid(param, "'" + relative + "' leaves the adapter folder; give a folder inside it");
        Path real;
        try {
            real = dir.toRealPath();
        } catch (IOException e) {
            throw ApiException.invalid(param, "'" + relative + "' does not exist in the adapter folder");
        }
        if (!real.startsWith(adapterDir))
            throw ApiException.invalid(param, "'" + relative + "' links outside the adapter folder; copy the adapter into it");
        if (!Files.isRegularFile(real.resolve(PeftAdapter.CONFIG_FILE)))
            throw ApiException.invalid(param, "'" + relative + "' holds no " + PeftAdapter.CONFIG_FILE + "; give a PEFT adapter folder");
        return real;
    }

    private static void checkName(String name) {
        if (name == null || !NAME.matcher(name).matches())
            throw ApiException.invalid("lora_name", "adapter name '" + name + "' must be 1-128 letters, digits, '.', '_' or '-', not starting with '.' or '-'");
    }
}
