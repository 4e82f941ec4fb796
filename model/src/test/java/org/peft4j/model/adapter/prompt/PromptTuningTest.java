package org.peft4j.model.adapter.prompt;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.peft4j.core.DType;
import org.peft4j.core.Peft4jException;
import org.peft4j.core.kernels.ScalarGemm;
import org.peft4j.formats.safetensors.SafeTensors;
import org.peft4j.model.Models;
import org.peft4j.model.adapter.LoadedAdapter;
import org.peft4j.model.adapter.lora.PeftAdapter;
import org.peft4j.model.generate.GenerateRequest;
import org.peft4j.model.generate.Generator;
import org.peft4j.model.generate.Sampler;
import org.peft4j.model.llama.LlamaModel;
import org.peft4j.testkit.Shared;

import java.io.IOException;
import java.net.URISyntaxException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.peft4j.testkit.Assert.assertClose;
import static org.peft4j.testkit.Assert.maxAbsDiff;

/// Prompt tuning (PEFT `PROMPT_TUNING`): the bundled model's logits with a PEFT-layout adapter against
/// reference/peft_methods.py (numpy, PEFT's concatenation of the prompt embeddings before the input embeddings,
/// positions over both), greedy generation through the batching generator against the reference's greedy ids,
/// the PEFT file round trip, and the refusal to merge.
class PromptTuningTest {
    @TempDir Path tmp;

    /// As Ia3Test.GOLDEN_ATOL: float32 against float64 through 2 layers, the base model alone measures 1.7e-5.
    static final double GOLDEN_ATOL = 3e-5;

    static Path fixture() {
        try { return Path.of(PromptTuningTest.class.getResource("/adapters/prompt-tuning").toURI()); }
        catch (URISyntaxException | NullPointerException e) { throw new IllegalStateException("missing test resource adapters/prompt-tuning; run reference/peft_methods.py"); }
    }

    static int[] longs(SafeTensors st, String name) {
        var seg = st.bytes(name);
        int[] out = new int[(int) st.info(name).shape()[0]];
        for (int i = 0; i < out.length; i++)
            out[i] = (int) seg.getAtIndex(java.lang.foreign.ValueLayout.JAVA_LONG_UNALIGNED.withOrder(java.nio.ByteOrder.LITTLE_ENDIAN), i);
        return out;
    }

    static LlamaModel model() { return Models.load(Shared.require("models/tinystories-656k"), ScalarGemm.INSTANCE); }

    @Test
    void logitsAndGreedyIdsMatchNumpyReference() {
        LlamaModel m = model();
        LoadedAdapter a = LoadedAdapter.read("p", fixture(), m.config);
        assertEquals(5, a.virtualTokens());
        int[] ids, greedy;
        float[] want;
        try (SafeTensors st = SafeTensors.open(fixture().resolve("expected.safetensors"))) {
            ids = longs(st, "ids"); greedy = longs(st, "greedy"); want = st.readFloats("logits");
        }
        int[] withPlaceholders = new int[5 + ids.length];   // the decoder puts the prompt embeddings at positions 0..4
        System.arraycopy(ids, 0, withPlaceholders, 5, ids.length);
        float[] got = m.logits(withPlaceholders, a);
        assertClose("prompt tuning logits (virtual + text positions) vs reference/peft_methods.py", want, got, GOLDEN_ATOL, 0);
        float[] base = m.logits(withPlaceholders);
        int V = m.config.vocabSize();
        assertTrue(maxAbsDiff(Arrays.copyOfRange(base, 5 * V, base.length), Arrays.copyOfRange(got, 5 * V, got.length)) > 1, "the prompt changes the text's logits");
        System.out.printf("prompt tuning: max |logits - numpy| %.2e%n", maxAbsDiff(want, got));
        // the generator prepends the placeholders itself: callers pass the text's ids
        var r = Generator.generate(m, new GenerateRequest(ids, new Sampler.Greedy(), 0, greedy.length, null, a), null);
        assertArrayEquals(greedy, r.tokens(), "greedy ids with the prompt, vs the reference's");
    }

    /// A prompt-tuned row, an unadapted row and another prompt-tuned row in one generator give what each gives alone.
    @Test
    void rowsWithAndWithoutThePromptInOneGenerator() {
        LlamaModel m = model();
        LoadedAdapter a = LoadedAdapter.read("p", fixture(), m.config);
        int[][] prompts = {{1, 400, 37, 99}, {1, 12, 1024}, {1, 7, 7, 300, 55, 6}};
        LoadedAdapter[] rows = {a, null, a};
        int[][] alone = new int[3][];
        for (int i = 0; i < 3; i++)
            alone[i] = Generator.generate(m, new GenerateRequest(prompts[i], new Sampler.Greedy(), 0, 5, null, rows[i]), null).tokens();
        Generator g = new Generator(m, 3, 32, 4);
        var seqs = new Generator.Sequence[3];
        for (int i = 0; i < 3; i++) seqs[i] = g.add(new GenerateRequest(prompts[i], new Sampler.Greedy(), 0, 5, null, rows[i]), null);
        while (g.step()) { }
        for (int i = 0; i < 3; i++) assertArrayEquals(alone[i], seqs[i].result().tokens(), "row " + i);
        assertTrue(!Arrays.equals(alone[0], Generator.generate(m, GenerateRequest.greedy(prompts[0], 5), null).tokens()), "the prompt changes the answer");
    }

    @Test
    void peftFileRoundTripAndNoMerge() throws IOException {
        PromptAdapter p = PromptAdapter.read(fixture());
        p.write(tmp, DType.F32);
        PromptAdapter q = PromptAdapter.read(tmp);
        assertArrayEquals(p.embeddings(), q.embeddings());
        assertEquals(Files.readString(fixture().resolve(PeftAdapter.CONFIG_FILE)), Files.readString(tmp.resolve(PeftAdapter.CONFIG_FILE)));
        try (SafeTensors st = SafeTensors.open(tmp.resolve(PeftAdapter.WEIGHTS_FILE))) {
            assertEquals(java.util.Set.of("prompt_embeddings"), st.tensors().keySet());
            assertArrayEquals(new long[]{5, 128}, st.info("prompt_embeddings").shape());
        }
        LlamaModel m = model();
        m.loadAdapter("p", tmp);
        var e = assertThrows(Peft4jException.class, () -> m.merge("p"));
        assertTrue(e.getMessage().contains("cannot be merged"), e.getMessage());
        var e2 = assertThrows(Peft4jException.class, () -> LoadedAdapter.of("x", "test",
                new PromptAdapter(5, 64, "RANDOM", null, null, null, new float[5 * 64]), m.config));
        assertTrue(e2.getMessage().contains("hidden size is 128"), e2.getMessage());
    }
}
