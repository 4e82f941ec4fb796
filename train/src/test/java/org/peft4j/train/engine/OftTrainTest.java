package org.peft4j.train.engine;

import com.fasterxml.jackson.databind.ObjectMapper;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.peft4j.model.LlamaConfig;
import org.peft4j.model.adapter.oft.OftAdapter;
import org.peft4j.model.adapter.oft.OftConfig;
import org.peft4j.model.adapter.lora.LoraConfig;
import org.peft4j.model.llama.LlamaWeights;
import org.peft4j.formats.safetensors.SafeTensors;
import org.peft4j.testkit.Assert;
import org.peft4j.testkit.Shared;
import org.peft4j.train.optim.AdamW;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.*;
import static org.peft4j.train.engine.TrainModelTest.*;

/// OFT through the whole model on the real stories260K (hidden 64, intermediate 172: blocks of 32 on the attention
/// and gate/up inputs, 43 on down_proj's, as PEFT resolves oft_block_size 32): identity at initialisation, analytic
/// gradients of oft_R against finite differences of the loss (the rotation's Cayley-Neumann backward included),
/// training lowers the loss, and the saved PEFT adapter read back and merged computes the trained model's logits.
class OftTrainTest {
    static OftConfig all() { return OftConfig.of(0, 32, LoraConfig.ALL_LINEAR); }

    @Test
    void identityAtInit() {
        LlamaWeights w = stories();
        int[][] bt = batch(w.config.vocabSize(), 1);
        TrainModel full = new TrainModel(stories(), new Method.Full(), GEMM, B, T, false, 7);
        full.forward(bt[0], bt[1], T, false, 0);
        TrainModel oft = new TrainModel(w, new Method.Oft(all()), GEMM, B, T, false, 7);
        assertEquals(5 * 7, oft.params().size());
        assertTrue(oft.params().getFirst().name().equals("base_model.model.model.layers.0.self_attn.q_proj.oft_R.weight"));
        assertArrayEquals(new long[] {2, 32 * 31 / 2}, oft.params().getFirst().shape());
        oft.forward(bt[0], bt[1], T, false, 0);
        assertArrayEquals(full.logits(), oft.logits(), "theta = 0 must leave the base model unchanged");
    }

    static TrainModel oftWithRandomTheta(LlamaWeights w) {
        TrainModel tm = new TrainModel(w, new Method.Oft(all()), GEMM, B, T, false, 3);
        SplittableRandom r = new SplittableRandom(5);
        for (Param p : tm.params()) for (int i = 0; i < p.data().length; i++) p.data()[i] = (float) (r.nextGaussian() * 0.03);
        return tm;
    }

    static final List<String> OFT_CHECKED = List.of("layers.0.self_attn.q_proj.oft_R", "layers.4.mlp.down_proj.oft_R",
            "layers.2.self_attn.o_proj.oft_R", "layers.1.mlp.up_proj.oft_R");

    @Test
    void gradientsMatchFiniteDifferences() {
        LlamaWeights w = stories();
        checkGradients(oftWithRandomTheta(w), w.config, OFT_CHECKED);
    }

    /// The same check rejects a gradient 10% off in one tensor, or with one element's sign flipped.
    @Test
    void checkRejectsAWrongGradient() {
        LlamaWeights w = stories();
        TrainModel tm = oftWithRandomTheta(w);
        String tooLarge = "layers.4.mlp.down_proj.oft_R", flipped = "layers.0.self_attn.q_proj.oft_R";
        assertRejected(tooLarge, () -> checkGradients(tm, w.config, OFT_CHECKED, scaled(tooLarge, 1.1f)));
        assertRejected(flipped, () -> checkGradients(tm, w.config, OFT_CHECKED, largestFlipped(flipped)));
    }

    /// 30 AdamW steps on one batch lower the loss; the adapter written as PEFT's files reads back, and merged into a
    /// fresh base (W·R_bdᵀ, PEFT's merge) computes the trained model's logits.
    @Test
    void trainsSavesAndMergesBack(@TempDir Path dir) throws Exception {
        LlamaWeights w = stories();
        LlamaConfig c = w.config;
        int[][] bt = batch(c.vocabSize(), 1);
        TrainModel tm = new TrainModel(w, new Method.Oft(OftConfig.of(0, 16, List.of("q_proj", "v_proj", "down_proj"))), GEMM, B, T, false, 3);
        List<float[]> ps = new ArrayList<>(), gs = new ArrayList<>();
        for (Param p : tm.params()) { ps.add(p.data()); gs.add(p.grad()); }
        AdamW opt = new AdamW(ps, gs, AdamW.Config.hfDefaults());
        double first = 0, last = 0;
        for (int s = 0; s < 30; s++) {
            tm.zeroGrad();
            double loss = tm.forward(bt[0], bt[1], T, true, s);
            if (s == 0) first = loss;
            last = loss;
            tm.backward(bt[0], bt[1], T, 1f, s);
            opt.step(1e-2);
        }
        assertTrue(last < 0.9 * first, "loss " + first + " -> " + last);
        tm.forward(bt[0], bt[1], T, false, 0);
        float[] trained = tm.logits().clone();

        List<OftAdapter.Module> mods = new ArrayList<>();
        for (var om : tm.oftModules()) mods.add(new OftAdapter.Module(om.layer(), om.module(), om.nBlocks(), om.b(), om.theta()));
        new OftAdapter(tm.method instanceof Method.Oft(OftConfig oc) ? oc : null, "stories260K", mods).write(dir);
        var cfg = new ObjectMapper().readTree(dir.resolve("adapter_config.json").toFile());
        assertEquals("OFT", cfg.get("peft_type").asText());
        assertEquals(16, cfg.get("oft_block_size").asInt());
        assertEquals(0, cfg.get("r").asInt());
        assertTrue(cfg.get("use_cayley_neumann").asBoolean());
        try (SafeTensors st = SafeTensors.open(dir.resolve("adapter_model.safetensors"))) {
            assertEquals(5 * 3, st.tensors().size());
            assertArrayEquals(new long[] {4, 120}, st.info("base_model.model.model.layers.3.self_attn.v_proj.oft_R.weight").shape());
            // 16 does not divide 172: PEFT moves it to the nearest divisor, 4 (12 away; 43 is 27 away): 43 blocks of 4
            assertArrayEquals(new long[] {43, 6}, st.info("base_model.model.model.layers.3.mlp.down_proj.oft_R.weight").shape());
        }
        assertTrue(OftAdapter.isOft(dir));
        OftAdapter back = OftAdapter.read(dir, c);
        LlamaWeights fresh = stories();
        back.mergeInto(fresh);
        TrainModel merged = new TrainModel(fresh, new Method.Full(), GEMM, B, T, false, 3);
        merged.forward(bt[0], bt[1], T, false, 0);
        Assert.assertClose("merged adapter vs trained model", trained, merged.logits(), 1e-5, 1e-5);

        // peft4j export with the OFT adapter writes the merged model; generate and --adapter refuse it, naming export
        Path exported = dir.resolve("exported");
        org.peft4j.train.Export.merged(Shared.require("models/stories260K-hf"), dir, exported, "float32", 5, GEMM);
        TrainModel fromExport = new TrainModel(org.peft4j.model.Models.loadWeights(exported), new Method.Full(), GEMM, B, T, false, 3);
        fromExport.forward(bt[0], bt[1], T, false, 0);
        Assert.assertClose("exported merged model vs trained model", trained, fromExport.logits(), 1e-5, 1e-5);
        var e = assertThrows(org.peft4j.core.Peft4jException.ConfigException.class, () -> org.peft4j.model.adapter.lora.PeftAdapter.read(dir));
        assertTrue(e.getMessage().contains("OFT") && e.getMessage().contains("peft4j export"), e.getMessage());
    }
}
