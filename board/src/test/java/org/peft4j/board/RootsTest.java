package org.peft4j.board;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

import static org.junit.jupiter.api.Assertions.*;

/// Paths the page names: inside their root (relative or absolute), and refused by name (`..`, absolute elsewhere)
/// or by link (a symbolic link out); a model by folder under a model root or by Hub repo id through the resolver.
class RootsTest {
    @TempDir Path tmp;

    Roots roots(List<String> fetched) throws Exception {
        Path saves = Files.createDirectories(tmp.resolve("saves")), data = Files.createDirectories(tmp.resolve("data"));
        Path models = Files.createDirectories(tmp.resolve("models"));
        Files.createDirectories(models.resolve("org/tiny"));
        Files.writeString(models.resolve("org/tiny/config.json"), "{}");
        return new Roots(new BoardConfig("127.0.0.1", 0, saves, data, List.of(models), null, id -> { fetched.add(id); return tmp.resolve("hub").resolve(id); }, "java"));
    }

    static String refusal(Runnable r) {
        return assertThrows(BoardException.class, r::run).getMessage();
    }

    @Test
    void pathsStayInsideTheirRoot() throws Exception {
        Roots r = roots(new ArrayList<>());
        assertEquals(tmp.resolve("saves/a/b"), r.inSaves("a/b", "output_dir"));
        assertEquals(tmp.resolve("saves/a"), r.inSaves(tmp.resolve("saves/a").toString(), "output_dir"));
        assertEquals(tmp.resolve("saves/c"), r.inSaves("a/../c", "output_dir"), "a '..' that stays inside is fine");
        assertTrue(refusal(() -> r.inSaves("../data", "output_dir")).contains("outside the saves folder"));
        assertTrue(refusal(() -> r.inSaves(tmp.toString(), "output_dir")).contains("outside the saves folder"));
        assertTrue(refusal(() -> r.inData("/etc/passwd", "forgetting_text")).contains("outside the data folder"));
        Files.createSymbolicLink(tmp.resolve("saves/out"), tmp.resolve("data"));
        assertTrue(refusal(() -> r.inSaves("out/x/y", "output_dir")).contains("links outside"));
        assertEquals("output_dir", assertThrows(BoardException.class, () -> r.inSaves("..", "output_dir")).field());
    }

    @Test
    void modelsAreFoldersUnderAModelRootOrHubIds() throws Exception {
        List<String> fetched = new ArrayList<>();
        Roots r = roots(fetched);
        assertEquals(tmp.resolve("models/org/tiny"), r.model("org/tiny", "m"), "a local folder wins over the Hub id of the same name");
        assertEquals(List.of(), fetched);
        assertEquals(tmp.resolve("hub/HuggingFaceTB/SmolLM2-135M"), r.model("HuggingFaceTB/SmolLM2-135M", "m"));
        assertEquals(List.of("HuggingFaceTB/SmolLM2-135M"), fetched);
        assertTrue(refusal(() -> r.model("../../etc", "m")).contains("no model folder"));
        assertTrue(refusal(() -> r.model("/usr", "m")).contains("outside the model folders"));
        assertTrue(refusal(() -> r.model("a/../../b", "m")).contains("no model folder"));
        assertEquals(List.of("org/tiny"), r.listModels());
        Roots noHub = new Roots(new BoardConfig("127.0.0.1", 0, tmp.resolve("saves"), tmp.resolve("data"), List.of(tmp.resolve("models")), null, null, "java"));
        assertTrue(refusal(() -> noHub.model("HuggingFaceTB/SmolLM2-135M", "m")).contains("no model folder"));
    }
}
