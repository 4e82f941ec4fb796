package org.peft4j.train.generate;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;
import org.peft4j.core.Gemms;
import org.peft4j.model.Architecture;
import org.peft4j.model.LlamaConfig;
import org.peft4j.model.Models;
import org.peft4j.model.RandomModels;
import org.peft4j.model.RopeScaling;
import org.peft4j.model.generate.GenerateRequest;
import org.peft4j.model.generate.Generator;
import org.peft4j.model.generate.Sampler;
import org.peft4j.model.llama.LlamaModel;
import org.peft4j.tokenizer.Tokenizer;
import org.peft4j.testkit.Shared;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.stream.IntStream;

import static org.junit.jupiter.api.Assertions.*;

/// Generated text against independent numbers: the golden greedy text of the real models (decoded by Hugging Face
/// from the numpy reference's ids) must read prompt + streamed continuation, and every streamed continuation equals
/// decode(prompt + ids) minus decode(prompt) computed from whole-sequence decodes, for SentencePiece-style
/// vocabularies (the real models) and byte-level BPE (SmolLM2's tokenizer over a random model, whose samples split
/// characters across tokens all the time).
@Tag("slow")
class TextStreamTest {
    record Model(LlamaModel model, Tokenizer tokenizer, JsonNode golden) {}

    static Model load(String name) throws Exception {
        Path dir = Shared.require("models/" + name);
        return new Model(Models.load(dir, Gemms.get("java")), Tokenizer.load(dir),
                new ObjectMapper().readTree(dir.resolve("golden/greedy.json").toFile()));
    }

    static int[] ints(JsonNode a) {
        int[] out = new int[a.size()];
        for (int i = 0; i < out.length; i++) out[i] = a.get(i).asInt();
        return out;
    }

    /// decode(prompt + ids) minus decode(prompt), special tokens left out.
    static String continuation(Tokenizer tok, int[] prompt, int[] ids) {
        int[] all = IntStream.concat(IntStream.of(prompt), IntStream.of(ids)).toArray();
        return tok.decode(all, true).substring(tok.decode(prompt, true).length());
    }

    static final class Recorder implements TextStream.Listener {
        final StringBuilder text = new StringBuilder();
        final List<String> events = new ArrayList<>();
        Completion finished;

        public void onText(String piece) {
            assertNull(finished, "text after onFinish");
            assertFalse(piece.isEmpty(), "empty piece");
            text.append(piece);
            events.add(piece);
        }

        public void onFinish(Completion c) {
            assertNull(finished, "onFinish twice");
            finished = c;
        }
    }

    @ParameterizedTest
    @ValueSource(strings = {"tinystories-656k", "stories260K-hf"})
    void goldenTextReadsAsPromptPlusStreamedContinuation(String name) throws Exception {
        Model m = load(name);
        int[] prompt = ints(m.golden.get("prompt_ids"));
        Recorder r = new Recorder();
        Completion c = TextStream.complete(m.model, m.tokenizer, GenerateRequest.greedy(prompt, ints(m.golden.get("greedy_new_ids")).length), List.of(), r);
        assertEquals(m.golden.get("greedy_text").asText(), m.golden.get("prompt").asText() + r.text, "prompt + streamed text");
        assertEquals(r.text.toString(), c.text());
        assertSame(c, r.finished);
        assertEquals("length", c.finishReason());
        assertTrue(r.events.size() > 10, "streamed piece by piece: " + r.events);
    }

    /// The report: on stories260K "Once there was a cat" continued " named Tom." but printed "named Tom.".
    @Test
    void continuationKeepsTheSpaceAfterThePrompt() throws Exception {
        Model m = load("stories260K-hf");
        int[] prompt = m.tokenizer.encode("Once there was a cat", true);
        Completion c = TextStream.complete(m.model, m.tokenizer, GenerateRequest.greedy(prompt, 20), List.of(), null);
        assertEquals(continuation(m.tokenizer, prompt, c.tokens()), c.text());
        assertTrue(c.text().startsWith(" named Tom."), c.text());
    }

    @Test
    void stopStringCutsTheTextAndEndsTheSequence() throws Exception {
        Model m = load("tinystories-656k");
        int[] prompt = ints(m.golden.get("prompt_ids"));
        String full = m.golden.get("greedy_text").asText().substring(m.golden.get("prompt").asText().length());
        Recorder r = new Recorder();
        Completion c = TextStream.complete(m.model, m.tokenizer, GenerateRequest.greedy(prompt, 40), List.of("Lily"), r);
        assertEquals(full.substring(0, full.indexOf("Lily")), c.text());
        assertEquals(c.text(), r.text.toString(), "nothing of the stop string was streamed");
        assertEquals("Lily", c.stop());
        assertEquals(Generator.Finish.CALLBACK, c.finish());
        assertEquals("stop", c.finishReason());
        assertTrue(c.tokens().length < 40, "generation ended at the stop string");
        // it ended on the token that completed the stop string (here "Lily▁": tokens of this vocabulary carry spaces)
        assertTrue(continuation(m.tokenizer, prompt, c.tokens()).contains("Lily"));
        assertFalse(continuation(m.tokenizer, prompt, java.util.Arrays.copyOf(c.tokens(), c.tokens().length - 1)).contains("Lily"));
    }

    /// Text streams of several sequences in one batching generator (the server's use) each give their solo text.
    @Test
    void textStreamsInOneBatchEqualTheirSoloRuns() throws Exception {
        Model m = load("stories260K-hf");
        String[] prompts = {"Once there was a cat", "Lily saw a", "The sun", "Tom and his dog went to"};
        Generator gen = new Generator(m.model, 4, 128, 8);
        List<TextStream> streams = new ArrayList<>();
        List<Recorder> recorders = new ArrayList<>();
        List<GenerateRequest> requests = new ArrayList<>();
        for (int i = 0; i < prompts.length; i++) {
            GenerateRequest req = GenerateRequest.greedy(m.tokenizer.encode(prompts[i], true), 30, m.tokenizer.eosId())
                    .withSampler(i % 2 == 0 ? new Sampler.Greedy() : new Sampler.Random(0.8, 40, 0.9, 1.0), i);
            Recorder r = new Recorder();
            TextStream s = new TextStream(m.tokenizer, req.prompt(), List.of("."), r);
            requests.add(req); streams.add(s); recorders.add(r);
            gen.add(req, s);
            gen.step();
        }
        while (gen.step()) { }
        for (int i = 0; i < prompts.length; i++) {
            Completion solo = TextStream.complete(m.model, m.tokenizer, requests.get(i), List.of("."), null);
            assertEquals(solo.text(), streams.get(i).completion().text(), "row " + i);
            assertEquals(solo.text(), recorders.get(i).text.toString(), "row " + i + " streamed");
        }
    }

    /// Sampled continuations at temperature 1 from the real SentencePiece-style models.
    @ParameterizedTest
    @ValueSource(strings = {"tinystories-656k", "stories260K-hf"})
    void sampledContinuationsStreamAsTheyDecode(String name) throws Exception {
        Model m = load(name);
        String[] prompts = {"Once there was a cat", "Hi", "The café", "A", "Tom said"};
        for (int seed = 0; seed < 10; seed++) {
            int[] prompt = m.tokenizer.encode(prompts[seed % prompts.length], true);
            GenerateRequest req = GenerateRequest.greedy(prompt, 40).withSampler(new Sampler.Random(1.0, 0, 1.0, 1.0), seed);
            Recorder r = new Recorder();
            Completion c = TextStream.complete(m.model, m.tokenizer, req, List.of(), r);
            assertEquals(continuation(m.tokenizer, prompt, c.tokens()), r.text.toString(), name + " seed " + seed);
        }
    }

    /// Byte-level BPE: a random model over SmolLM2's 49152-token vocabulary samples tokens that split UTF-8
    /// characters (emoji, CJK byte pieces) and special tokens; the stream still equals the decode difference.
    @Test
    void byteLevelRandomContinuations() {
        Tokenizer tok = Tokenizer.load(Shared.require("tokenizers/smollm2-135m-instruct/tokenizer.json"));
        LlamaConfig c = new LlamaConfig(new Architecture.Llama(), 32, 64, 1, 2, 1, 16, tok.vocabSize(), 256, 1e-5, 10000.0,
                new RopeScaling.None(), true, false, false, 1, List.of(2), 0, 0.5, "float32");
        LlamaModel model = new LlamaModel(RandomModels.create(c, 3), Gemms.get("java"));
        String[] prompts = {"Once there was a cat", "日本語", "Emoji 🚀", "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"};
        int splitChars = 0;
        for (int seed = 0; seed < 40; seed++) {
            int[] prompt = tok.encode(prompts[seed % prompts.length], false);
            GenerateRequest req = GenerateRequest.greedy(prompt, 60).withSampler(new Sampler.Random(1.0, 0, 1.0, 1.0), seed);
            Recorder r = new Recorder();
            Completion done = TextStream.complete(model, tok, req, List.of(), r);
            assertEquals(continuation(tok, prompt, done.tokens()), r.text.toString(), "seed " + seed);
            for (int id : done.tokens()) if (tok.decode(new int[] {id}, true).contains("\uFFFD")) splitChars++;
        }
        assertTrue(splitChars >= 5, "the samples should split characters across tokens: " + splitChars);
    }
}
