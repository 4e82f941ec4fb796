package org.peft4j.tokenizer;

import java.util.Map;
import java.util.PriorityQueue;
import java.util.concurrent.ConcurrentHashMap;

/// The `model` of a tokenizer.json of type BPE: vocabulary, merge ranks and the merge loop for one word.
/// Reference: HF tokenizers `models/bpe/model.rs` (`merge_word`) and `word.rs` (`merge_all`).
final class BpeModel {
    private static final int CACHE_MAX = 20_000;

    final Map<String, Integer> vocab;
    /// (left id << 32 | right id) → (rank << 32 | merged id)
    private final MergeTable merges;
    private final int unkId;            // -1 when there is no unk token
    private final boolean fuseUnk;
    private final boolean byteFallback;
    private final boolean ignoreMerges;
    private final int[] byteIds;        // (256) id of `<0xAB>`, or -1
    private final Map<String, int[]> cache = new ConcurrentHashMap<>();

    BpeModel(Map<String, Integer> vocab, MergeTable merges, int unkId, boolean fuseUnk, boolean byteFallback, boolean ignoreMerges) {
        this.vocab = vocab; this.merges = merges; this.unkId = unkId;
        this.fuseUnk = fuseUnk; this.byteFallback = byteFallback; this.ignoreMerges = ignoreMerges;
        this.byteIds = new int[256];
        for (int b = 0; b < 256; b++) byteIds[b] = vocab.getOrDefault(String.format("<0x%02X>", b), -1);
    }

    static long pair(int left, int right) { return ((long) left << 32) | (right & 0xFFFFFFFFL); }

    /// Appends the ids of one pre-token word.
    void encode(String word, IntList out) {
        if (word.isEmpty()) return;
        if (ignoreMerges) {
            Integer id = vocab.get(word);
            if (id != null) { out.add(id); return; }
        }
        int[] ids = cache.get(word);
        if (ids == null) {
            ids = mergeWord(word);
            if (cache.size() >= CACHE_MAX) cache.clear();
            cache.put(word, ids);
        }
        out.addAll(ids);
    }

    /// Characters → ids (byte fallback, fused unk), then merges applied lowest rank first, leftmost on ties.
    private int[] mergeWord(String w) {
        IntList init = new IntList();
        int unkRun = 0; // pending unk (fuse_unk): 1 when one is open
        for (int i = 0; i < w.length(); ) {
            int n = Character.charCount(w.codePointAt(i));
            String ch = w.substring(i, i + n);
            i += n;
            Integer id = vocab.get(ch);
            if (id != null) {
                if (unkRun > 0) { init.add(unkId); unkRun = 0; }
                init.add(id);
                continue;
            }
            if (byteFallback && addBytes(ch, init)) continue;
            if (unkId >= 0) {
                if (unkRun > 0 && !fuseUnk) init.add(unkId);
                unkRun = 1;
            }
        }
        if (unkRun > 0) init.add(unkId);
        return mergeAll(init.toArray());
    }

    /// Byte tokens for `ch` when all exist. Like HF, a pending unk is not flushed here but at the next vocab hit.
    private boolean addBytes(String ch, IntList init) {
        byte[] bytes = ch.getBytes(java.nio.charset.StandardCharsets.UTF_8);
        for (byte b : bytes) if (byteIds[b & 0xFF] < 0) return false;
        for (byte b : bytes) init.add(byteIds[b & 0xFF]);
        return true;
    }

    private int[] mergeAll(int[] sym) {
        int n = sym.length;
        if (n < 2) return sym;
        int[] prev = new int[n], next = new int[n];
        boolean[] gone = new boolean[n];
        for (int i = 0; i < n; i++) { prev[i] = i - 1; next[i] = i + 1 < n ? i + 1 : -1; }
        // (rank << 32 | pos): the smallest is the lowest rank, then the leftmost position
        PriorityQueue<Long> queue = new PriorityQueue<>();
        for (int i = 0; i + 1 < n; i++) {
            long m = merges.get(pair(sym[i], sym[i + 1]));
            if (m != MergeTable.ABSENT) queue.add((m & 0xFFFFFFFF00000000L) | i);
        }
        while (!queue.isEmpty()) {
            long top = queue.poll();
            int pos = (int) top, rank = (int) (top >>> 32);
            if (gone[pos] || next[pos] < 0) continue;
            int right = next[pos];
            long m = merges.get(pair(sym[pos], sym[right]));
            if (m == MergeTable.ABSENT || (int) (m >>> 32) != rank) continue; // stale entry
            sym[pos] = (int) m;
            gone[right] = true;
            next[pos] = next[right];
            if (next[right] >= 0) prev[next[right]] = pos;
            if (prev[pos] >= 0) {
                long pm = merges.get(pair(sym[prev[pos]], sym[pos]));
                if (pm != MergeTable.ABSENT) queue.add((pm & 0xFFFFFFFF00000000L) | prev[pos]);
            }
            if (next[pos] >= 0) {
                long nm = merges.get(pair(sym[pos], sym[next[pos]]));
                if (nm != MergeTable.ABSENT) queue.add((nm & 0xFFFFFFFF00000000L) | pos);
            }
        }
        IntList out = new IntList();
        for (int i = 0; i >= 0; i = next[i]) out.add(sym[i]);
        return out.toArray();
    }

    /// Builds the merge table; `null` entry in the result means a token was missing (reported by the caller).
    static MergeTable mergeTable(Map<String, Integer> vocab, java.util.List<String[]> pairs, String file) {
        MergeTable table = new MergeTable(pairs.size());
        for (int rank = 0; rank < pairs.size(); rank++) {
            String[] p = pairs.get(rank);
            Integer a = vocab.get(p[0]), b = vocab.get(p[1]), ab = vocab.get(p[0] + p[1]);
            if (a == null || b == null || ab == null)
                throw new org.peft4j.core.Peft4jException.FormatException(file + ": merge #" + rank + " '" + p[0] + " " + p[1]
                        + "' uses a token missing from the vocab; the file is corrupt or was edited, re-download it");
            table.put(pair(a, b), ((long) rank << 32) | ab);
        }
        return table;
    }
}
