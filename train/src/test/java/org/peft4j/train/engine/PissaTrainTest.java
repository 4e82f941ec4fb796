package org.peft4j.train.engine;

import org.peft4j.model.llama.Projection;
import com.fasterxml.jackson.databind.ObjectMapper;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.peft4j.core.Gemm;
import org.peft4j.core.Peft4jException.ConfigException;
import org.peft4j.core.kernels.ScalarGemm;
import org.peft4j.model.LlamaConfig;
import org.peft4j.model.Models;
import org.peft4j.model.llama.LlamaModel;
import org.peft4j.model.llama.LlamaWeights;
import org.peft4j.model.adapter.lora.LoraConfig;
import org.peft4j.model.adapter.lora.LoraWeights;
import org.peft4j.model.quant.QuantizedModel;
import org.peft4j.quant.QuantType;
import org.peft4j.testkit.Assert;
import org.peft4j.testkit.Shared;
import org.peft4j.tokenizer.Tokenizer;
import org.peft4j.train.TrainConfig;
import org.peft4j.train.TrainData;
import org.peft4j.train.Trainer;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.*;

/// PiSSA on stories260K: at initialisation the residual base plus the principal adapter computes the original model's
/// logits; after training, the converted rank-2r LoRA (LLaMA-Factory's pissa_convert) over a fresh original base
/// computes the trained model's logits.
@Tag("slow")
class PissaTrainTest {
    static final Gemm GEMM = ScalarGemm.INSTANCE;
    static final int B = 2, T = 16;
    /// W_res + s·B·A equals W to float rounding per weight (~6e-8 relative), and the adapter path sums in another order
    /// than the base product: each linear output moves by ~1e-7 of Σ|terms|, carried through 5 layers to logits up to
    /// ~18. Observed: at most 1.4e-5 (init) and 1e-5 (converted); 1e-4 absolute (+1e-5 relative) leaves ~7x and still
    /// catches any real difference (a wrong factor or a missing residual moves logits by O(1)).
    static final double LOGIT_ATOL = 1e-4, LOGIT_RTOL = 1e-5;

    static Path stories() { return Shared.require("models/stories260K-hf"); }

    static LoraConfig pissa(int niter) {
        return new LoraConfig(4, 8, 0.0, LoraConfig.ALL_LINEAR, false, false, LoraConfig.Init.PISSA,
                "none", false, null, Map.of(), Map.of(), null, niter);
    }

    static int[] tokens(int n, int V) {
        SplittableRandom r = new SplittableRandom(11);
        int[] t = new int[n];
        for (int i = 0; i < n; i++) t[i] = 3 + r.nextInt(V - 3);
        return t;
    }

    /// Logits of all positions of `rows` rows from the inference engine (KV-cache path), optionally with an adapter.
    static float[] reference(LlamaWeights w, Path adapter, int[] tok, int rows) {
        LlamaModel m = new LlamaModel(w, GEMM);
        var a = adapter == null ? null : m.loadAdapter("a", adapter);
        var cache = m.newCache(rows, T);
        var acts = m.newActivations(rows, T, cache);
        float[] out = new float[rows * T * w.config.vocabSize()];
        m.forward(out, tok, rows, T, 0, a, cache, acts, true);
        return out;
    }

    @Test
    void atInitTheAdaptedModelIsTheOriginalModel() {
        Path dir = stories();
        LlamaWeights original = Models.loadWeights(dir);
        int[] tok = tokens(B * T, original.config.vocabSize());
        float[] ref = reference(original, null, tok, B);
        for (int niter : new int[]{-1, 16}) {
            LlamaWeights w = Models.loadWeights(dir);
            TrainModel tm = new TrainModel(w, new Method.Lora(pissa(niter)), GEMM, B, T, false, 7);
            // the base arrays now hold the residual, and the adapter is the principal part (B ≠ 0, unlike plain LoRA)
            assertFalse(Arrays.equals(original.layers.get(0).wq(), w.layers.get(0).wq()), "q_proj was not rewritten");
            LoraWeights q0 = tm.adapter(0, Projection.Q_PROJ);
            assertTrue(norm(q0.b()) > 0, "PiSSA's B starts non-zero");
            assertArrayEquals(q0.a(), tm.pissaInit(0, Projection.Q_PROJ).a());
            tm.forward(tok, null, T, false, 0);
            Assert.assertClose("PiSSA at init (niter " + niter + ") vs original base", ref, tm.logits(), LOGIT_ATOL, LOGIT_RTOL);
        }
    }

    /// The whole recipe: Trainer with pissa_init + pissa_convert writes the PiSSA adapter (init_lora_weights
    /// "pissa_niter_16") and pissa_converted/ (r 2·8, alpha 2·16, init true); the latter over the untouched base gives
    /// the trained model's logits.
    @Test
    void convertedAdapterOverTheOriginalBaseEqualsTheTrainedModel(@TempDir Path tmp) throws Exception {
        Path dir = stories();
        Path out = tmp.resolve("out");
        TrainConfig cfg = TrainConfig.load(null, List.of("--model_name_or_path", dir.toString(), "--output_dir", out.toString(),
                "--dataset", "identity_en", "--dataset_dir", Shared.root().resolve("data").toString(), "--template", "default",
                "--cutoff_len", "64", "--per_device_train_batch_size", "2", "--learning_rate", "1e-2", "--lora_rank", "8",
                "--max_steps", "4", "--logging_steps", "2", "--save_steps", "0", "--gemm", "java",
                "--pissa_init", "true", "--pissa_convert", "true"));
        LlamaWeights w = Models.loadWeights(dir);
        TrainData data = TrainData.prepare(cfg, Tokenizer.load(dir), dir);
        TrainModel m = Trainer.model(cfg, w, GEMM, Math.max(T, Math.min(cfg.i("cutoff_len"), data.maxLength())));
        new Trainer(cfg, m, data.train(), data.eval(), out, dir.toString(), null).padId(data.padId()).run();

        LoraWeights trained = m.adapter(2, Projection.DOWN_PROJ), initial = m.pissaInit(2, Projection.DOWN_PROJ);
        assertFalse(Arrays.equals(trained.b(), initial.b()), "training did not move the adapter; the comparison would be vacuous");
        var om = new ObjectMapper();
        var native_ = om.readTree(out.resolve("adapter_config.json").toFile());
        assertEquals("pissa_niter_16", native_.get("init_lora_weights").asText());
        var conv = om.readTree(out.resolve("pissa_converted/adapter_config.json").toFile());
        assertEquals(16, conv.get("r").asInt());
        assertEquals(32, conv.get("lora_alpha").asInt());
        assertTrue(conv.get("init_lora_weights").asBoolean());
        assertTrue(Files.exists(out.resolve("pissa_converted/adapter_model.safetensors")));

        LlamaWeights original = Models.loadWeights(dir);
        int[] tok = tokens(T, original.config.vocabSize());
        float[] ref = reference(original, out.resolve("pissa_converted"), tok, 1);
        m.forward(tok, null, 1, T, false, 0);
        float[] mine = Arrays.copyOf(m.logits(), T * original.config.vocabSize());
        Assert.assertClose("converted LoRA over the original base vs trained PiSSA model", ref, mine, LOGIT_ATOL, LOGIT_RTOL);
        // and the converted adapter is not a no-op: the original base alone differs
        assertTrue(Assert.maxAbsDiff(reference(original, null, tok, 1), mine) > 1e-3, "training changed nothing measurable");
    }

    @Test
    void pissaIsRefusedOverA4BitBaseAndWithDora() {
        LlamaConfig c = LlamaConfig.read(stories());
        QuantizedModel qm = QuantizedModel.createRandom(c, 11, QuantType.NF4, 64, true);
        var e = assertThrows(ConfigException.class, () -> new TrainModel(qm, new Method.Lora(pissa(16)), GEMM, B, T, false, 1));
        assertTrue(e.getMessage().contains("4-bit"), e.getMessage());
        LoraConfig dora = new LoraConfig(4, 8, 0.0, LoraConfig.ALL_LINEAR, false, true, LoraConfig.Init.PISSA,
                "none", false, null, Map.of(), Map.of(), null, 16);
        e = assertThrows(ConfigException.class, () -> new TrainModel(Models.loadWeights(stories()), new Method.Lora(dora), GEMM, B, T, false, 1));
        assertTrue(e.getMessage().contains("DoRA"), e.getMessage());
    }

    static double norm(float[] x) {
        double s = 0;
        for (float v : x) s += (double) v * v;
        return Math.sqrt(s);
    }
}
