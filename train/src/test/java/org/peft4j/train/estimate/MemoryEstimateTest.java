package org.peft4j.train.estimate;

import org.junit.jupiter.api.Test;
import org.peft4j.core.Gemm;
import org.peft4j.core.kernels.ScalarGemm;
import org.peft4j.model.Architecture;
import org.peft4j.model.LlamaConfig;
import org.peft4j.model.ModelPresets;
import org.peft4j.model.RandomModels;
import org.peft4j.model.llama.LlamaWeights;
import org.peft4j.model.adapter.lora.LoraConfig;
import org.peft4j.model.quant.QuantizedModel;
import org.peft4j.quant.Nf4Tensor;
import org.peft4j.quant.QuantType;
import org.peft4j.model.layers.KtoLoss;
import org.peft4j.model.layers.PreferenceLoss;
import org.peft4j.train.data.TokenizedExample;
import org.peft4j.train.engine.KtoObjective;
import org.peft4j.train.engine.Method;
import org.peft4j.train.engine.PreferenceObjective;
import org.peft4j.train.engine.SequenceObjective;
import org.peft4j.train.engine.Param;
import org.peft4j.train.engine.TrainModel;
import org.peft4j.train.optim.AdamW;
import org.peft4j.train.optim.AdamW8bit;

import java.util.ArrayList;
import java.util.List;

import static org.junit.jupiter.api.Assertions.*;

/// The estimate's counts against the allocations they predict: a real small TrainModel's `activationBytes()` and
/// `params()`, AdamW's and AdamW8bit's state, and NF4 tensors' stored bytes.
class MemoryEstimateTest {
    static final Gemm GEMM = ScalarGemm.INSTANCE;

    /// 2 layers, hidden 64, 4 heads / 2 KV heads of 16, F 96, vocab 256: odd enough that a swapped C/F/qDim/kvDim shows.
    static LlamaConfig tiny(boolean tied) {
        return new LlamaConfig(new Architecture.Llama(), 64, 96, 2, 4, 2, 16, 256, 128, 1e-5, 10000.0, null,
                tied, false, false, 1, List.of(2), 0, 0.02, "float32");
    }

    static long paramFloats(TrainModel tm) {
        long n = 0;
        for (Param p : tm.params()) n += p.data().length;
        return n;
    }

    /// use_adam_mini, use_muon, use_galore, use_apollo, use_badam: the estimate's optimizer bytes equal the state the optimizers
    /// allocate over a real TrainModel's parameters (full fine-tuning of `tiny`), and each is below AdamW's.
    @Test
    void methodOptimizerStateMatchesTheOptimizers() {
        for (boolean tied : new boolean[]{true, false}) {
            LlamaConfig c = tiny(tied);
            TrainModel tm = new TrainModel(RandomModels.create(c, 1), new Method.Full(), GEMM, 1, 8, false, 1);
            List<Param> ps = tm.params();
            AdamW.Config ac = AdamW.Config.hfDefaults();
            long adamw = 8 * paramFloats(tm);
            var mini = new org.peft4j.train.optim.AdamMini(ps, ac, c.hiddenSize(), c.numAttentionHeads());
            long miniFloats = paramFloats(tm) + mini.vValues();
            var muon = new org.peft4j.train.optim.Muon(ps, ac, null).state();
            long muonFloats = count(muon.momentum()) + count(muon.m()) + count(muon.v());
            var galore = new org.peft4j.train.optim.GaLore(ps, ac, new org.peft4j.train.optim.GaLore.Config(List.of("all"), 4, 200, 2.0, "std", false),
                    new java.util.LinkedHashSet<>(LoraConfig.ALL_LINEAR)).state();
            long galoreFloats = count(galore.m()) + count(galore.v()) + count(galore.proj());
            var apolloOpt = new org.peft4j.train.optim.Apollo(ps, ac, new org.peft4j.train.optim.Apollo.Config(List.of("all"), 4, 200, 32.0,
                    "random", "std", "channel", false, false), new java.util.LinkedHashSet<>(LoraConfig.ALL_LINEAR), 1L);
            var apollo = apolloOpt.state();
            long projectedCount = 0;
            for (int i = 0; i < ps.size(); i++) if (apolloOpt.projected(i)) projectedCount++;
            long apolloFloats = count(apollo.m()) + count(apollo.v()) + count(apollo.proj()) + projectedCount;
            var badam = new org.peft4j.train.optim.BlockAdam(ps, ac, new org.peft4j.train.optim.BlockAdam.Config(null, "ascending", 50), 0).state();
            long badamFloats = count(badam.m()) + count(badam.v());
            assertEquals(4 * miniFloats, MemoryEstimate.methodOptimizerBytes(c, new Method.Full(), "adam_mini"));
            assertEquals(4 * muonFloats, MemoryEstimate.methodOptimizerBytes(c, new Method.Full(), "muon"));
            assertEquals(4 * galoreFloats, MemoryEstimate.methodOptimizerBytes(c, new Method.Full(), "galore:4"));
            assertEquals(4 * badamFloats, MemoryEstimate.methodOptimizerBytes(c, new Method.Full(), "badam"));
            assertEquals(4 * apolloFloats, MemoryEstimate.methodOptimizerBytes(c, new Method.Full(), "apollo:4"));
            for (String o : List.of("adam_mini", "muon", "galore:4", "apollo:4", "badam"))
                assertTrue(MemoryEstimate.methodOptimizerBytes(c, new Method.Full(), o) < adamw, o + " keeps less than AdamW");
        }
    }

    static long count(List<float[]> xs) {
        long n = 0;
        for (float[] x : xs) if (x != null) n += x.length;
        return n;
    }

    @Test
    void activationsAdaptersGradientsMatchTrainModel() {
        for (boolean tied : new boolean[]{true, false}) {
            LlamaConfig c = tiny(tied);
            LlamaWeights w = RandomModels.create(c, 1);
            List<Method> methods = List.of(new Method.Lora(LoraConfig.of(4, List.of("q_proj", "v_proj"))),
                    new Method.Lora(LoraConfig.of(3, LoraConfig.ALL_LINEAR)),
                    new Method.Full(), new Method.Freeze(1, List.of("mlp")), new Method.Freeze(-1, List.of("all")));
            for (Method m : methods)
                for (boolean ck : new boolean[]{false, true})
                    for (int[] bt : new int[][]{{1, 8}, {3, 5}}) {
                        String what = m + " tied=" + tied + " ckpt=" + ck + " B=" + bt[0] + " T=" + bt[1];
                        TrainModel tm = new TrainModel(w, m, GEMM, bt[0], bt[1], ck, 1);
                        MemoryEstimate e = MemoryEstimate.estimate(c, m, false, bt[0], bt[1], ck, "adamw_torch", 64, true);
                        assertEquals(tm.activationBytes(), e.trainModelActivationBytes(), what + ": activation bytes");
                        long floats = paramFloats(tm);
                        assertEquals(4 * floats, e.gradients(), what + ": gradient bytes");
                        assertEquals(m instanceof Method.Lora ? 4 * floats : 0, e.adapters(), what + ": adapter bytes");
                        assertEquals(8 * floats, e.optimizer(), what + ": AdamW state = m + v");
                        assertEquals(e.activations(), MemoryEstimate.estimate(c, m, false, bt[0], bt[1], !ck, "adamw_torch", 64, true).activationsOther(), what);
                    }
        }
    }

    /// The preference stages' extras against what one step allocates (TrainModel.scoringBytes, plus the separate
    /// reference's float32 weights): LoRA DPO against the base, ORPO without a reference, LoRA KTO (its no-grad KL
    /// pass shares the scoring buffers), full DPO and KTO against a frozen copy; stage dpo plans two rows per pair.
    @Test
    void preferenceBuffersMatchWhatAStepAllocates() {
        LlamaConfig c = tiny(true);
        var lora = new Method.Lora(LoraConfig.of(4, LoraConfig.ALL_LINEAR));
        int pairs = 2, T = 6;
        var rng = new java.util.SplittableRandom(3);
        List<TokenizedExample> a = new ArrayList<>(), b = new ArrayList<>();
        for (int i = 0; i < pairs; i++) for (List<TokenizedExample> l : List.of(a, b)) {
            int[] ids = new int[T], labels = new int[T];
            for (int t = 0; t < T; t++) { ids[t] = rng.nextInt(256); labels[t] = t < 2 ? TokenizedExample.IGNORE_INDEX : ids[t]; }
            l.add(new TokenizedExample(ids, labels));
        }
        int[] all = {0, 1};
        record Case(String stage, Method m, PreferenceLoss.Kind kind, MemoryEstimate.Reference ref) {}
        for (Case k : List.of(new Case("dpo", lora, PreferenceLoss.Kind.SIGMOID, MemoryEstimate.Reference.ADAPTER_OFF),
                new Case("dpo", lora, PreferenceLoss.Kind.ORPO, MemoryEstimate.Reference.NONE),
                new Case("kto", lora, null, MemoryEstimate.Reference.ADAPTER_OFF),
                new Case("dpo", new Method.Full(), PreferenceLoss.Kind.IPO, MemoryEstimate.Reference.FLOAT32),
                new Case("kto", new Method.Freeze(1, List.of("all")), null, MemoryEstimate.Reference.FLOAT32))) {
            boolean kto = k.stage().equals("kto");
            LlamaWeights w = RandomModels.create(c, 1);
            TrainModel tm = new TrainModel(w, k.m(), GEMM, kto ? pairs : 2 * pairs, T, false, 1);
            long extra = 0;
            if (k.ref() == MemoryEstimate.Reference.FLOAT32) {
                LlamaWeights copy = RandomModels.create(c, 1);
                tm.useReference(org.peft4j.model.llama.Decoder.of(copy, GEMM), null);
                extra = MemoryEstimate.weightBytes(c, false, 64, true);
            }
            SequenceObjective obj = kto ? new KtoObjective(tm, new KtoLoss.Config(0.1, 1, 1, 0))
                    : new PreferenceObjective(tm, new PreferenceLoss.Config(k.kind(), 0.1, 0, 0, 0.5));
            obj.forward(new SequenceObjective.Units(a, b, kto ? new boolean[] {true, false} : null), all, 0, false, 0, null, null);
            obj.backward(0.5, 0);
            MemoryEstimate e = MemoryEstimate.estimate(c, k.m(), false, pairs, T, false, "adamw_torch", 64, true,
                    new MemoryEstimate.Preference(k.stage(), k.ref()));
            assertEquals(tm.scoringBytes() + extra, e.preference(), k + ": preference bytes");
            assertEquals(tm.activationBytes(), e.trainModelActivationBytes(), k + ": rows planned");
        }
    }

    /// use_asft_loss's extras against what one ASFT step allocates: the reference pass's activations, the labelled
    /// positions' hidden states and indices, one (B·T, V) buffer of reference logits, plus the frozen copy's weights.
    @Test
    void asftBuffersMatchWhatAStepAllocates() {
        LlamaConfig c = tiny(true);
        int B = 2, T = 6;
        var rng = new java.util.SplittableRandom(5);
        int[] ids = new int[B * T], targets = new int[B * T];
        for (int n = 0; n < B * T; n++) { ids[n] = rng.nextInt(256); targets[n] = n % T < 2 ? org.peft4j.model.layers.CrossEntropy.IGNORE : rng.nextInt(256); }
        for (Method m : List.of(new Method.Full(), new Method.Freeze(1, List.of("all")))) {
            TrainModel tm = new TrainModel(RandomModels.create(c, 1), m, GEMM, B, T, false, 1);
            tm.useReference(org.peft4j.model.llama.Decoder.of(RandomModels.create(c, 1), GEMM), null);
            tm.setAsft(0.1);
            double loss = tm.forward(ids, targets, T, true, 0);
            tm.backward(ids, targets, T, 0.1f, 0);
            assertTrue(Double.isFinite(loss) && loss > 0, "loss " + loss);
            MemoryEstimate e = MemoryEstimate.estimate(c, m, false, B, T, false, "adamw_torch", 64, true,
                    new MemoryEstimate.Preference("sft", MemoryEstimate.Reference.FLOAT32));
            assertEquals(tm.scoringBytes() + MemoryEstimate.weightBytes(c, false, 64, true), e.preference(), m + ": ASFT bytes");
            assertEquals(tm.activationBytes(), e.trainModelActivationBytes(), m + ": rows planned");
        }
    }

    @Test
    void optimizerBytesMatchWhatTheOptimizersAllocate() {
        LlamaConfig c = tiny(true);
        LlamaWeights w = RandomModels.create(c, 1);
        Method m = new Method.Lora(LoraConfig.of(64, List.of("q_proj", "v_proj")));   // 64·64 = 4096: the 8-bit threshold
        TrainModel tm = new TrainModel(w, m, GEMM, 1, 4, false, 1);
        List<float[]> ps = new ArrayList<>(), gs = new ArrayList<>();
        for (Param p : tm.params()) { ps.add(p.data()); gs.add(p.grad()); }
        AdamW.State s32 = new AdamW(ps, gs, AdamW.Config.hfDefaults()).state();
        long b32 = 0;
        for (int i = 0; i < ps.size(); i++) b32 += 4L * (s32.m().get(i).length + s32.v().get(i).length);
        assertEquals(b32, MemoryEstimate.estimate(c, m, false, 1, 4, false, "adamw_torch", 64, true).optimizer());
        assertEquals(b32, MemoryEstimate.estimate(c, m, false, 1, 4, false, "paged_adamw_32bit", 64, true).optimizer());
        long b8 = 0;
        int quantized = 0;
        try (AdamW8bit a8 = new AdamW8bit(ps, gs, AdamW.Config.hfDefaults())) {
            for (AdamW8bit.Moments mo : a8.state().moments())
                b8 += switch (mo) {
                    case AdamW8bit.Moments.Quantized q -> { quantized++; yield q.state1().length + q.state2().length + 4L * (q.absmax1().length + q.absmax2().length); }
                    case AdamW8bit.Moments.Full f -> 4L * (f.m().length + f.v().length);
                };
        }
        assertTrue(quantized > 0, "the test should include 8-bit tensors");
        assertEquals(b8, MemoryEstimate.estimate(c, m, false, 1, 4, false, "adamw_8bit", 64, true).optimizer());
        assertEquals(b8, MemoryEstimate.estimate(c, m, false, 1, 4, false, "paged_adamw_8bit", 64, true).optimizer());
    }

    /// NF4 bytes against a real QuantizedModel's tensors (packed codes + absmax arrays, double-quantized or not).
    @Test
    void qloraWeightsMatchNf4Tensors() {
        LlamaConfig c = tiny(false);
        for (boolean dq : new boolean[]{true, false})
            for (int bs : new int[]{64, 128}) {
                QuantizedModel qm = QuantizedModel.createRandom(c, 3, QuantType.NF4, bs, dq);
                long nf4 = 0;
                for (Nf4Tensor[] layer : qm.linears)
                    for (Nf4Tensor t : layer) {
                        nf4 += t.packed().byteSize();
                        nf4 += switch (t.absmax()) {
                            case Nf4Tensor.Absmax.Plain p -> 4L * p.values().length;
                            case Nf4Tensor.Absmax.Nested n -> n.codes().byteSize() + 4L * n.nestedAbsmax().length + 4L * n.nestedQuantMap().length + 4;
                        };
                    }
                assertEquals(qm.offHeapBytes(), MemoryEstimate.offHeapBytes(c, true, bs, dq), "off-heap bytes, bs=" + bs + " dq=" + dq);
                long floats = 4L * (2L * c.vocabSize() * c.hiddenSize() + c.hiddenSize() + c.numHiddenLayers() * 2L * c.hiddenSize());
                assertEquals(nf4 + floats, MemoryEstimate.estimate(c, "qlora", 8, List.of("all"), 1, 4, true, "paged_adamw_8bit", bs, dq).weights(),
                        "bs=" + bs + " dq=" + dq);
            }
    }

    @Test
    void llama2_7bQloraIsAbout4Point127BitsPerLinearParameter() {
        LlamaConfig c = ModelPresets.llama2_7b();
        long n = 4096L * 4096;
        assertEquals(4.127, 8.0 * MemoryEstimate.nf4Bytes(n, 64, true) / n, 5e-4);
        MemoryEstimate q = MemoryEstimate.estimate(c, "qlora", 16, List.of("all"), 1, 1024, true, "paged_adamw_8bit", 64, true);
        MemoryEstimate f = MemoryEstimate.estimate(c, "lora", 16, List.of("all"), 1, 1024, true, "adamw_torch", 64, true);
        // 6.48e9 linear parameters at 4.127 bits + 2·32000·4096 float32 embeddings/head + norms ≈ 3.34e9 + 1.05e9 bytes.
        assertEquals(4.39e9, q.weights(), 0.02e9);
        assertEquals(4 * 6.738e9, f.weights(), 0.01e9);
        assertTrue(q.activations() < q.activationsOther() / 10, "checkpointing keeps one block of 32");
        System.out.println("llama2-7b qlora r16 all, 1 x 1024, checkpointing, paged_adamw_8bit:\n" + q.toTable());
    }
}
