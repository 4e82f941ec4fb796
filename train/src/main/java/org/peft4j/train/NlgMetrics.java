package org.peft4j.train;

import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;

/// BLEU-4 and ROUGE-1/2/L as LLaMA-Factory's `ComputeSimilarity` (src/llamafactory/train/sft/metric.py) reports them
/// for `predict_with_generate`, per example, in percent rounded to 4 decimals, then averaged over the examples:
///
/// - BLEU-4: `nltk.translate.bleu_score.sentence_bleu([list(label)], list(pred), smoothing_function=method3)`, on
///   **characters** (Python's `list(str)`), uniform weights 1/4: modified n-gram precisions p1..p4 (clipped counts over
///   max(1, hypothesis n-grams)); 0 when no unigram matches; a zero count p_n becomes 1/(2^k · denominator) for the
///   k-th zero (nltk `SmoothingFunction.method3`, NIST's geometric smoothing); brevity penalty 1 when c > r, 0 when
///   c = 0, else e^(1 − r/c).
/// - ROUGE: `rouge_chinese.Rouge().get_scores(" ".join(jieba.cut(pred)), " ".join(jieba.cut(label)))` (a fork of
///   pltrdy/rouge, rouge/rouge.py and rouge_score.py): the text is split into sentences at ".", each piece of
///   non-zero length kept with its whitespace collapsed, words are the pieces' " "-split tokens; ROUGE-N counts
///   distinct n-grams (sets: `exclusive=True`), precision = overlap/hyp, recall = overlap/ref, F = 2PR/(P + R + 1e-8);
///   ROUGE-L is summary-level: the union over the hypothesis sentences of each reference sentence's LCS tokens (sets),
///   summed over reference sentences, over the distinct words of each side. Empty text on either side scores 0.
///
/// Tokenization stands in for jieba: for text without CJK characters jieba effectively splits into runs of ASCII
/// letters and digits (a decimal point or a trailing % kept with digits), each whitespace character, and each other
/// character alone, which [#words] reproduces; CJK characters (which jieba segments into dictionary words) are taken
/// one character per word here, so ROUGE on Chinese text differs from LLaMA-Factory's (BLEU, on characters, does not).
/// Checked against reference/nlg_metrics.py, written from the same formulas.
public final class NlgMetrics {
    private NlgMetrics() {}

    /// LLaMA-Factory's four scores of one example, in percent rounded to 4 decimals: bleu-4, rouge-1, rouge-2, rouge-l.
    public static Map<String, Double> scores(String pred, String label) {
        Map<String, Double> m = new LinkedHashMap<>();
        List<String> hyp = words(pred), ref = words(label);
        if (String.join(" ", hyp).isBlank() || String.join(" ", ref).isBlank()) {
            m.put("rouge-1", 0.0); m.put("rouge-2", 0.0); m.put("rouge-l", 0.0);
        } else {
            List<List<String>> h = sentences(String.join(" ", hyp)), r = sentences(String.join(" ", ref));
            m.put("rouge-1", round4(rougeN(h, r, 1) * 100));
            m.put("rouge-2", round4(rougeN(h, r, 2) * 100));
            m.put("rouge-l", round4(rougeL(h, r) * 100));
        }
        m.put("bleu-4", round4(bleu4(chars(label), chars(pred)) * 100));
        return m;
    }

    /// Means of [#scores] over the examples under LLaMA-Factory's `predict_` names (predict_bleu-4, predict_rouge-1,
    /// predict_rouge-2, predict_rouge-l).
    public static Map<String, Double> means(List<Map<String, Double>> perExample) {
        Map<String, Double> out = new LinkedHashMap<>();
        for (String k : List.of("bleu-4", "rouge-1", "rouge-2", "rouge-l")) {
            double s = 0;
            for (Map<String, Double> e : perExample) s += e.get(k);
            out.put("predict_" + k, perExample.isEmpty() ? 0.0 : s / perExample.size());
        }
        return out;
    }

    static double round4(double x) { return Math.round(x * 1e4) / 1e4; }

    /// Python's list(str): the code points.
    static List<String> chars(String s) {
        List<String> out = new ArrayList<>();
        s.codePoints().forEach(c -> out.add(new String(Character.toChars(c))));
        return out;
    }

    /// jieba's split as described in the class comment.
    public static List<String> words(String s) {
        List<String> out = new ArrayList<>();
        int[] cp = s.codePoints().toArray();
        int i = 0;
        while (i < cp.length) {
            if (isAsciiAlnum(cp[i])) {
                int j = i;
                while (j < cp.length && isAsciiAlnum(cp[j])) j++;
                // finalseg's re_skip: [a-zA-Z0-9]+(?:\.\d+)?%?
                if (j + 1 < cp.length && cp[j] == '.' && Character.isDigit(cp[j + 1]) && cp[j + 1] < 128) {
                    j++;
                    while (j < cp.length && cp[j] >= '0' && cp[j] <= '9') j++;
                }
                if (j < cp.length && cp[j] == '%') j++;
                out.add(new String(cp, i, j - i));
                i = j;
            } else {
                out.add(new String(cp, i, 1));
                i++;
            }
        }
        return out;
    }

    private static boolean isAsciiAlnum(int c) { return c < 128 && Character.isLetterOrDigit(c); }

    /// pltrdy's split: pieces between "." of non-zero length, whitespace collapsed, each " "-split into words.
    static List<List<String>> sentences(String text) {
        List<List<String>> out = new ArrayList<>();
        for (String piece : text.split("\\.", -1)) {
            if (piece.isEmpty()) continue;
            String norm = String.join(" ", piece.trim().split("\\s+"));
            if (piece.isBlank()) norm = "";
            out.add(List.of(norm.split(" ", -1)));
        }
        return out;
    }

    static double rougeN(List<List<String>> hyp, List<List<String>> ref, int n) {
        Set<List<String>> h = ngrams(flatten(hyp), n), r = ngrams(flatten(ref), n);
        Set<List<String>> overlap = new HashSet<>(h);
        overlap.retainAll(r);
        return f(overlap.size(), h.size(), r.size());
    }

    /// F of overlap/hyp and overlap/ref, pltrdy's f_r_p_rouge_n (0 precision or recall for an empty side).
    static double f(int overlap, int hypCount, int refCount) {
        double p = hypCount == 0 ? 0 : (double) overlap / hypCount, r = refCount == 0 ? 0 : (double) overlap / refCount;
        return 2.0 * ((p * r) / (p + r + 1e-8));
    }

    static double rougeL(List<List<String>> hyp, List<List<String>> ref) {
        int m = new HashSet<>(flatten(ref)).size(), n = new HashSet<>(flatten(hyp)).size();
        Set<String> union = new HashSet<>();
        int llcs = 0;
        for (List<String> r : ref) {
            int before = union.size();
            for (List<String> h : hyp) union.addAll(lcsTokens(r, h));
            llcs += union.size() - before;
        }
        double rl = (double) llcs / m, pl = (double) llcs / n;
        return 2.0 * ((pl * rl) / (pl + rl + 1e-8));
    }

    /// The tokens of x on one longest common subsequence of x and y, reconstructed as pltrdy's `_recon_lcs`.
    static List<String> lcsTokens(List<String> x, List<String> y) {
        int a = x.size(), b = y.size();
        int[][] t = new int[a + 1][b + 1];
        for (int i = 1; i <= a; i++)
            for (int j = 1; j <= b; j++)
                t[i][j] = x.get(i - 1).equals(y.get(j - 1)) ? t[i - 1][j - 1] + 1 : Math.max(t[i - 1][j], t[i][j - 1]);
        List<String> out = new ArrayList<>();
        int i = a, j = b;
        while (i > 0 && j > 0) {
            if (x.get(i - 1).equals(y.get(j - 1))) { out.add(0, x.get(i - 1)); i--; j--; }
            else if (t[i - 1][j] > t[i][j - 1]) i--;
            else j--;
        }
        return out;
    }

    static List<String> flatten(List<List<String>> s) {
        List<String> out = new ArrayList<>();
        for (List<String> x : s) out.addAll(x);
        return out;
    }

    static Set<List<String>> ngrams(List<String> w, int n) {
        Set<List<String>> out = new HashSet<>();
        for (int i = 0; i + n <= w.size(); i++) out.add(List.copyOf(w.subList(i, i + n)));
        return out;
    }

    /// nltk sentence_bleu with one reference, weights (1/4)^4 and smoothing method3, as in the class comment.
    static double bleu4(List<String> ref, List<String> hyp) {
        long[] num = new long[5], den = new long[5];
        for (int n = 1; n <= 4; n++) {
            Map<List<String>, Integer> hc = counts(hyp, n), rc = counts(ref, n);
            long clipped = 0, total = 0;
            for (var e : hc.entrySet()) {
                clipped += Math.min(e.getValue(), rc.getOrDefault(e.getKey(), 0));
                total += e.getValue();
            }
            num[n] = clipped;
            den[n] = Math.max(1, total);
        }
        int c = hyp.size(), r = ref.size();
        if (num[1] == 0) return 0;
        double bp = c > r ? 1 : c == 0 ? 0 : Math.exp(1 - (double) r / c);
        double s = 0;
        int k = 1;
        for (int n = 1; n <= 4; n++) {
            double p = num[n] == 0 ? 1.0 / (Math.pow(2, k++) * den[n]) : (double) num[n] / den[n];
            s += 0.25 * Math.log(p);
        }
        return bp * Math.exp(s);
    }

    static Map<List<String>, Integer> counts(List<String> w, int n) {
        Map<List<String>, Integer> out = new HashMap<>();
        for (int i = 0; i + n <= w.size(); i++) out.merge(List.copyOf(w.subList(i, i + n)), 1, Integer::sum);
        return out;
    }
}
