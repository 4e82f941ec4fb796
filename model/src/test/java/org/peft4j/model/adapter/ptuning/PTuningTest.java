package org.peft4j.model.adapter.ptuning;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.peft4j.core.DType;
import org.peft4j.core.Peft4jException;
import org.peft4j.core.kernels.ScalarGemm;
import org.peft4j.formats.safetensors.SafeTensors;
import org.peft4j.model.Models;
import org.peft4j.model.adapter.LoadedAdapter;
import org.peft4j.model.adapter.lora.PeftAdapter;
import org.peft4j.model.llama.LlamaModel;
import org.peft4j.testkit.GradCheck;
import org.peft4j.testkit.Shared;

import java.io.IOException;
import java.net.URISyntaxException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.peft4j.testkit.Assert.assertClose;
import static org.peft4j.testkit.Assert.maxAbsDiff;

/// P-tuning (PEFT `P_TUNING`): the prompt encoder's forward (MLP and bidirectional LSTM) against
/// reference/ptuning_reference.py (numpy, PEFT's PromptEncoder and torch's LSTM equations) for given weights, its
/// backward against finite differences (and a wrong gradient rejected), the bundled model's logits with the
/// P_TUNING folder (and with one written from the Java encoder's output) against the reference, the PEFT file round
/// trip, the refusal to merge, and PromptEncoderConfig's refusals.
class PTuningTest {
    @TempDir Path tmp;

    /// As PromptTuningTest.GOLDEN_ATOL: float32 against float64 through the 2-layer model.
    static final double GOLDEN_ATOL = 3e-5;

    static Path fixture() {
        try { return Path.of(PTuningTest.class.getResource("/adapters/p-tuning").toURI()); }
        catch (URISyntaxException | NullPointerException e) { throw new IllegalStateException("missing test resource adapters/p-tuning; run reference/ptuning_reference.py"); }
    }

    /// The encoder of a fixture file with the reference's weights loaded by PEFT's parameter names; `want` gets the
    /// reference output.
    static PromptEncoder encoder(String file, float[][] want) {
        try (SafeTensors st = SafeTensors.open(fixture().resolve(file))) {
            var md = st.metadata();
            int n = (int) st.info("embedding.weight").shape()[0], C = (int) st.info("embedding.weight").shape()[1];
            var cfg = new PromptEncoderConfig(n, md.get("type"), Integer.parseInt(md.get("encoder_hidden_size")), Integer.parseInt(md.get("encoder_num_layers")), 0);
            PromptEncoder e = new PromptEncoder(cfg, C, new SplittableRandom(1));
            var shapes = PromptEncoder.shapes(cfg, C);   // the estimate's list is the encoder's
            assertEquals(shapes.stream().map(java.util.Map.Entry::getKey).toList(), e.tensors().stream().map(PromptEncoder.Tensor::name).toList());
            for (int i = 0; i < shapes.size(); i++) assertArrayEquals(shapes.get(i).getValue(), e.tensors().get(i).shape());
            assertEquals(st.tensors().size() - 2, 2 * e.tensors().size(), "the reference holds every tensor of the encoder and its gradient, the output and dout");
            for (PromptEncoder.Tensor t : e.tensors()) {
                assertArrayEquals(st.info(t.name()).shape(), t.shape(), t.name());
                System.arraycopy(st.readFloats(t.name()), 0, t.data(), 0, t.data().length);
            }
            want[0] = st.readFloats("output");
            return e;
        }
    }

    static LlamaModel model() { return Models.load(Shared.require("models/tinystories-656k"), ScalarGemm.INSTANCE); }

    @Test
    void encoderForwardMatchesNumpyReference() {
        for (String f : new String[]{"encoder-mlp.safetensors", "encoder-lstm.safetensors"}) {
            float[][] want = new float[1][];
            PromptEncoder e = encoder(f, want);
            assertClose("PromptEncoder " + f + " vs reference/ptuning_reference.py", want[0], e.forward(), 1e-5, 1e-5);
            System.out.printf("%s: max |output - numpy| %.2e%n", f, maxAbsDiff(want[0], e.output()));
        }
    }

    /// The backward against the reference's float64 central differences of Σ dout·output, for every weight of both
    /// fixture encoders (MLP: C 128 → H 32; LSTM: 2 layers of H 8 each way over 4 virtual tokens).
    @Test
    void backwardMatchesNumpyDifferences() {
        for (String f : new String[]{"encoder-mlp.safetensors", "encoder-lstm.safetensors"}) {
            PromptEncoder e = encoder(f, new float[1][]);
            try (SafeTensors st = SafeTensors.open(fixture().resolve(f))) {
                e.forward();
                e.backward(st.readFloats("dout"));
                double worst = 0;
                for (PromptEncoder.Tensor t : e.tensors()) {
                    float[] want = st.readFloats("grad." + t.name());
                    assertClose(f + " d" + t.name() + " vs float64 differences", want, t.grad(), 2e-6, 1e-4);
                    worst = Math.max(worst, maxAbsDiff(want, t.grad()));
                    float[] wrong = t.grad().clone();
                    for (int i = 0; i < wrong.length; i++) wrong[i] *= 1.01f;
                    assertThrows(AssertionError.class, () -> assertClose("1% off", want, wrong, 2e-6, 1e-4), t.name() + ": a 1% error is caught");
                }
                System.out.printf("%s: max |grad - numpy differences| %.2e%n", f, worst);
            }
        }
    }

    /// GradCheck (float central differences, Richardson-extrapolated) on every weight of a small MLP encoder. The
    /// linears feeding a ReLU get biases ±3 on alternating units, so no ReLU input comes near its kink under the
    /// check's steps (a kink crossed would fail the check, not pass it): half the units off (gradient exactly 0),
    /// half on. The LSTM's gradients (~1e-5 for the recurrent weights at these sizes) sit under float differences'
    /// noise (measured 2-40% on them): [#backwardMatchesNumpyDifferences] checks the LSTM in float64 instead.
    @Test
    void mlpGradientsMatchFiniteDifferencesAndAWrongOneIsRejected() {
        var cfg = new PromptEncoderConfig(3, "MLP", 5, 2, 0);
        PromptEncoder e = new PromptEncoder(cfg, 6, new SplittableRandom(3));
        for (String relu : new String[]{"mlp_head.0", "mlp_head.2"})
            for (PromptEncoder.Tensor t : e.tensors())
                if (t.name().equals(relu + ".bias")) for (int i = 0; i < t.data().length; i++) t.data()[i] = i % 2 == 0 ? 3f : -3f;
        // the output's constant part only adds float rounding to the differences (its bias gradient, Σ dout, is unchanged)
        e.tensors().stream().filter(t -> t.name().equals("mlp_head.4.bias")).forEach(t -> Arrays.fill(t.data(), 0f));
        GradCheck.Param[] ps = e.tensors().stream().map(t -> new GradCheck.Param(t.name(), t.data(), t.grad())).toArray(GradCheck.Param[]::new);
        System.out.println("MLP encoder: worst " + GradCheck.check("PromptEncoder MLP", () -> e.forward().clone(), e::backward, ps));
        var t = e.tensors().stream().filter(x -> x.name().equals("mlp_head.0.weight")).findFirst().orElseThrow();
        assertThrows(AssertionError.class, () -> GradCheck.check("wrong", () -> e.forward().clone(), d -> {
            e.backward(d);
            for (int i = 0; i < t.grad().length; i++) t.grad()[i] *= 1.1f;
        }, ps), "a 10% error in mlp_head.0.weight is caught");
    }

    @Test
    void logitsWithThePTuningFolderMatchNumpyReference() throws IOException {
        LlamaModel m = model();
        LoadedAdapter a = LoadedAdapter.read("p", fixture(), m.config);
        assertEquals(4, a.virtualTokens());
        int[] ids;
        float[] want;
        try (SafeTensors st = SafeTensors.open(fixture().resolve("expected.safetensors"))) {
            want = st.readFloats("logits");
            var seg = st.bytes("ids");
            ids = new int[(int) st.info("ids").shape()[0]];
            for (int i = 0; i < ids.length; i++)
                ids[i] = (int) seg.getAtIndex(java.lang.foreign.ValueLayout.JAVA_LONG_UNALIGNED.withOrder(java.nio.ByteOrder.LITTLE_ENDIAN), i);
        }
        int[] withPlaceholders = new int[4 + ids.length];
        System.arraycopy(ids, 0, withPlaceholders, 4, ids.length);
        float[] got = m.logits(withPlaceholders, a);
        assertClose("P-tuning logits vs reference/ptuning_reference.py", want, got, GOLDEN_ATOL, 0);
        int V = m.config.vocabSize();
        float[] base = m.logits(withPlaceholders);
        assertTrue(maxAbsDiff(Arrays.copyOfRange(base, 4 * V, base.length), Arrays.copyOfRange(got, 4 * V, got.length)) > 0.1, "the virtual tokens change the text's logits");
        // the chain PEFT runs: the (Java) encoder's output saved as prompt_embeddings, loaded, prepended
        float[][] out = new float[1][];
        PromptEncoder e = encoder("encoder-mlp.safetensors", out);
        new PTuningAdapter(e.config, e.C, null, e.forward()).write(tmp, DType.F32);
        float[] chained = m.logits(withPlaceholders, LoadedAdapter.read("q", tmp, m.config));
        assertClose("logits from the Java encoder's saved output vs reference", want, chained, GOLDEN_ATOL, 0);
        System.out.printf("p-tuning: max |logits - numpy| %.2e (fixture), %.2e (Java encoder)%n", maxAbsDiff(want, got), maxAbsDiff(want, chained));
    }

    @Test
    void peftFileRoundTripFieldsAndNoMerge() throws IOException {
        PTuningAdapter p = PTuningAdapter.read(fixture());
        assertEquals(new PromptEncoderConfig(4, "MLP", 32, 2, 0), p.config());
        p.write(tmp, DType.F32);
        PTuningAdapter q = PTuningAdapter.read(tmp);
        assertArrayEquals(p.embeddings(), q.embeddings());
        // our writer writes what the reference (json.dumps(indent=2, sort_keys=True) of PromptEncoderConfig's fields) wrote
        assertEquals(Files.readString(fixture().resolve(PeftAdapter.CONFIG_FILE)), Files.readString(tmp.resolve(PeftAdapter.CONFIG_FILE)));
        try (SafeTensors st = SafeTensors.open(tmp.resolve(PeftAdapter.WEIGHTS_FILE))) {
            assertEquals(java.util.Set.of("prompt_embeddings"), st.tensors().keySet());
            assertArrayEquals(new long[]{4, 128}, st.info("prompt_embeddings").shape());
        }
        // PEFT's defaults: encoder_hidden_size unset = token_dim
        assertTrue(new PTuningAdapter(new PromptEncoderConfig(2, "LSTM", null, 1, 0), 8, null, new float[16]).configJson().contains("\"encoder_hidden_size\": 8"));
        LlamaModel m = model();
        m.loadAdapter("p", tmp);
        var e = assertThrows(Peft4jException.class, () -> m.merge("p"));
        assertTrue(e.getMessage().contains("cannot be merged"), e.getMessage());
    }

    @Test
    void configRefusesWhatPeftIgnoresOrPeft4jDoesNotBuild() {
        for (var bad : new Runnable[]{() -> new PromptEncoderConfig(0, "MLP", null, 2, 0), () -> new PromptEncoderConfig(4, "GRU", null, 2, 0),
                () -> new PromptEncoderConfig(4, "MLP", null, 3, 0), () -> new PromptEncoderConfig(4, "LSTM", null, 2, 0.1),
                () -> new PromptEncoderConfig(4, "MLP", null, 2, 0.1), () -> new PromptEncoderConfig(4, "LSTM", 0, 2, 0)}) {
            var e = assertThrows(Peft4jException.ConfigException.class, bad::run);
            assertTrue(e.getMessage().contains("encoder_") || e.getMessage().contains("num_virtual_tokens"), e.getMessage());
        }
    }
}
