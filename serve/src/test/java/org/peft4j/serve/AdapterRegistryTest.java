package org.peft4j.serve;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.peft4j.core.DType;
import org.peft4j.model.LlamaConfig;
import org.peft4j.model.adapter.lora.LoraConfig;
import org.peft4j.model.adapter.lora.LoraWeights;
import org.peft4j.model.adapter.lora.PeftAdapter;
import org.peft4j.model.llama.Projection;
import org.peft4j.testkit.Shared;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.*;

/// The adapter registry: lookup by name (registered, or a folder of the adapter folder on first use), the LRU cap,
/// unloading, and run-time paths confined to the adapter folder.
class AdapterRegistryTest {
    static final LlamaConfig BASE = LlamaConfig.read(Shared.root().resolve("models/tinystories-656k"));

    static Path adapter(Path dir) {
        Map<PeftAdapter.Target, LoraWeights> w = new java.util.HashMap<>();
        for (int l = 0; l < BASE.numHiddenLayers(); l++)
            w.put(new PeftAdapter.Target(l, "q_proj"), LoraWeights.allocate(2, Projection.of("q_proj").in(BASE), Projection.of("q_proj").out(BASE), false));
        new PeftAdapter(LoraConfig.of(2, List.of("q_proj")), "tiny", null, w).write(dir, DType.F32);
        return dir;
    }

    static ApiException refused(Runnable r) {
        return assertThrows(ApiException.class, r::run);
    }

    @Test
    void namesLruAndUnload(@TempDir Path tmp) {
        Path dir = tmp.resolve("adapters");
        adapter(dir.resolve("a"));
        adapter(dir.resolve("b"));
        adapter(dir.resolve("c"));
        AdapterRegistry r = new AdapterRegistry(BASE, "base", Map.of("x", adapter(tmp.resolve("x"))), dir, 2);
        assertEquals(List.of("base", "a", "b", "c", "x"), r.names());
        assertNull(r.get("base"));
        assertEquals("a", r.get("a").name);
        assertSame(r.get("a"), r.get("a"), "kept in memory");
        r.get("b");
        r.get("x");
        assertEquals(2, r.loadedCount(), "capped at 2");
        assertFalse(r.isLoaded("a"), "the least recently used one went");
        assertNotNull(r.get("a"), "and is read again on next use");
        ApiException unknown = refused(() -> r.get("nope"));
        assertEquals(404, unknown.status);
        assertTrue(unknown.getMessage().contains("base, a, b, c, x"), unknown.getMessage());
        assertEquals("y", r.load("y", "c").name);
        assertTrue(r.names().contains("y"));
        assertTrue(r.unload("y"));
        assertFalse(r.names().contains("y"));
        assertEquals(404, refused(() -> r.get("y")).status);
    }

    @Test
    void runTimePathsStayInsideTheAdapterFolder(@TempDir Path tmp) throws Exception {
        Path dir = tmp.resolve("adapters");
        adapter(dir.resolve("ok"));
        Path outside = adapter(tmp.resolve("outside"));
        Files.createSymbolicLink(dir.resolve("link"), outside);
        AdapterRegistry r = new AdapterRegistry(BASE, "base", Map.of(), dir, 4);
        for (String p : List.of("../outside", outside.toString(), "link", "ok/../../outside", "ok/../link", "", "missing", "."))
            assertEquals(400, refused(() -> r.load("n", p)).status, p);
        assertEquals(400, refused(() -> r.get("link")).status, "a name that is a symlink out is refused too");
        for (String name : List.of("../x", "a/b", ".hidden", "", "base"))
            assertEquals(400, refused(() -> r.load(name, "ok")).status, name);
        assertEquals("ok2", r.load("ok2", "ok").name);
        AdapterRegistry closed = new AdapterRegistry(BASE, "base", Map.of(), null, 4);
        assertEquals(403, refused(() -> closed.load("n", "ok")).status, "no --adapter-dir: no run-time loading");
    }
}
