package org.peft4j.tokenizer;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.peft4j.core.Peft4jException;
import org.peft4j.core.Peft4jException.ConfigException;
import org.peft4j.core.Peft4jException.FormatException;
import org.peft4j.testkit.Shared;

import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;

import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/// Bad files give a FormatException that names the file; a directory without a tokenizer gives a ConfigException.
class MalformedFileTest {
    static <T extends Peft4jException> void assertNames(Class<T> type, Path file, Runnable load) {
        T e = assertThrows(type, load::run);
        assertTrue(e.getMessage().contains(file.toString()), "message should name " + file + ": " + e.getMessage());
    }

    @Test
    void truncatedTokenizerJson(@TempDir Path dir) throws Exception {
        byte[] whole = Files.readAllBytes(Shared.require("models/stories260K-hf/tokenizer.json"));
        Path file = dir.resolve("tokenizer.json");
        Files.write(file, Arrays.copyOf(whole, whole.length / 2));
        assertNames(FormatException.class, file, () -> Tokenizer.load(dir));
    }

    @Test
    void jsonWithoutModel(@TempDir Path dir) throws Exception {
        Path file = dir.resolve("tokenizer.json");
        Files.writeString(file, "{\"version\": \"1.0\", \"added_tokens\": []}");
        assertNames(FormatException.class, file, () -> Tokenizer.load(file));
    }

    @Test
    void mergeWithUnknownToken(@TempDir Path dir) throws Exception {
        Path file = dir.resolve("tokenizer.json");
        Files.writeString(file, """
                {"model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2}, "merges": ["a b", "b c"]}}""");
        assertNames(FormatException.class, file, () -> Tokenizer.load(file));
    }

    @Test
    void truncatedTokenizerModel(@TempDir Path dir) throws Exception {
        byte[] whole = Files.readAllBytes(Shared.require("tokenizers/llama2/tokenizer.model"));
        Path file = dir.resolve("tokenizer.model");
        Files.write(file, Arrays.copyOf(whole, 10_001));
        assertNames(FormatException.class, file, () -> Tokenizer.load(dir));
    }

    @Test
    void notAProtobuf(@TempDir Path dir) throws Exception {
        Path file = dir.resolve("tokenizer.model");
        Files.write(file, "this is plain text, not a model\n".getBytes(StandardCharsets.UTF_8));
        assertNames(FormatException.class, file, () -> Tokenizer.load(file));
    }

    @Test
    void directoryWithoutTokenizer(@TempDir Path dir) {
        assertNames(ConfigException.class, dir, () -> Tokenizer.load(dir));
    }

    @Test
    void badTokenizerConfig(@TempDir Path dir) throws Exception {
        Path file = dir.resolve("tokenizer_config.json");
        Files.writeString(file, "{\"bos_token\": ");
        assertNames(FormatException.class, file, () -> TokenizerConfig.read(dir));
    }
}
