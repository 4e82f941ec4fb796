package org.peft4j.model.adapter;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.peft4j.core.Gemm;
import org.peft4j.core.Gemms;
import org.peft4j.core.kernels.ScalarGemm;
import org.peft4j.model.Models;
import org.peft4j.model.llama.Activations;
import org.peft4j.model.llama.KvCache;
import org.peft4j.model.llama.LlamaModel;
import org.peft4j.testkit.Shared;

import java.nio.file.Path;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.peft4j.model.adapter.AdapterInferenceTest.ALL;
import static org.peft4j.model.adapter.AdapterInferenceTest.randomAdapter;
import static org.peft4j.model.adapter.AdapterInferenceTest.tokens;

/// Rows with different adapters in one forward: a batch of 8 rows over 3 adapters (LoRA r4 on q/v, LoRA r8 on all
/// linears, DoRA r8) and the base gives, row by row, what each row gives alone with its adapter — for a batched
/// prefill and for decode steps where every row sits at its own position in its own (permuted) cache slot.
/// With the scalar GEMM each row's sums do not depend on the other rows, so "alone" and "batched" must be equal to
/// the bit; with the default GEMM (whose blocking depends on the row count) within 1e-5 of the largest |logit|.
class MixedAdapterBatchTest {
    @TempDir Path tmp;

    static final int B = 8, DECODE = 3;

    @Test
    void scalarGemmRowByRowBitIdentical() { run(ScalarGemm.INSTANCE, 0); }

    @Test
    void defaultGemmRowByRowWithin1e5Relative() { run(Gemms.get("auto"), 1e-5); }

    void run(Gemm gemm, double tol) {
        LlamaModel model = Models.load(Shared.require("models/tinystories-656k"), gemm);
        int V = model.config.vocabSize();
        LoadedAdapter qv = LoadedAdapter.of("qv", "test", randomAdapter(model, List.of("q_proj", "v_proj"), 4, false, 0.3, 21), model.config);
        LoadedAdapter all = LoadedAdapter.of("all", "test", randomAdapter(model, ALL, 8, false, 0.2, 22), model.config);
        LoadedAdapter dora = LoadedAdapter.of("dora", "test", randomAdapter(model, ALL, 8, true, 0.2, 23), model.config);
        LoadedAdapter[] rows = {qv, all, null, dora, qv, qv, null, all};   // non-contiguous runs, base rows between
        int[] slots = {5, 0, 7, 2, 6, 1, 3, 4};                            // a permutation of the cache's slots

        // (a) one prefill of 8 rows of the same length, then decode steps
        int T = 11, cap = T + DECODE;
        int[][] prompts = new int[B][];
        for (int b = 0; b < B; b++) prompts[b] = tokens(model.config, T, 100 + b);
        int[][] next = new int[DECODE][B];
        for (int s = 0; s < DECODE; s++) for (int b = 0; b < B; b++) next[s][b] = (7 * s + 13 * b) % V;

        float[][][] alone = new float[B][DECODE + 1][];
        for (int b = 0; b < B; b++) {
            KvCache c = model.newCache(1, cap);
            Activations a = model.newActivations(1, T, c);
            float[] lg = new float[V];
            model.forward(lg, prompts[b], 1, T, null, new int[]{0}, new LoadedAdapter[]{rows[b]}, c, a, false);
            alone[b][0] = lg.clone();
            for (int s = 0; s < DECODE; s++) {
                model.forward(lg, new int[]{next[s][b]}, 1, 1, null, new int[]{T + s}, new LoadedAdapter[]{rows[b]}, c, a, false);
                alone[b][s + 1] = lg.clone();
            }
        }
        KvCache cache = model.newCache(B, cap);
        Activations acts = model.newActivations(B, T, cache);
        float[] logits = new float[B * V];
        int[] flat = new int[B * T];
        for (int b = 0; b < B; b++) System.arraycopy(prompts[b], 0, flat, b * T, T);
        int[] pos = new int[B];
        model.forward(logits, flat, B, T, slots, pos, rows, cache, acts, false);
        compare("prefill", logits, alone, 0, V, tol);
        for (int s = 0; s < DECODE; s++) {
            java.util.Arrays.fill(pos, T + s);
            model.forward(logits, next[s], B, 1, slots, pos, rows, cache, acts, false);
            compare("decode step " + s, logits, alone, s + 1, V, tol);
        }

        // (b) prompts of different lengths prefilled one by one into their slots, then decoded together, each row at
        //     its own position
        int[] len = {3, 9, 5, 12, 1, 7, 10, 4};
        int maxLen = 12;
        KvCache c2 = model.newCache(B, maxLen + DECODE);
        Activations a2 = model.newActivations(B, maxLen, c2);
        float[] one = new float[V];
        for (int b = 0; b < B; b++) {
            int[] p = java.util.Arrays.copyOf(prompts[b], len[b]);
            model.forward(one, p, 1, len[b], new int[]{slots[b]}, new int[]{0}, new LoadedAdapter[]{rows[b]}, c2, a2, false);
            float[] ref = alonePrefix(model, p, rows[b], maxLen + DECODE, next, b, V);
            assertClose("row " + b + " prefill of " + len[b], ref, 0, one, 0, V, tol);
        }
        for (int s = 0; s < DECODE; s++) {
            for (int b = 0; b < B; b++) pos[b] = len[b] + s;
            model.forward(logits, next[s], B, 1, slots, pos, rows, c2, a2, false);
            for (int b = 0; b < B; b++) {
                float[] ref = aloneDecode(model, java.util.Arrays.copyOf(prompts[b], len[b]), rows[b], maxLen + DECODE, next, b, s, V);
                assertClose("lengths " + java.util.Arrays.toString(len) + ", decode step " + s + ", row " + b, ref, 0, logits, b * V, V, tol);
            }
        }
        // the adapters matter: rows 0 and 2 differ from each other's adapter on the same prompt
        assertTrue(maxDiff(alone[0][0], aloneWith(model, prompts[0], null, V)) > 1e-3, "adapter 'qv' moves the logits");
    }

    static float[] aloneWith(LlamaModel m, int[] prompt, LoadedAdapter ad, int V) {
        KvCache c = m.newCache(1, prompt.length);
        float[] lg = new float[V];
        m.forward(lg, prompt, 1, prompt.length, null, new int[]{0}, new LoadedAdapter[]{ad}, c, m.newActivations(1, prompt.length, c), false);
        return lg;
    }

    static float[] alonePrefix(LlamaModel m, int[] prompt, LoadedAdapter ad, int cap, int[][] next, int b, int V) {
        return aloneWith(m, prompt, ad, V);
    }

    static float[] aloneDecode(LlamaModel m, int[] prompt, LoadedAdapter ad, int cap, int[][] next, int b, int step, int V) {
        KvCache c = m.newCache(1, cap);
        Activations a = m.newActivations(1, prompt.length, c);
        float[] lg = new float[V];
        m.forward(lg, prompt, 1, prompt.length, null, new int[]{0}, new LoadedAdapter[]{ad}, c, a, false);
        for (int s = 0; s <= step; s++)
            m.forward(lg, new int[]{next[s][b]}, 1, 1, null, new int[]{prompt.length + s}, new LoadedAdapter[]{ad}, c, a, false);
        return lg;
    }

    static void compare(String what, float[] batched, float[][][] alone, int step, int V, double tol) {
        for (int b = 0; b < B; b++) assertClose(what + ", row " + b, alone[b][step], 0, batched, b * V, V, tol);
    }

    static void assertClose(String what, float[] ref, int ro, float[] x, int xo, int n, double tol) {
        if (tol == 0) {
            assertArrayEquals(java.util.Arrays.copyOfRange(ref, ro, ro + n), java.util.Arrays.copyOfRange(x, xo, xo + n), what);
            return;
        }
        double d = 0, scale = 1;
        for (int i = 0; i < n; i++) { d = Math.max(d, Math.abs(ref[ro + i] - x[xo + i])); scale = Math.max(scale, Math.abs(ref[ro + i])); }
        assertTrue(d <= tol * scale, what + ": max |alone - batched| = " + d + " > " + tol + " x max |logit| " + scale);
    }

    static double maxDiff(float[] a, float[] b) {
        double d = 0;
        for (int i = 0; i < a.length; i++) d = Math.max(d, Math.abs(a[i] - b[i]));
        return d;
    }
}
