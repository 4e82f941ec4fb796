package org.peft4j.train.engine;

import org.junit.jupiter.api.Test;
import org.peft4j.core.Gemm;
import org.peft4j.core.Gemms;
import org.peft4j.model.layers.CrossEntropy;
import org.peft4j.model.llama.Decoder;
import org.peft4j.model.llama.LlamaWeights;
import org.peft4j.model.adapter.lora.LoraConfig;

import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/// DPO's paired reference pass (each pair's shared prompt run once into a KV cache, then both answers over it) against
/// the plain reference pass over whole rows, on the real stories260K (grouped-query attention, so the copied cache
/// holds fewer key/value heads than query heads).
class PairedReferenceTest {
    static final int U = 3, T = 30;

    /// U pairs right-padded to T: pair u has a prompt of promptLen[u] tokens, then answers of their own lengths; the
    /// answers of pair 1 begin with the same 3 tokens (a labelled position inside the shared prefix).
    static int[][] pairs(int V, int[] promptLen, long seed) {
        SplittableRandom r = new SplittableRandom(seed);
        int[] tokens = new int[2 * U * T], labels = new int[2 * U * T], targets = new int[2 * U * T];
        java.util.Arrays.fill(labels, CrossEntropy.IGNORE);
        for (int u = 0; u < U; u++) {
            int[] prompt = new int[promptLen[u]], common = new int[3];
            for (int i = 0; i < prompt.length; i++) prompt[i] = 3 + r.nextInt(V - 3);
            for (int i = 0; i < 3; i++) common[i] = 3 + r.nextInt(V - 3);
            for (int side = 0; side < 2; side++) {
                int row = side * U + u, len = promptLen[u] + 5 + r.nextInt(T - promptLen[u] - 5);
                for (int t = 0; t < T; t++) {
                    int n = row * T + t;
                    if (t < promptLen[u]) tokens[n] = prompt[t];
                    else if (t < len) {
                        tokens[n] = u == 1 && t - promptLen[u] < 3 ? common[t - promptLen[u]] : 3 + r.nextInt(V - 3);
                        labels[n] = tokens[n];
                    } else tokens[n] = 0;   // padding, unlabelled
                }
            }
        }
        CrossEntropy.shiftLabels(targets, labels, 2 * U, T);
        return new int[][] {tokens, targets};
    }

    static void assertSame(double[] plain, int[] plainCounts, double[] paired, int[] pairedCounts) {
        assertArrayEquals(plainCounts, pairedCounts, "labelled positions per row");
        for (int b = 0; b < plain.length; b++)
            assertEquals(plain[b], paired[b], 1e-5 * (1 + Math.abs(plain[b])), "row " + b + " log-probability sum");
    }

    @Test
    void pairedPassEqualsThePlainPassForTheAdapterOffBase() {
        for (Gemm gemm : new Gemm[] {TrainModelTest.GEMM, Gemms.get("java")}) {
            LlamaWeights w = TrainModelTest.stories();
            TrainModel tm = new TrainModel(w, new Method.Lora(LoraConfig.of(4, LoraConfig.ALL_LINEAR)), gemm, 2 * U, T, false, 7);
            int[][] bt = pairs(w.config.vocabSize(), new int[] {12, 9, 15}, 5);
            // prompts of 12, 9 (+ 3 common answer tokens) and 15 tokens: every pair shares its first 12
            assertEquals(12, TrainModel.sharedPrefix(bt[0], 2 * U, T), "the shortest common start of the pairs");
            double[] plain = new double[2 * U], paired = new double[2 * U];
            int[] pc = new int[2 * U], qc = new int[2 * U];
            tm.referenceLogps(plain, pc, bt[0], bt[1], 2 * U, T);
            tm.referencePairLogps(paired, qc, bt[0], bt[1], 2 * U, T);
            assertSame(plain, pc, paired, qc);
            for (int b = 0; b < 2 * U; b++) assertTrue(plain[b] < -1, "row " + b + " scores real tokens: " + plain[b]);
            // a second paired call (the cache slots reused) gives the same numbers
            double[] again = new double[2 * U];
            tm.referencePairLogps(again, qc, bt[0], bt[1], 2 * U, T);
            assertArrayEquals(paired, again, gemm.name() + ": a reused cache");
        }
    }

    /// Full tuning's reference: a frozen copy of the weights as a separate decoder; a batch of one pair whose prefix
    /// reaches into the answers; and rows sharing fewer than MIN_SHARED_PREFIX tokens, which take the plain path.
    @Test
    void pairedPassEqualsThePlainPassForAFrozenCopyAndShortPrefixes() {
        LlamaWeights w = TrainModelTest.stories();
        TrainModel tm = new TrainModel(w, new Method.Full(), TrainModelTest.GEMM, 2 * U, T, false, 7);
        tm.useReference(Decoder.of(TrainModelTest.stories(), TrainModelTest.GEMM), null);
        for (int[] promptLen : new int[][] {{20, 11, 14}, {4, 10, 10}}) {
            int[][] bt = pairs(w.config.vocabSize(), promptLen, 11);
            double[] plain = new double[2 * U], paired = new double[2 * U];
            int[] pc = new int[2 * U], qc = new int[2 * U];
            tm.referenceLogps(plain, pc, bt[0], bt[1], 2 * U, T);
            tm.referencePairLogps(paired, qc, bt[0], bt[1], 2 * U, T);
            assertSame(plain, pc, paired, qc);
        }
        // one pair (2 rows of the planned 6): rows u = 0 and U = 1
        int[][] bt = pairs(w.config.vocabSize(), new int[] {10, 10, 10}, 13);
        int[] tokens = new int[2 * T], targets = new int[2 * T];
        System.arraycopy(bt[0], 0, tokens, 0, T); System.arraycopy(bt[0], U * T, tokens, T, T);
        System.arraycopy(bt[1], 0, targets, 0, T); System.arraycopy(bt[1], U * T, targets, T, T);
        double[] plain = new double[2], paired = new double[2];
        int[] pc = new int[2], qc = new int[2];
        tm.referenceLogps(plain, pc, tokens, targets, 2, T);
        tm.referencePairLogps(paired, qc, tokens, targets, 2, T);
        assertSame(plain, pc, paired, qc);
    }

    @Test
    void sharedPrefixIsTheShortestCommonStartOfEachPair() {
        int[] t = {1, 2, 3, 4, 1, 2, 9, 4, 1, 2, 3, 4, 1, 2, 3, 5};   // rows (0,2) share 4 → capped at T-1 = 3, (1,3) share 2
        assertEquals(2, TrainModel.sharedPrefix(t, 4, 4));
        assertEquals(3, TrainModel.sharedPrefix(new int[] {5, 6, 7, 8, 5, 6, 7, 8}, 2, 4), "identical rows keep one token each");
        assertEquals(0, TrainModel.sharedPrefix(new int[] {5, 6, 7, 5, 6, 7, 5, 6, 7}, 3, 3), "an odd number of rows has no pairs");
        assertEquals(0, TrainModel.sharedPrefix(new int[] {1, 2, 2, 2}, 2, 2), "different first tokens");
    }
}
