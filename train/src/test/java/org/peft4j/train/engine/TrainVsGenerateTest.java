package org.peft4j.train.engine;

import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;
import org.peft4j.core.Gemm;
import org.peft4j.core.Gemms;
import org.peft4j.model.Architecture;
import org.peft4j.model.LlamaConfig;
import org.peft4j.model.RandomModels;
import org.peft4j.model.adapter.LoadedAdapter;
import org.peft4j.model.adapter.lora.LoraConfig;
import org.peft4j.model.llama.Activations;
import org.peft4j.model.llama.KvCache;
import org.peft4j.model.llama.LlamaModel;
import org.peft4j.model.llama.LlamaWeights;
import org.peft4j.model.quant.QuantizedModel;
import org.peft4j.quant.QuantType;

import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.assertTrue;

/// Training and generation run the same decoder: the logits of a training forward (every position, no KV cache) equal
/// those of a generation prefill (KV cache of a larger capacity, prompt in one chunk, the trained adapter passed per
/// row) to 1e-5, for Llama, Qwen2 (q/k/v biases), Mistral (sliding window, sequence within it), with LoRA, DoRA and a
/// 4-bit base. The adapters are made non-trivial first (B ≠ 0, DoRA magnitudes off the norms), so an adapter that one
/// path forgot would show: the check that the adapted logits differ from the base's guards that.
class TrainVsGenerateTest {
    static final int B = 2, T = 12;

    static LlamaConfig config(String arch) {
        return switch (arch) {
            case "llama" -> new LlamaConfig(new Architecture.Llama(), 48, 80, 2, 4, 2, 12, 97, 64, 1e-5, 10000.0, null,
                    false, false, false, 1, List.of(2), 0, 0.2, "float32");
            case "qwen2" -> new LlamaConfig(new Architecture.Qwen2(), 48, 80, 2, 4, 2, 12, 97, 64, 1e-6, 1e6, null,
                    true, false, false, 1, List.of(2), 0, 0.2, "bfloat16");
            case "mistral" -> new LlamaConfig(new Architecture.Mistral(), 48, 80, 2, 4, 1, 12, 97, 64, 1e-5, 10000.0, null,
                    false, false, false, 1, List.of(2), 16, 0.2, "bfloat16");
            default -> throw new AssertionError(arch);
        };
    }

    @ParameterizedTest(name = "{0} {1}")
    @CsvSource({"llama, lora", "llama, dora", "llama, nf4", "qwen2, lora", "qwen2, dora", "qwen2, nf4", "mistral, lora", "mistral, nf4",
            "llama, full"})
    void trainingLogitsEqualPrefillLogits(String arch, String kind) {
        LlamaConfig c = config(arch);
        Gemm gemm = Gemms.get("auto");
        LlamaWeights w = RandomModels.create(c, 3);
        LoraConfig lc = new LoraConfig(4, 8, 0.0, LoraConfig.ALL_LINEAR, false, kind.equals("dora"), LoraConfig.Init.NO_INIT,
                "none", false, null, Map.of(), Map.of(), null);
        Method method = kind.equals("full") ? new Method.Full() : new Method.Lora(lc);
        TrainModel tm;
        LlamaModel gen;
        if (kind.equals("nf4")) {
            QuantizedModel qm = QuantizedModel.quantize(w, QuantType.NF4, 64, true);
            tm = new TrainModel(qm, method, gemm, B, T, false, 7);
            gen = LlamaModel.of(qm, gemm);
        } else {
            tm = new TrainModel(w, method, gemm, B, T, false, 7);
            gen = new LlamaModel(w, gemm);
        }
        SplittableRandom rng = new SplittableRandom(11);
        for (Param p : tm.params())   // move every trained tensor off its init, so adapters change the output
            for (int i = 0; i < p.data().length; i++) p.data()[i] += (float) rng.nextDouble(-0.05, 0.05);

        int[] tokens = new int[B * T];
        for (int i = 0; i < tokens.length; i++) tokens[i] = rng.nextInt(c.vocabSize());
        tm.forward(tokens, null, T, false, 0);
        float[] train = tm.logits().clone();

        LoadedAdapter ad = tm.trainedAdapter();
        LoadedAdapter[] rows = ad == null ? null : new LoadedAdapter[]{ad, ad};
        KvCache cache = gen.newCache(B, T + 5);
        Activations acts = gen.newActivations(B, T, cache);
        float[] prefill = new float[B * T * c.vocabSize()];
        gen.forward(prefill, tokens, B, T, new int[]{1, 0}, new int[]{0, 0}, rows, cache, acts, true);
        // the cache's slots are swapped: row 0 lives in slot 1, so the comparison also covers slot addressing
        double d = maxDiff(train, prefill);
        System.out.printf("%s %s: max |train - prefill| = %.2e%n", arch, kind, d);
        assertTrue(d <= 1e-5, arch + " " + kind + ": training and prefill logits differ by " + d);

        if (ad != null) {
            float[] base = new float[prefill.length];
            KvCache c2 = gen.newCache(B, T);
            gen.forward(base, tokens, B, T, null, new int[]{0, 0}, null, c2, gen.newActivations(B, T, c2), true);
            assertTrue(maxDiff(base, prefill) > 1e-3, "the adapter must move the logits for this comparison to mean anything");
        }
    }

    static double maxDiff(float[] a, float[] b) {
        double d = 0;
        for (int i = 0; i < a.length; i++) d = Math.max(d, Math.abs(a[i] - b[i]));
        return d;
    }
}
