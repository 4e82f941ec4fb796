package org.peft4j.train.optim;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import org.junit.jupiter.api.Test;
import org.peft4j.model.adapter.lora.LoraConfig;
import org.peft4j.train.engine.Param;

import java.io.InputStream;
import java.util.ArrayList;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.function.DoubleConsumer;

import static org.junit.jupiter.api.Assertions.*;
import static org.peft4j.testkit.Assert.assertClose;
import static org.peft4j.testkit.Assert.maxAbsDiff;

/// Adam-mini, Muon, GaLore and BAdam over 6 steps of a Llama-shaped set of named tensors (hidden 8, 2 heads, 2 layers)
/// against reference/memory_optim_reference.py (each paper's / library's update written again in numpy float64),
/// fixture optim/memory_optimizers.json; plus checkpoint round trips and the partitions.
class MemoryOptimizersTest {
    /// float32 arithmetic against float64: over 6 steps, through Newton-Schulz's 5 matrix iterations (Muon) and an
    /// SVD (GaLore), the parameters (|p| ~ 0.5) agree to 2.4e-7 today (a few float32 ulps). A wrong partition, eps
    /// placement or decay order moves them by 1e-4 or more (checked below for Adam-mini).
    static final double ATOL = 1e-6, RTOL = 2e-6;

    static JsonNode fx;

    static JsonNode fixture() throws Exception {
        if (fx == null) try (InputStream in = MemoryOptimizersTest.class.getResourceAsStream("/optim/memory_optimizers.json")) {
            assertNotNull(in, "missing test resource optim/memory_optimizers.json; run python3 reference/memory_optim_reference.py");
            fx = new ObjectMapper().readTree(in);
        }
        return fx;
    }

    static List<Param> params(JsonNode f) {
        List<Param> out = new ArrayList<>();
        for (int i = 0; i < f.get("names").size(); i++) {
            JsonNode sh = f.get("shapes").get(i);
            long[] shape = new long[sh.size()];
            for (int k = 0; k < shape.length; k++) shape[k] = sh.get(k).asLong();
            float[] data = AdamWTest.floats(f.get("params0").get(i));
            out.add(new Param(f.get("names").get(i).asText(), shape, data, new float[data.length]));
        }
        return out;
    }

    static AdamW.Config adam(JsonNode f) {
        return new AdamW.Config(f.get("beta1").asDouble(), f.get("beta2").asDouble(), f.get("eps").asDouble(), f.get("weight_decay").asDouble());
    }

    /// Replays the 6 steps (gradients copied in, `step` called with the step's lr) and compares after each; returns
    /// the largest difference seen.
    static double replay(String what, List<Param> ps, DoubleConsumer step, boolean assertEach) throws Exception {
        JsonNode f = fixture(), exp = f.get("expected").get(what);
        double worst = 0;
        for (int s = 0; s < exp.size(); s++) {
            for (int i = 0; i < ps.size(); i++) {
                float[] g = AdamWTest.floats(f.get("grads").get(s).get(i));
                System.arraycopy(g, 0, ps.get(i).grad(), 0, g.length);
            }
            step.accept(f.get("lrs").get(s).asDouble());
            for (int i = 0; i < ps.size(); i++) {
                float[] e = AdamWTest.floats(exp.get(s).get(i));
                worst = Math.max(worst, maxAbsDiff(e, ps.get(i).data()));
                if (assertEach) assertClose(what + " step " + (s + 1) + " " + ps.get(i).name(), e, ps.get(i).data(), ATOL, RTOL);
            }
        }
        if (assertEach) System.out.printf("%s: max |diff| over 6 steps %.3g%n", what, worst);
        return worst;
    }

    @Test
    void adamMiniMatchesReference() throws Exception {
        JsonNode f = fixture();
        List<Param> ps = params(f);
        AdamMini opt = new AdamMini(ps, adam(f), f.get("hidden").asInt(), f.get("heads").asInt());
        replay("adam_mini", ps, opt::step, true);
        // the partition of Adam-mini v1.1 on Llama names
        assertEquals(AdamMini.Kind.ROW, AdamMini.kindOf("model.embed_tokens.weight"));
        assertEquals(AdamMini.Kind.HEAD, AdamMini.kindOf("model.layers.0.self_attn.q_proj.weight"));
        assertEquals(AdamMini.Kind.HEAD, AdamMini.kindOf("model.layers.0.self_attn.k_proj.weight"));
        assertEquals(AdamMini.Kind.ROW, AdamMini.kindOf("model.layers.0.self_attn.v_proj.weight"));
        assertEquals(AdamMini.Kind.ROW, AdamMini.kindOf("model.layers.0.mlp.down_proj.weight"));
        assertEquals(AdamMini.Kind.TENSOR, AdamMini.kindOf("model.layers.0.input_layernorm.weight"));
        assertEquals(AdamMini.Kind.ELEMENT, AdamMini.kindOf("model.layers.0.self_attn.q_proj.bias"));
        // v: embed 6 rows, q 2 heads, k 1 head, v 4 rows, o 8, gate 6, down 8, norm 1, up 6, norm 1, norm 1
        assertEquals(6 + 2 + 1 + 4 + 8 + 6 + 8 + 1 + 6 + 1 + 1, opt.vValues());
    }

    /// The test can fail: plain AdamW (one v per weight) on the same steps lands far outside the tolerance.
    @Test
    void adamMiniDiffersFromAdamWBeyondTolerance() throws Exception {
        JsonNode f = fixture();
        List<Param> ps = params(f);
        AdamW opt = new AdamW(ps.stream().map(Param::data).toList(), ps.stream().map(Param::grad).toList(), adam(f));
        double worst = replay("adam_mini", ps, opt::step, false);
        assertTrue(worst > 100 * ATOL, "AdamW should differ from Adam-mini by far more than the tolerance, max diff " + worst);
    }

    @Test
    void muonMatchesReference() throws Exception {
        JsonNode f = fixture();
        List<Param> ps = params(f);
        Muon opt = new Muon(ps, adam(f), null);
        replay("muon", ps, opt::step, true);
        assertFalse(Muon.usesMuon(ps.get(0)), "the embedding takes AdamW");
        assertTrue(Muon.usesMuon(ps.get(1)));
        assertFalse(Muon.usesMuon(ps.get(7)), "1-D norms take AdamW");
    }

    /// Newton-Schulz drives the singular values of a random matrix towards 1 (roughly 0.7..1.2 after 5 steps).
    @Test
    void newtonSchulzNearlyOrthogonalises() {
        int r = 6, c = 10;
        float[] x = new float[r * c];
        var rng = new java.util.Random(3);
        for (int i = 0; i < x.length; i++) x[i] = (float) rng.nextGaussian();
        Muon.newtonSchulz(x, new float[r * r], new float[r * r], new float[r * c], r, c);
        float[] copy = x.clone();
        var svd = org.peft4j.model.adapter.lora.Pissa.svd(copy, r, c, r, -1, null);
        for (double s : svd.s()) assertTrue(s > 0.6 && s < 1.3, "singular value " + s + " of the orthogonalised matrix");
    }

    /// The Gemm path of Newton-Schulz against its scalar twin (float32 sums in another order: ~1e-6).
    @Test
    void newtonSchulzGemmMatchesScalar() throws Exception {
        int r = 24, c = 40;
        float[] x = new float[r * c];
        var rng = new java.util.Random(5);
        for (int i = 0; i < x.length; i++) x[i] = (float) rng.nextGaussian();
        float[] y = x.clone();
        Muon.newtonSchulz(x, new float[r * r], new float[r * r], new float[r * c], r, c);
        Muon.newtonSchulz(org.peft4j.core.Gemms.get("java"), y, new float[r * r], new float[r * r], new float[r * c], r, c);
        assertClose("Newton-Schulz gemm vs scalar", x, y, 2e-5, 1e-4);
        // and through the optimizer: the reference steps with the gemm path
        JsonNode f = fixture();
        List<Param> ps = params(f);
        Muon opt = new Muon(ps, adam(f), org.peft4j.core.Gemms.get("java"));
        replay("muon", ps, opt::step, true);
    }

    @Test
    void galoreMatchesReference() throws Exception {
        JsonNode f = fixture();
        List<Param> ps = params(f);
        JsonNode g = f.get("galore");
        GaLore opt = new GaLore(ps, adam(f), new GaLore.Config(List.of("all"), g.get("rank").asInt(), g.get("update_interval").asInt(),
                g.get("scale").asDouble(), "std", false), new LinkedHashSet<>(LoraConfig.ALL_LINEAR));
        replay("galore", ps, opt::step, true);
        assertFalse(opt.projected(0), "the embedding is not a linear layer");
        assertTrue(opt.projected(1));
        assertEquals(2, opt.rank(2));
        assertFalse(opt.projected(7));
    }

    /// APOLLO with the fixture's random projections (torch's generator draws other numbers), channel-wise and
    /// tensor-wise with scale_front; refreshed at steps 0 and 3.
    @Test
    void apolloMatchesReference() throws Exception {
        JsonNode f = fixture();
        JsonNode a = f.get("apollo");
        for (String variant : List.of("apollo_channel", "apollo_tensor_front")) {
            boolean channel = variant.equals("apollo_channel");
            List<Param> ps = params(f);
            Apollo.Projection fromFixture = (p, index, refresh, rows, cols, r, right, grad) -> {
                float[] x = AdamWTest.floats(a.get("proj").get(String.valueOf(index)).get((int) refresh));
                System.arraycopy(x, 0, p, 0, x.length);
            };
            Apollo opt = new Apollo(ps, adam(f), new Apollo.Config(List.of("all"), a.get("rank").asInt(), a.get("update_interval").asInt(),
                    a.get("scale").asDouble(), "random", "std", channel ? "channel" : "tensor", false, !channel),
                    new LinkedHashSet<>(LoraConfig.ALL_LINEAR), fromFixture);
            replay(variant, ps, opt::step, true);
            assertTrue(opt.projected(1) && !opt.projected(0));
        }
    }

    @Test
    void badamMatchesReference() throws Exception {
        JsonNode f = fixture();
        List<Param> ps = params(f);
        BlockAdam opt = new BlockAdam(ps, adam(f), new BlockAdam.Config(null, "ascending", f.get("badam").get("switch_interval").asInt()), 0);
        assertEquals(2, opt.blocks());
        replay("badam", ps, opt::step, true);
    }

    @Test
    void badamMasksInactiveGradientsAndFreezesNonLayers() throws Exception {
        JsonNode f = fixture();
        List<Param> ps = params(f);
        BlockAdam opt = new BlockAdam(ps, adam(f), new BlockAdam.Config(1, "descending", 3), 0);
        assertEquals(1, opt.activeBlock());
        for (Param p : ps) java.util.Arrays.fill(p.grad(), 1f);
        opt.maskGradients();
        for (Param p : ps) {
            boolean active = p.name().startsWith("model.layers.1.");
            assertEquals(active ? 1f : 0f, p.grad()[0], p.name());
        }
        opt.step(0.01);
        opt.step(0.01);     // (2 + 1) % 3 == 0: switch to block 0 (descending)
        assertEquals(0, opt.activeBlock());
    }

    /// Saving and loading each optimizer's state mid-run continues exactly as the uninterrupted run.
    @Test
    void statesRoundTrip() throws Exception {
        JsonNode f = fixture();
        JsonNode g = f.get("galore");
        GaLore.Config gc = new GaLore.Config(List.of("all"), g.get("rank").asInt(), g.get("update_interval").asInt(), g.get("scale").asDouble(), "std", false);
        var lin = new LinkedHashSet<>(LoraConfig.ALL_LINEAR);
        // run 4 steps in one go vs 2 steps, state copied into a fresh optimizer, 2 more
        for (String kind : List.of("adam_mini", "muon", "galore", "apollo", "badam")) {
            List<Param> a = params(f), b = params(f);
            Object oa = make(kind, a, f, gc, lin), ob = make(kind, b, f, gc, lin);
            for (int s = 0; s < 4; s++) {
                feed(f, a, s);
                stepOf(oa, f.get("lrs").get(s).asDouble());
            }
            for (int s = 0; s < 2; s++) { feed(f, b, s); stepOf(ob, f.get("lrs").get(s).asDouble()); }
            List<Param> c = params(f);
            for (int i = 0; i < c.size(); i++) System.arraycopy(b.get(i).data(), 0, c.get(i).data(), 0, c.get(i).data().length);
            Object oc = make(kind, c, f, gc, lin);
            switch (oc) {
                case AdamMini x -> x.load(((AdamMini) ob).state());
                case Muon x -> x.load(((Muon) ob).state());
                case GaLore x -> x.load(((GaLore) ob).state());
                case BlockAdam x -> x.load(((BlockAdam) ob).state());
                case Apollo x -> x.load(((Apollo) ob).state());
                default -> fail();
            }
            for (int s = 2; s < 4; s++) { feed(f, c, s); stepOf(oc, f.get("lrs").get(s).asDouble()); }
            for (int i = 0; i < a.size(); i++) assertArrayEquals(a.get(i).data(), c.get(i).data(), kind + " " + a.get(i).name());
        }
    }

    private static Object make(String kind, List<Param> ps, JsonNode f, GaLore.Config gc, java.util.Set<String> lin) {
        return switch (kind) {
            case "adam_mini" -> new AdamMini(ps, adam(f), 8, 2);
            case "muon" -> new Muon(ps, adam(f), null);
            case "galore" -> new GaLore(ps, adam(f), gc, lin);
            case "apollo" -> new Apollo(ps, adam(f), new Apollo.Config(List.of("all"), 2, 3, 4.0, "random", "std", "channel", false, false), lin, 11L);
            default -> new BlockAdam(ps, adam(f), new BlockAdam.Config(null, "ascending", 2), 0);
        };
    }

    private static void stepOf(Object o, double lr) {
        switch (o) {
            case AdamMini x -> x.step(lr);
            case Muon x -> x.step(lr);
            case GaLore x -> x.step(lr);
            case BlockAdam x -> x.step(lr);
            case Apollo x -> x.step(lr);
            default -> fail();
        }
    }

    private static void feed(JsonNode f, List<Param> ps, int s) {
        for (int i = 0; i < ps.size(); i++) {
            float[] g = AdamWTest.floats(f.get("grads").get(s).get(i));
            System.arraycopy(g, 0, ps.get(i).grad(), 0, g.length);
        }
    }
}
