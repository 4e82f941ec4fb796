package org.peft4j.model.adapter.lora;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.peft4j.core.DType;
import org.peft4j.core.Gemm;
import org.peft4j.core.kernels.ScalarGemm;
import org.peft4j.formats.safetensors.SafeTensors;
import org.peft4j.testkit.Shared;

import java.nio.file.Path;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.peft4j.testkit.Assert.assertClose;

/// Replays ../shared/docs/vectors/lora_vectors.json (independent numpy program, checked against torch float32
/// within 5e-7): LoRA / rsLoRA forward, ΔW and merge, DoRA norm / forward / merge, PEFT tensor names and shapes.
class LoraVectorsTest {
    static final Gemm GEMM = ScalarGemm.INSTANCE;
    static JsonNode v;
    /// The file's stated tolerance (rel 1e-5, abs 1e-6): float32 sums of ≤ 8 terms of O(1) differ from numpy's
    /// order by a few ulps (~1e-7 relative), so 1e-5 passes correct code and fails any wrong term or scale.
    static double rtol, atol;
    static int K, M, r, N;
    static float[] w, bias, a, b, x;

    @BeforeAll
    static void load() throws Exception {
        v = new ObjectMapper().readTree(Shared.require("docs/vectors/lora_vectors.json").toFile());
        rtol = v.at("/tolerance/rel").asDouble();
        atol = v.at("/tolerance/abs").asDouble();
        K = v.at("/config/in_features").asInt();
        M = v.at("/config/out_features").asInt();
        r = v.at("/config/r").asInt();
        w = tensor("inputs", "W ");
        bias = tensor("inputs", "bias");
        a = tensor("inputs", "lora_A.weight");
        b = tensor("inputs", "lora_B.weight");
        x = tensor("inputs", "x ");
        N = x.length / K;
    }

    /// The tensor whose name starts with `prefix`, decoded exactly from its f32_hex bits.
    static float[] tensor(String group, String prefix) {
        for (JsonNode t : v.get(group))
            if (t.get("name").asText().startsWith(prefix)) {
                JsonNode hex = t.get("f32_hex");
                float[] f = new float[hex.size()];
                for (int i = 0; i < f.length; i++) f[i] = Float.intBitsToFloat(Integer.parseUnsignedInt(hex.get(i).asText(), 16));
                return f;
            }
        throw new AssertionError("lora_vectors.json has no " + group + " tensor starting with '" + prefix + "'");
    }

    static LoraConfig config(boolean rslora, boolean dora) {
        return new LoraConfig(r, v.at("/config/lora_alpha").asDouble(), 0.0, List.of("q_proj"), rslora, dora,
                LoraConfig.Init.KAIMING_UNIFORM, "none", false, null, null, null, null);
    }

    @Test
    void scaling() {
        assertEquals(v.at("/config/scaling").asDouble(), config(false, false).scaling(), 0);
        assertEquals(v.at("/config/rslora_scaling").asDouble(), config(true, false).scaling(), 0);
    }

    @Test
    void forward() {
        float s = (float) config(false, false).scaling();
        float[] y = Fixtures.base(x, w, bias, N, K, M);
        assertClose("base_out", tensor("outputs", "base_out"), y, atol, rtol);
        float[] lora = new float[N * M], h = new float[N * r];
        LoraLinear.forward(GEMM, lora, h, x, a, b, s, N, K, M, r);
        assertClose("lora_out", tensor("outputs", "lora_out"), lora, atol, rtol);
        LoraLinear.forward(GEMM, y, h, x, a, b, s, N, K, M, r);
        assertClose("y", tensor("outputs", "y = "), y, atol, rtol);
    }

    @Test
    void rsloraForward() {
        float[] y = Fixtures.base(x, w, bias, N, K, M);
        LoraLinear.forward(GEMM, y, new float[N * r], x, a, b, (float) config(true, false).scaling(), N, K, M, r);
        assertClose("y_rslora", tensor("outputs", "y_rslora"), y, atol, rtol);
    }

    @Test
    void mergeMatchesDeltaAndMergedForward() {
        float s = (float) config(false, false).scaling();
        float[] delta = new float[M * K];
        LoraLinear.merge(GEMM, delta, a, b, s, M, K, r);
        assertClose("delta_W", tensor("outputs", "delta_W"), delta, atol, rtol);
        float[] merged = w.clone();
        LoraLinear.merge(GEMM, merged, a, b, s, M, K, r);
        assertClose("W_merged", tensor("outputs", "W_merged"), merged, atol, rtol);
        assertClose("y_merged", tensor("outputs", "y_merged"), Fixtures.base(x, merged, bias, N, K, M), atol, rtol);
    }

    @Test
    void dora() {
        float s = (float) config(false, true).scaling();
        float[] norm = new float[M];
        DoraLinear.weightNorm(norm, w, a, b, s, M, K, r);
        assertClose("dora_weight_norm_init", tensor("outputs", "dora_weight_norm_init"), norm, atol, rtol);
        float[] m = tensor("outputs", "dora_magnitude");
        float[] y = Fixtures.base(x, w, bias, N, K, M);
        DoraLinear.forward(GEMM, y, new float[N * r], new float[N * M], norm, x, w, a, b, m, s, N, K, M, r);
        assertClose("y_dora", tensor("outputs", "y_dora"), y, atol, rtol);
        float[] merged = w.clone(), factor = new float[M];
        DoraLinear.merge(GEMM, merged, factor, a, b, m, s, M, K, r);
        assertClose("W_dora_merged", tensor("outputs", "W_dora_merged"), merged, atol, rtol);
        assertClose("y_dora from merged W", tensor("outputs", "y_dora"), Fixtures.base(x, merged, bias, N, K, M), atol, rtol);
    }

    /// Our writer's names and shapes for the tiny Llama equal the vector file's PEFT key list, key for key.
    @Test
    void peftKeyNamesAndShapes(@TempDir Path dir) {
        JsonNode ex = v.get("peft_keys_example_tiny_llama");
        int hidden = ex.at("/model/hidden_size").asInt(), rank = ex.get("r").asInt();
        int kvDim = ex.at("/model/num_key_value_heads").asInt() * ex.at("/model/head_dim").asInt();
        int qDim = ex.at("/model/num_attention_heads").asInt() * ex.at("/model/head_dim").asInt();
        List<String> targets = List.of(new ObjectMapper().convertValue(ex.get("target_modules"), String[].class));
        Map<PeftAdapter.Target, LoraWeights> weights = new TreeMap<>();
        for (int layer = 0; layer < ex.at("/model/num_hidden_layers").asInt(); layer++)
            for (String module : targets) {
                int out = module.equals("q_proj") ? qDim : kvDim;
                weights.put(new PeftAdapter.Target(layer, module), LoraWeights.allocate(rank, hidden, out, ex.get("use_dora").asBoolean()));
            }
        LoraConfig cfg = new LoraConfig(rank, 2 * rank, 0, targets, false, ex.get("use_dora").asBoolean(),
                LoraConfig.Init.KAIMING_UNIFORM, "none", false, null, null, null, null);
        new PeftAdapter(cfg, null, null, weights).write(dir, DType.F32);

        Map<String, String> expected = new TreeMap<>(), actual = new TreeMap<>();
        ex.get("tensors").properties().forEach(e -> expected.put(e.getKey(), e.getValue().toString().replace(" ", "")));
        try (SafeTensors st = SafeTensors.open(dir.resolve(PeftAdapter.WEIGHTS_FILE))) {
            st.tensors().forEach((k, info) -> actual.put(k, Arrays.toString(info.shape()).replace(" ", "")));
            assertEquals(Map.of("format", "pt"), st.metadata());
        }
        assertEquals(expected, actual);
    }
}
