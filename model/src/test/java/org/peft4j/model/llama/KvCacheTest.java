package org.peft4j.model.llama;

import org.junit.jupiter.api.Test;
import org.peft4j.core.DType;
import org.peft4j.core.Gemms;
import org.peft4j.core.Peft4jException.ConfigException;
import org.peft4j.model.LlamaConfig;
import org.peft4j.model.Models;
import org.peft4j.testkit.Shared;

import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.*;

/// The float16 KV cache: what it stores (IEEE half, round to nearest even, against Java's own conversion and a few
/// hand-checked values), what attention reads back, its slot copies and its size; and, on the real TinyStories model,
/// logits within float16 rounding of the float32 cache's.
class KvCacheTest {
    static LlamaConfig config() {
        return Models.load(Shared.require("models/tinystories-656k"), Gemms.get("java")).config;
    }

    @Test
    void aFloat16CacheStoresHalvesAndReadsThemBack() {
        LlamaConfig c = config();
        int kvDim = c.kvDim(), cap = 6;
        KvCache f16 = new KvCache(c, 2, cap, DType.F16), f32 = new KvCache(c, 2, cap);
        var rng = new SplittableRandom(3);
        float[] k = new float[3 * kvDim], v = new float[3 * kvDim];
        for (int i = 0; i < k.length; i++) { k[i] = (float) rng.nextGaussian() * 3; v[i] = (float) rng.nextGaussian(); }
        k[0] = 1f + 0x1p-11f;          // a tie between two halves: to even (1.0)
        k[1] = 1f + 0x1p-11f + 0x1p-20f;  // just above the tie: up (1 + 2^-10)
        k[2] = 70000f;                  // above the largest half: infinity
        k[3] = 1e-8f;                   // below the smallest subnormal half's half: zero
        f16.write(1, 1, 2, k, v, kvDim, 2);   // rows 1, 2 of k and v into positions 2, 3 of slot 1, layer 1
        f16.write(1, 1, 0, k, v, 0, 1);
        float[] keys = f16.keys(1, 1, 4), values = f16.values(1, 1, 4);
        for (int i = 0; i < kvDim; i++) {
            assertEquals(Float.float16ToFloat(Float.floatToFloat16(k[i])), keys[i]);
            for (int r = 1; r <= 2; r++) {
                assertEquals(Float.float16ToFloat(Float.floatToFloat16(k[r * kvDim + i])), keys[(r + 1) * kvDim + i], "key row " + r + " lane " + i);
                assertEquals(Float.float16ToFloat(Float.floatToFloat16(v[r * kvDim + i])), values[(r + 1) * kvDim + i], "value row " + r + " lane " + i);
            }
        }
        assertEquals(1f, keys[0]);
        assertEquals(1f + 0x1p-10f, keys[1]);
        assertEquals(Float.POSITIVE_INFINITY, keys[2]);
        assertEquals(0f, keys[3]);
        assertNotEquals(k[kvDim + 4], keys[2 * kvDim + 4], "a float16 cache must round (else the check proves nothing)");

        f16.copyPrefix(1, 0, 4);
        assertArrayEquals(java.util.Arrays.copyOf(f16.keys(1, 1, 4), 4 * kvDim), java.util.Arrays.copyOf(f16.keys(1, 0, 4), 4 * kvDim));

        f32.write(0, 0, 0, k, v, 0, 3);
        assertSame(f32.k[0][0], f32.keys(0, 0, 3), "a float32 cache is read in place");
        assertEquals(k[kvDim + 5], f32.keys(0, 0, 3)[kvDim + 5]);

        assertEquals(4L * 2 * c.numHiddenLayers() * 2 * cap * kvDim, f32.bytes());
        assertEquals(2L * 2 * c.numHiddenLayers() * 2 * cap * kvDim + 8L * cap * kvDim, f16.bytes());
        assertEquals(f16.bytes(), KvCache.bytes(c, 2, cap, DType.F16));
        var e = assertThrows(ConfigException.class, () -> new KvCache(c, 1, 4, DType.BF16));
        assertTrue(e.getMessage().contains("F32 (default) or F16"), e.getMessage());
    }

    /// Prefill and one decode step over a float16 cache against a float32 cache, on the real TinyStories model: the
    /// logits differ (the rounding is real) by less than 1e-2 of their scale, and pick the same greedy token.
    @Test
    void aFloat16CacheMovesLogitsByLessThanItsRounding() {
        LlamaModel model = Models.load(Shared.require("models/tinystories-656k"), Gemms.get("java"));
        assertEquals(DType.F32, model.kvCacheType());
        int V = model.config.vocabSize();
        int[] prompt = {1, 403, 407, 261, 1538, 1164, 399, 16, 2, 17, 22, 81};
        int P = prompt.length, next = 600, cap = P + 4;

        KvCache plain = model.newCache(1, cap);
        KvCache half = model.kvCacheType(DType.F16).newCache(1, cap);
        assertEquals(DType.F16, half.dtype);
        model.kvCacheType(DType.F32);
        float[][] p = {new float[V], new float[V]}, h = {new float[V], new float[V]};
        model.forward(p[0], prompt, 1, P, 0, plain, model.newActivations(1, P, plain), false);
        model.forward(h[0], prompt, 1, P, 0, half, model.newActivations(1, P, half), false);
        model.forward(p[1], new int[]{next}, 1, 1, P, plain, model.newActivations(1, 1, plain), false);
        model.forward(h[1], new int[]{next}, 1, 1, P, half, model.newActivations(1, 1, half), false);
        for (int step = 0; step < 2; step++) {
            String what = step == 0 ? "prefill" : "decode";
            assertFalse(java.util.Arrays.equals(p[step], h[step]), what + ": float16 rounding left every logit's bits unchanged");
            double scale = 0, diff = 0;
            int ap = 0, ah = 0;
            for (int i = 0; i < V; i++) {
                scale = Math.max(scale, Math.abs(p[step][i]));
                diff = Math.max(diff, Math.abs(p[step][i] - h[step][i]));
                if (p[step][i] > p[step][ap]) ap = i;
                if (h[step][i] > h[step][ah]) ah = i;
            }
            assertTrue(diff <= 1e-2 * scale, what + ": the float16 cache moved a logit by " + diff + " (logit scale " + scale + ")");
            assertEquals(ap, ah, what + ": greedy token");
        }
        var e = assertThrows(ConfigException.class, () -> model.kvCacheType(DType.BF16));
        assertTrue(e.getMessage().contains("F32 (default) or F16"), e.getMessage());
    }
}
