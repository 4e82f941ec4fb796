package org.peft4j.cli;

import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.peft4j.core.kernels.ScalarGemm;
import org.peft4j.model.Models;
import org.peft4j.model.llama.LlamaModel;
import org.peft4j.testkit.Shared;
import org.peft4j.tokenizer.Tokenizer;

import java.nio.file.Files;
import java.nio.file.Path;

import static org.junit.jupiter.api.Assertions.*;
import static org.peft4j.testkit.Assert.assertClose;

/// The GGUF commands without llama.cpp: a model exported to GGUF and converted back to a Hugging Face folder is the
/// same model (weights, tokenizer, special tokens); flags that do not apply are refused with a clear error.
class GgufCliTest {
    @TempDir Path tmp;

    @BeforeAll
    static void home() { System.setProperty("peft4j.home", Shared.root().toString()); }

    @Test
    void ggufToHuggingFaceFolderRoundTrips() {
        Path dir = Shared.require("models/tinystories-656k");
        CliTest.Out a = CliTest.run(null, "export", "--model_name_or_path", dir.toString(), "--export_dir", tmp.toString(), "--export_format", "gguf");
        assertEquals(0, a.code(), a.stderr());
        Path gguf = Path.of(a.stdout().strip());
        assertEquals(tmp.resolve("model-f32.gguf"), gguf);
        Path back = tmp.resolve("back");
        CliTest.Out b = CliTest.run(null, "export", "--model_name_or_path", gguf.toString(), "--export_dir", back.toString());
        assertEquals(0, b.code(), b.stderr());
        assertTrue(Files.exists(back.resolve("tokenizer.json")) && Files.exists(back.resolve("tokenizer_config.json")));
        LlamaModel orig = Models.load(dir, ScalarGemm.INSTANCE), conv = Models.load(back, ScalarGemm.INSTANCE);
        int[] ids = {1, 80, 147, 201, 282, 57, 313};
        assertClose("GGUF → folder logits", orig.logits(ids), conv.logits(ids), 1e-6, 0);
        Tokenizer t0 = Tokenizer.load(dir), t1 = Tokenizer.load(back);
        for (String s : new String[]{"Once upon a time, Lily's dog", "  two  spaces", "end."})
            assertArrayEquals(t0.encode(s, true), t1.encode(s, true), s);
        assertEquals(t0.eosId(), t1.eosId());
        CliTest.Out g = CliTest.run(null, "generate", "--model", back.toString(), "-p", "Once upon a time", "--max-new-tokens", "12");
        CliTest.Out h = CliTest.run(null, "generate", "--model", gguf.toString(), "-p", "Once upon a time", "--max-new-tokens", "12");
        assertEquals(0, g.code(), g.stderr());
        assertEquals(h.stdout(), g.stdout());
    }

    /// `--adapter FILE.gguf`: a PEFT adapter exported with export-adapter generates what the folder generates, in
    /// generate and eval.
    @Test
    void ggufAdapterFileWorksAsAdapter() {
        Path dir = Shared.require("models/tinystories-656k");
        var c = org.peft4j.model.LlamaConfig.read(dir);
        var lc = new org.peft4j.model.adapter.lora.LoraConfig(4, 8, 0.0, java.util.List.of("q_proj", "v_proj", "up_proj"), false, false,
                org.peft4j.model.adapter.lora.LoraConfig.Init.NO_INIT, "none", false, null, java.util.Map.of(), java.util.Map.of(), null);
        var w = new java.util.TreeMap<org.peft4j.model.adapter.lora.PeftAdapter.Target, org.peft4j.model.adapter.lora.LoraWeights>();
        var rng = new java.util.SplittableRandom(3);
        for (int l = 0; l < c.numHiddenLayers(); l++)
            for (String t : lc.targetModules()) {
                var p = org.peft4j.model.llama.Projection.of(t);
                float[] a = new float[4 * p.in(c)], b = new float[p.out(c) * 4];
                for (int i = 0; i < a.length; i++) a[i] = (float) rng.nextDouble(-0.3, 0.3);
                for (int i = 0; i < b.length; i++) b[i] = (float) rng.nextDouble(-0.3, 0.3);
                w.put(new org.peft4j.model.adapter.lora.PeftAdapter.Target(l, t), new org.peft4j.model.adapter.lora.LoraWeights(4, p.in(c), p.out(c), a, b, null));
            }
        Path folder = tmp.resolve("peft");
        new org.peft4j.model.adapter.lora.PeftAdapter(lc, dir.toString(), null, w).write(folder, org.peft4j.core.DType.F32);
        Path file = tmp.resolve("lora.gguf");
        CliTest.Out x = CliTest.run(null, "export-adapter", "--model", dir.toString(), "--adapter", folder.toString(), "--out", file.toString());
        assertEquals(0, x.code(), x.stderr());
        String[] gen = {"generate", "--model", dir.toString(), "-p", "Once upon a time", "--max-new-tokens", "16", "--adapter"};
        CliTest.Out base = CliTest.run(null, "generate", "--model", dir.toString(), "-p", "Once upon a time", "--max-new-tokens", "16");
        CliTest.Out pf = CliTest.run(null, concat(gen, folder.toString())), gf = CliTest.run(null, concat(gen, file.toString()));
        assertEquals(0, gf.code(), gf.stderr());
        assertEquals(pf.stdout(), gf.stdout(), "GGUF adapter vs PEFT folder");
        assertNotEquals(base.stdout(), gf.stdout(), "the adapter changes the text, or the comparison proves nothing");
        CliTest.Out bad = CliTest.run(null, "generate", "--model", dir.toString(), "-p", "x", "--adapter", tmp.resolve("missing.gguf").toString());
        assertEquals(1, bad.code(), bad.stderr());
    }

    private static String[] concat(String[] a, String b) {
        String[] r = java.util.Arrays.copyOf(a, a.length + 1);
        r[a.length] = b;
        return r;
    }

    @Test
    void flagsThatDoNotApplyAreRefused() {
        Path dir = Shared.require("models/tinystories-656k");
        CliTest.Out q = CliTest.run(null, "export", "--model_name_or_path", dir.toString(), "--export_dir", tmp.resolve("x").toString(), "--export_quant", "q8_0");
        assertEquals(1, q.code(), q.stderr());
        assertTrue(q.stderr().contains("--export_quant applies to --export_format gguf"), q.stderr());
        CliTest.Out f = CliTest.run(null, "export", "--model_name_or_path", dir.toString(), "--export_dir", tmp.resolve("y").toString(), "--export_format", "onnx");
        assertEquals(1, f.code(), f.stderr());
        assertTrue(f.stderr().contains("safetensors or gguf"), f.stderr());
        CliTest.Out k = CliTest.run(null, "export", "--model_name_or_path", dir.toString(), "--export_dir", tmp.resolve("z.gguf").toString(),
                "--export_format", "gguf", "--export_quant", "q5_k");
        assertEquals(1, k.code(), k.stderr());
        assertTrue(k.stderr().contains("f32, f16, bf16, q8_0, q4_0, q4_k"), k.stderr());
        CliTest.Out t = CliTest.run(null, "export-adapter", "--adapter", tmp.toString(), "--out", tmp.resolve("a.gguf").toString(), "--type", "q8_0");
        assertEquals(1, t.code(), t.stderr());
        assertTrue(t.stderr().contains("f32, f16 or bf16"), t.stderr());
        CliTest.Out m = CliTest.run(null, "generate", "--model", tmp.resolve("missing.gguf").toString(), "-p", "x");
        assertEquals(1, m.code(), m.stderr());
        assertTrue(m.stderr().contains("missing.gguf"), m.stderr());
    }
}
