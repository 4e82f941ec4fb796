package org.peft4j.model.adapter.prefix;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.peft4j.core.DType;
import org.peft4j.core.Peft4jException;
import org.peft4j.core.kernels.ScalarGemm;
import org.peft4j.formats.safetensors.SafeTensors;
import org.peft4j.model.LlamaConfig;
import org.peft4j.model.Models;
import org.peft4j.model.RandomModels;
import org.peft4j.model.adapter.LoadedAdapter;
import org.peft4j.model.adapter.lora.PeftAdapter;
import org.peft4j.model.generate.GenerateRequest;
import org.peft4j.model.generate.Generator;
import org.peft4j.model.generate.Sampler;
import org.peft4j.model.llama.Activations;
import org.peft4j.model.llama.Decoder;
import org.peft4j.model.llama.LlamaModel;
import org.peft4j.testkit.GradCheck;
import org.peft4j.testkit.Shared;

import java.io.IOException;
import java.net.URISyntaxException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.Map;
import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.peft4j.testkit.Assert.assertClose;
import static org.peft4j.testkit.Assert.maxAbsDiff;

/// Prefix tuning (PEFT `PREFIX_TUNING`): the bundled model's logits with a PEFT-layout adapter (a grouped-query
/// model: the prefix per KV head) against reference/peft_prefix.py (numpy: the prefix as past_key_values, not rotated,
/// the text at positions n…), greedy generation (mixed batches: PrefixBatchTest), the reparameterising MLP's output
/// against the same script, the prefix's and the MLP's backward against finite differences, the PEFT file round
/// trip, and the refusals (merge, another model's shape).
class PrefixTuningTest {
    @TempDir Path tmp;

    /// As PromptTuningTest.GOLDEN_ATOL: float32 against float64 through 2 layers, the base model alone measures 1.7e-5.
    static final double GOLDEN_ATOL = 3e-5;
    /// The MLP in float32 against float64: tanh of O(1) sums of 64 terms, then sums of 24 O(1) terms: ~1e-6.
    static final double MLP_ATOL = 1e-5;

    static Path fixture() {
        try { return Path.of(PrefixTuningTest.class.getResource("/adapters/prefix-tuning").toURI()); }
        catch (URISyntaxException | NullPointerException e) { throw new IllegalStateException("missing test resource adapters/prefix-tuning; run reference/peft_prefix.py"); }
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
        int n = 4, V = m.config.vocabSize();
        assertEquals(n, a.virtualTokens());
        int[] ids, greedy;
        float[] want;
        try (SafeTensors st = SafeTensors.open(fixture().resolve("expected.safetensors"))) {
            ids = longs(st, "ids"); greedy = longs(st, "greedy"); want = st.readFloats("logits");
        }
        int[] withPlaceholders = new int[n + ids.length];   // the prefix's keys and values replace positions 0..3's
        System.arraycopy(ids, 0, withPlaceholders, n, ids.length);
        float[] all = m.logits(withPlaceholders, a);
        float[] got = Arrays.copyOfRange(all, n * V, all.length);   // PEFT returns the text's logits only
        assertClose("prefix tuning logits (text positions) vs reference/peft_prefix.py", want, got, GOLDEN_ATOL, 0);
        float[] base = m.logits(ids);
        assertTrue(maxAbsDiff(base, got) > 1, "the prefix changes the text's logits");
        System.out.printf("prefix tuning: max |logits - numpy| %.2e%n", maxAbsDiff(want, got));
        var r = Generator.generate(m, new GenerateRequest(ids, new Sampler.Greedy(), 0, greedy.length, null, a), null);
        assertArrayEquals(greedy, r.tokens(), "greedy ids with the prefix, vs the reference's");
    }

    /// The saved prefix is the MLP's output (PEFT get_prompt_embedding_to_save): PrefixEncoder on the script's MLP
    /// parameters reproduces the file.
    @Test
    void encoderOutputIsTheSavedPrefix() {
        PrefixAdapter p = PrefixAdapter.read(fixture());
        assertTrue(p.prefixProjection());
        int n = 4, D = 64, E = p.encoderHiddenSize(), W = PrefixAdapter.width(2, D);
        assertEquals(24, E);
        float[] out = new float[n * W], h = new float[n * E];
        try (SafeTensors st = SafeTensors.open(fixture().resolve("expected.safetensors"))) {
            PrefixEncoder.forward(ScalarGemm.INSTANCE, out, h, st.readFloats("mlp.embedding"), st.readFloats("mlp.w1"), st.readFloats("mlp.b1"),
                    st.readFloats("mlp.w2"), st.readFloats("mlp.b2"), n, D, E, W);
        }
        assertClose("PrefixEncoder vs reference/peft_prefix.py's MLP", p.embeddings(), out, MLP_ATOL, 0);
    }

    /// The decoder's prefix backward (keys and values of every layer, through attention and the causal mask) against
    /// finite differences of the text positions' logits, on a tiny random grouped-query model (4 query heads, 2 KV
    /// heads, transformers' init). Its worst element measures 6e-3 of GradCheck's 1e-2: two float32 layers of
    /// attention put ~1e-4 of rounding noise on each difference (the errors are random in sign and size, and the
    /// bundled model's 2048 logits of magnitude ~10 per position raise it above the tolerance); a wrong term is O(1).
    @Test
    void prefixBackwardGradCheck() {
        LlamaConfig c = LlamaConfig.fromJson("""
            {"model_type": "llama", "hidden_size": 24, "intermediate_size": 40, "num_hidden_layers": 2,
             "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 8, "vocab_size": 50,
             "max_position_embeddings": 64, "tie_word_embeddings": false}
            """, "test");
        int n = 2, L = c.numHiddenLayers(), D = c.kvDim(), V = c.vocabSize(), B = 2, T = n + 3;
        var rng = new SplittableRandom(7);
        float[] prefix = new float[n * PrefixAdapter.width(L, D)], dPrefix = new float[prefix.length];
        for (int i = 0; i < prefix.length; i++) prefix[i] = (float) rng.nextDouble(-1, 1);
        LoadedAdapter a = LoadedAdapter.of("t", "test", new PrefixAdapter(n, L, c.numKeyValueHeads(), D, D, false, null, prefix), c);
        int[] tokens = {0, 0, 1, 40, 37, 0, 0, 1, 12, 24};
        Decoder dec = Decoder.of(RandomModels.create(c, 11), ScalarGemm.INSTANCE);
        Activations acts = dec.newActivations(Activations.Plan.training(B, T, false));
        LoadedAdapter[] rows = {a, a};
        float[] logits = new float[B * T * V], text = new float[B * (T - n) * V], dlogits = new float[B * T * V];
        var grads = new Decoder.Grads(Map.of(), a, null, null, null, null, dPrefix);
        System.out.println("gradcheck worst " + GradCheck.check("prefix K/V through the decoder",
                () -> {
                    dec.forward(acts, tokens, B, T, null, null, rows, null, null);
                    dec.logits(logits, acts, true);
                    for (int b = 0; b < B; b++) System.arraycopy(logits, (b * T + n) * V, text, b * (T - n) * V, (T - n) * V);
                    return text;
                },
                dy -> {
                    Arrays.fill(dlogits, 0f);   // the placeholders' logits carry no loss, as in training
                    for (int b = 0; b < B; b++) System.arraycopy(dy, b * (T - n) * V, dlogits, (b * T + n) * V, (T - n) * V);
                    dec.forward(acts, tokens, B, T, null, null, rows, null, null);
                    dec.logits(logits, acts, true);   // backward reads the final norm's statistics
                    dec.backward(acts, tokens, dlogits, grads, null);
                },
                new GradCheck.Param("prefix", prefix, dPrefix)));
    }

    /// The reparameterising MLP's backward: embeddings, both weights and both biases.
    @Test
    void encoderGradCheck() {
        var rng = new SplittableRandom(8);
        int n = 3, D = 5, E = 4, W = 6;
        float[] e = rand(rng, n * D), w1 = rand(rng, E * D), b1 = rand(rng, E), w2 = rand(rng, W * E), b2 = rand(rng, W);
        float[] de = new float[e.length], dw1 = new float[w1.length], db1 = new float[E], dw2 = new float[w2.length], db2 = new float[W];
        float[] out = new float[n * W], h = new float[n * E], dh = new float[n * E];
        var gemm = ScalarGemm.INSTANCE;
        System.out.println("gradcheck worst " + GradCheck.check("PrefixEncoder",
                () -> { PrefixEncoder.forward(gemm, out, h, e, w1, b1, w2, b2, n, D, E, W); return out; },
                dy -> {
                    PrefixEncoder.forward(gemm, out, h, e, w1, b1, w2, b2, n, D, E, W);
                    PrefixEncoder.backward(gemm, de, dw1, db1, dw2, db2, dh, dy, h, e, w1, w2, n, D, E, W);
                },
                new GradCheck.Param("embedding", e, de), new GradCheck.Param("w1", w1, dw1), new GradCheck.Param("b1", b1, db1),
                new GradCheck.Param("w2", w2, dw2), new GradCheck.Param("b2", b2, db2)));
    }

    static float[] rand(SplittableRandom rng, int n) {
        float[] a = new float[n];
        for (int i = 0; i < n; i++) a[i] = (float) rng.nextDouble(-1, 1);
        return a;
    }

    @Test
    void peftFileRoundTripAndRefusals() throws IOException {
        PrefixAdapter p = PrefixAdapter.read(fixture());
        p.write(tmp, DType.F32);
        PrefixAdapter q = PrefixAdapter.read(tmp);
        assertArrayEquals(p.embeddings(), q.embeddings());
        assertEquals(Files.readString(fixture().resolve(PeftAdapter.CONFIG_FILE)), Files.readString(tmp.resolve(PeftAdapter.CONFIG_FILE)));
        try (SafeTensors st = SafeTensors.open(tmp.resolve(PeftAdapter.WEIGHTS_FILE))) {
            assertEquals(java.util.Set.of("prompt_embeddings"), st.tensors().keySet());
            assertArrayEquals(new long[]{4, 2 * 2 * 64}, st.info("prompt_embeddings").shape());   // (n, num_layers·2·token_dim)
        }
        LlamaModel m = model();
        m.loadAdapter("p", tmp);
        var e = assertThrows(Peft4jException.class, () -> m.merge("p"));
        assertTrue(e.getMessage().contains("prefix-tuning adapter") && e.getMessage().contains("cannot be merged"), e.getMessage());
        // a prefix sized per query head (hidden_size wide, PEFT before its GQA fix) does not fit this 4-KV-head model
        var e2 = assertThrows(Peft4jException.class, () -> LoadedAdapter.of("x", "test",
                new PrefixAdapter(4, 2, 8, 128, 128, false, null, new float[4 * 2 * 2 * 128]), m.config));
        assertTrue(e2.getMessage().contains("4 key/value heads"), e2.getMessage());
        var e3 = assertThrows(Peft4jException.class, () -> LoadedAdapter.of("x", "test",
                new PrefixAdapter(4, 3, 4, 64, 64, false, null, new float[4 * 3 * 2 * 64]), m.config));
        assertTrue(e3.getMessage().contains("num_layers 3"), e3.getMessage());
    }
}
