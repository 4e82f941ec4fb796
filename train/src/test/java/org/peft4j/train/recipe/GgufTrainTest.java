package org.peft4j.train.recipe;

import com.fasterxml.jackson.databind.ObjectMapper;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;
import org.peft4j.core.Gemm;
import org.peft4j.core.Gemms;
import org.peft4j.core.Peft4jException.ConfigException;
import org.peft4j.model.LlamaConfig;
import org.peft4j.model.Models;
import org.peft4j.model.adapter.lora.LoraConfig;
import org.peft4j.model.gguf.GgufModel;
import org.peft4j.model.llama.Projection;
import org.peft4j.model.weights.BaseWeight;
import org.peft4j.model.weights.GgmlWeight;
import org.peft4j.testkit.Shared;
import org.peft4j.train.Export;
import org.peft4j.train.TrainConfig;
import org.peft4j.train.engine.Method;
import org.peft4j.train.engine.Param;
import org.peft4j.train.engine.TrainModel;
import org.peft4j.train.estimate.MemoryEstimate;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.*;

/// LoRA over a Q8_0 GGUF of the bundled TinyStories-656K, its linear weights kept as blocks and dequantized tile by
/// tile in forward and backward: the loss and every adapter gradient against LoRA over the same file's float32
/// dequantization (the dense path), the recipe end to end (the loss falls, the blocks are untouched, no float copy
/// of the base), and the memory the estimate counts for the file.
class GgufTrainTest {
    @TempDir static Path tmp;
    static Path q8;
    static final int B = 2, T = 32;
    /// With "auto" a tile's products may be summed in another order than the dense product's (each output the same
    /// dot of ≤ 384 terms, reassociated: ≤ γ(384) ≈ 2.3e-5 of Σ|terms|, through 2 layers and the loss); 1e-4 of a
    /// gradient's norm leaves room for that and catches a real difference (a wrong tile or block moves it by O(1)).
    static final double REL_TOL = 1e-4;

    static Path model() { return Shared.require("models/tinystories-656k"); }

    @BeforeAll
    static void writeGguf() {
        q8 = Export.mergedGguf(model(), null, tmp.resolve("tiny-q8_0.gguf"), "q8_0", Gemms.get("java"));
    }

    static LoraConfig lora() {   // A and B random (NO_INIT), so that dA and dx through the adapters are non-zero
        return new LoraConfig(4, 8, 0.0, LoraConfig.ALL_LINEAR, false, false, LoraConfig.Init.NO_INIT,
                "none", false, null, Map.of(), Map.of(), null);
    }

    static double step(TrainModel tm, int[][] bt) {
        tm.zeroGrad();
        double loss = tm.forward(bt[0], bt[1], T, true, 0);
        tm.backward(bt[0], bt[1], T, 1f / (B * T), 0);
        return loss;
    }

    /// "scalar": every projection is one tile (out ≤ 384 rows), whose products are the dense product's term for term:
    /// equal bits.
    @ParameterizedTest
    @ValueSource(strings = {"scalar", "auto"})
    void gradientsEqualLoraOverTheDequantizedBase(String mode) {
        Gemm gemm = Gemms.get(mode);
        GgufModel.Base base = GgufModel.loadBase(q8, true);
        assertTrue(base.quantized());
        LlamaConfig c = base.weights().config;
        byte[][] blocks = new byte[c.numHiddenLayers() * 7][];
        for (int l = 0; l < c.numHiddenLayers(); l++)
            for (Projection p : Projection.values()) {
                BaseWeight w = base.linears()[l][p.ordinal()];
                GgmlWeight g = assertInstanceOf(GgmlWeight.class, w, p.weightName(l));
                assertFalse(g.roundActivations(), "training takes float activations");
                assertNull(p.weight(base.weights().layers.get(l)), "no float copy of " + p.weightName(l));
                blocks[l * 7 + p.ordinal()] = g.tensor().data().clone();
            }
        SplittableRandom r = new SplittableRandom(5);
        int[] tok = new int[B * T], tgt = new int[B * T];
        for (int i = 0; i < B * T; i++) { tok[i] = r.nextInt(c.vocabSize()); tgt[i] = r.nextInt(c.vocabSize()); }
        int[][] bt = {tok, tgt};
        for (boolean ck : mode.equals("scalar") ? new boolean[]{false, true} : new boolean[]{false}) {
            TrainModel q = new TrainModel(base.weights(), base.linears(), new Method.Lora(lora()), gemm, B, T, ck, 3);
            TrainModel d = new TrainModel(Models.loadWeights(q8), new Method.Lora(lora()), gemm, B, T, ck, 3);
            double lq = step(q, bt), ld = step(d, bt);
            assertEquals(ld, lq, Math.abs(ld) * (mode.equals("scalar") ? 0 : REL_TOL), "loss");
            List<Param> pq = q.params(), pd = d.params();
            assertEquals(pd.size(), pq.size());
            for (int p = 0; p < pq.size(); p++) {
                float[] gq = pq.get(p).grad(), gd = pd.get(p).grad();
                double diff = 0, norm = 0;
                for (int i = 0; i < gq.length; i++) { diff += Math.pow(gq[i] - gd[i], 2); norm += (double) gd[i] * gd[i]; }
                assertTrue(norm > 0, pq.get(p).name() + " has a zero gradient: the test would not see a difference");
                if (mode.equals("scalar")) assertArrayEquals(gd, gq, pq.get(p).name());
                else assertTrue(Math.sqrt(diff / norm) <= REL_TOL, pq.get(p).name() + ": relative difference " + Math.sqrt(diff / norm));
            }
        }
        for (int l = 0; l < c.numHiddenLayers(); l++)
            for (Projection p : Projection.values())
                assertArrayEquals(blocks[l * 7 + p.ordinal()], ((GgmlWeight) base.linears()[l][p.ordinal()]).tensor().data(), "a step changed the base");
        var e = assertThrows(ConfigException.class, () -> new TrainModel(base.weights(), base.linears(), new Method.Full(), gemm, B, T, false, 1));
        assertTrue(e.getMessage().contains("only LoRA"), e.getMessage());
    }

    static TrainConfig config(Path out, String... extra) {
        List<String> flags = new ArrayList<>(List.of("--model_name_or_path", q8.toString(), "--output_dir", out.toString(),
                "--dataset", "identity_en", "--dataset_dir", Shared.root().resolve("data").toString(), "--template", "default",
                "--cutoff_len", "96", "--per_device_train_batch_size", "4", "--learning_rate", "3e-3", "--lora_rank", "8",
                "--logging_steps", "5", "--save_steps", "0", "--gemm", "java"));
        flags.addAll(List.of(extra));
        return TrainConfig.load(null, flags);
    }

    /// The recipe over the file: the decoder holds the blocks (no float32 linear weights anywhere), the loss of the
    /// last logging window is well under the first's, and the adapter it writes loads on the GGUF model.
    @Test
    void loraOnAQ8GgufLowersTheLoss() throws Exception {
        Path out = tmp.resolve("run");
        List<FinetuneRecipe.Built> built = new ArrayList<>();
        new FinetuneRecipe().inspect(built::add).run(config(out, "--max_steps", "30"), e -> {});
        FinetuneRecipe.Built b = built.getFirst();
        assertNull(b.weights(), "no float32 copy of the base");
        assertInstanceOf(GgmlWeight.class, b.model().decoder().linear(1, Projection.DOWN_PROJ));
        var log = Files.readAllLines(out.resolve("trainer_log.jsonl"));
        var om = new ObjectMapper();
        double first = om.readTree(log.getFirst()).get("loss").asDouble(), last = om.readTree(log.get(log.size() - 2)).get("loss").asDouble();
        assertTrue(last < first * 0.6, "training loss should fall: first window " + first + ", last " + last);
        var m = Models.load(q8, Gemms.get("java"));
        m.loadAdapter("tuned", out);
    }

    @Test
    void quantizationBitOverAGgufIsRefused() {
        var e = assertThrows(ConfigException.class, () -> new FinetuneRecipe().run(config(tmp.resolve("qbit"), "--quantization_bit", "4",
                "--max_steps", "1"), ev -> {}));
        assertTrue(e.getMessage().contains("drop quantization_bit"), e.getMessage());
    }

    /// The estimate's weights for a GGUF base are what [GgufModel#loadBase] holds: Q8_0 linears (34 bytes per 32
    /// values) and float32 embeddings and norms, less than the float32 model.
    @Test
    void estimateCountsTheBaseAsStored() {
        GgufModel.Base base = GgufModel.loadBase(q8, true);
        long bytes = GgufModel.baseBytes(q8);
        assertEquals(base.bytes(), bytes);
        LlamaConfig c = base.weights().config;
        long linears = 0, all = 0;
        for (var e : org.peft4j.model.llama.LlamaWeights.expectedShapes(c).entrySet()) {
            long n = Arrays.stream(e.getValue()).reduce(1, Math::multiplyExact);
            all += 4 * n;
            if (Arrays.stream(Projection.values()).anyMatch(p -> e.getKey().endsWith(p.path() + ".weight"))) linears += n;
        }
        assertEquals(all - 4 * linears + linears / 32 * 34, bytes);
        Method lora = new Method.Lora(LoraConfig.of(8, List.of("q_proj", "v_proj")));
        MemoryEstimate e = MemoryEstimate.estimate(c, lora, true, 1, 64, false, "adamw_torch", 64, true).withWeights(bytes);
        assertEquals(bytes, e.weights());
        TrainModel tm = new TrainModel(base.weights(), base.linears(), lora, Gemms.get("java"), 1, 64, false, 1);
        assertEquals(e.trainModelActivationBytes(), tm.activationBytes(), "the estimate's activations and scratch are the model's");
    }
}
