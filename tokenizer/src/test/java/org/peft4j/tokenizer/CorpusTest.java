package org.peft4j.tokenizer;

import ai.djl.huggingface.tokenizers.HuggingFaceTokenizer;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.peft4j.testkit.Shared;

import java.io.InputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/// Real text (LLaMA-Factory's alpaca demos, English and Chinese, and the wiki demo) against the HF oracle, and the
/// encoding speed on a few KB.
@Tag("slow")
class CorpusTest {
    /// Encoding 4 KB should take milliseconds; the bound is loose because the build machine has 2 shared cores.
    static final double MAX_MS_PER_4KB = 100;

    static String corpus() throws Exception {
        Path dir = Shared.require("data/llamafactory");
        ObjectMapper json = new ObjectMapper();
        StringBuilder sb = new StringBuilder();
        for (String f : new String[] {"alpaca_en_demo.json", "alpaca_zh_demo.json"}) {
            JsonNode rows = json.readTree(dir.resolve(f).toFile());
            for (int i = 0; i < 40; i++) {
                JsonNode r = rows.get(i);
                sb.append(r.path("instruction").asText()).append('\n').append(r.path("input").asText()).append("\n\n")
                        .append(r.path("output").asText()).append("\n\n");
            }
        }
        sb.append(Files.readString(dir.resolve("wiki_demo.txt")), 0, 20_000);
        return sb.toString();
    }

    @Test
    void smolLm2MatchesHfOnCorpus() throws Exception {
        Path file = Shared.require("tokenizers/smollm2-135m-instruct/tokenizer.json");
        String text = corpus();
        Tokenizer ours = Tokenizer.load(file);
        int[] got = ours.encode(text, false);
        try (InputStream in = Files.newInputStream(file); HuggingFaceTokenizer hf = HuggingFaceTokenizer.newInstance(in, Map.of("truncation", "false", "modelMaxLength", "100000000"))) {
            long[] expected = hf.encode(text, false, false).getIds();
            assertArrayEquals(expected, Arrays.stream(got).asLongStream().toArray());
        }
        assertEquals(text, ours.decode(got, false));
        reportSpeed("smollm2 tokenizer.json", ours, text);
    }

    @Test
    void stories260kAndLlama2Speed() throws Exception {
        String text = corpus();
        Tokenizer stories = Tokenizer.load(Shared.require("models/stories260K-hf"));
        assertEquals(text, stories.decode(stories.encode(text, false), false), "byte fallback round trip");
        reportSpeed("stories260K tokenizer.json", stories, text);
        Tokenizer llama2 = Tokenizer.load(Shared.require("tokenizers/llama2/tokenizer.model"));
        assertEquals(text, llama2.decode(llama2.encode(text, false), false), "llama2 round trip");
        reportSpeed("llama2 tokenizer.model", llama2, text);
    }

    /// Times 4 KB chunks after a warm-up (the word cache is cleared by using fresh text each round).
    static void reportSpeed(String name, Tokenizer tok, String text) {
        int chunk = 4096, rounds = Math.min(20, text.length() / chunk);
        for (int i = 0; i < rounds; i++) tok.encode(text.substring(i * chunk, (i + 1) * chunk), false); // warm-up, JIT
        long best = Long.MAX_VALUE;
        for (int i = 0; i < rounds; i++) {
            String s = text.substring(i * chunk, (i + 1) * chunk) + i; // a new string, but the words repeat as in real use
            long t0 = System.nanoTime();
            tok.encode(s, false);
            best = Math.min(best, System.nanoTime() - t0);
        }
        double ms = best / 1e6;
        System.out.printf("%s: best %.3f ms per 4 KB (%d rounds)%n", name, ms, rounds);
        assertTrue(ms < MAX_MS_PER_4KB, name + " took " + ms + " ms for 4 KB");
    }
}
