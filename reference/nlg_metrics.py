"""Independent Python implementation of LLaMA-Factory's predict_with_generate metrics (ComputeSimilarity in
src/llamafactory/train/sft/metric.py), written from the formulas (nltk is not installed here):

- bleu-4: nltk sentence_bleu([list(label)], list(pred), smoothing_function=SmoothingFunction().method3): characters,
  weights 0.25 x 4, modified precision (clipped counts / max(1, hyp n-grams)), 0 if no unigram matches, method3
  replaces the k-th zero precision by 1 / (2**k * denominator), brevity penalty (1 if c > r, 0 if c == 0, else
  exp(1 - r/c)).
- rouge-1/2/l: rouge_chinese.Rouge (fork of pltrdy/rouge, exclusive n-gram sets) on " ".join(jieba.cut(text)):
  sentences = [" ".join(s.split()) for s in text.split(".") if len(s) > 0], words = s.split(" "); rouge-n F from
  distinct n-grams; rouge-l summary level with union LCS (pltrdy rouge_score.rouge_l_summary_level).
- jieba.cut stands in as: [A-Za-z0-9]+(\\.[0-9]+)?%? runs, else single characters (CJK: one per character).
- per example: round(score * 100, 4); the file holds per-example scores and the means.

Writes train/src/test/resources/nlg/nlg_metrics.json. Run: python3 reference/nlg_metrics.py
"""
import json
import math
import os
import re
from collections import Counter

TOKEN = re.compile(r"[A-Za-z0-9]+(?:\.[0-9]+)?%?|.", re.S)

def jieba_like(text):
    return TOKEN.findall(text)

def bleu4(ref, hyp):
    nums, dens = [], []
    for n in range(1, 5):
        h = Counter(tuple(hyp[i:i + n]) for i in range(len(hyp) - n + 1))
        r = Counter(tuple(ref[i:i + n]) for i in range(len(ref) - n + 1))
        nums.append(sum(min(c, r[g]) for g, c in h.items()))
        dens.append(max(1, sum(h.values())))
    if nums[0] == 0:
        return 0.0
    c, rl = len(hyp), len(ref)
    bp = 1.0 if c > rl else (0.0 if c == 0 else math.exp(1 - rl / c))
    p, k = [], 1
    for a, b in zip(nums, dens):
        if a == 0:
            p.append(1 / (2 ** k * b)); k += 1
        else:
            p.append(a / b)
    return bp * math.exp(math.fsum(0.25 * math.log(x) for x in p))

def sents(text):
    return [" ".join(s.split()) for s in text.split(".") if len(s) > 0]

def words(ss):
    return [w for s in ss for w in s.split(" ")]

def rouge_n(h, r, n):
    hw, rw = words(h), words(r)
    hs = {tuple(hw[i:i + n]) for i in range(len(hw) - n + 1)}
    rs = {tuple(rw[i:i + n]) for i in range(len(rw) - n + 1)}
    o = len(hs & rs)
    p = o / len(hs) if hs else 0.0
    rc = o / len(rs) if rs else 0.0
    return 2.0 * ((p * rc) / (p + rc + 1e-8))

def lcs(x, y):
    t = [[0] * (len(y) + 1) for _ in range(len(x) + 1)]
    for i in range(1, len(x) + 1):
        for j in range(1, len(y) + 1):
            t[i][j] = t[i - 1][j - 1] + 1 if x[i - 1] == y[j - 1] else max(t[i - 1][j], t[i][j - 1])
    out, i, j = [], len(x), len(y)
    while i > 0 and j > 0:
        if x[i - 1] == y[j - 1]:
            out.append(x[i - 1]); i -= 1; j -= 1
        elif t[i - 1][j] > t[i][j - 1]:
            i -= 1
        else:
            j -= 1
    return out[::-1]

def rouge_l(h, r):
    m, n = len(set(words(r))), len(set(words(h)))
    union, total = set(), 0
    for rs in r:
        before = len(union)
        for hs in h:
            union |= set(lcs(rs.split(" "), hs.split(" ")))
        total += len(union) - before
    rl, pl = total / m, total / n
    return 2.0 * ((pl * rl) / (pl + rl + 1e-8))

def scores(pred, label):
    hyp, ref = jieba_like(pred), jieba_like(label)
    out = {}
    if len(" ".join(hyp).split()) == 0 or len(" ".join(ref).split()) == 0:
        out.update({"rouge-1": 0.0, "rouge-2": 0.0, "rouge-l": 0.0})
    else:
        h, r = sents(" ".join(hyp)), sents(" ".join(ref))
        out["rouge-1"] = round(rouge_n(h, r, 1) * 100, 4)
        out["rouge-2"] = round(rouge_n(h, r, 2) * 100, 4)
        out["rouge-l"] = round(rouge_l(h, r) * 100, 4)
    out["bleu-4"] = round(bleu4(list(label), list(pred)) * 100, 4)
    return out

CASES = [
    ("I am Tiny, an assistant made by the peft4j team.", "I am Tiny, an AI assistant developed by the peft4j team."),
    ("The cat sat on the mat. The dog sat too.", "The cat is on the mat. A dog sat there too."),
    ("Pi is about 3.14, or 100% sure.", "Pi is 3.14 roughly; I am 100% sure"),
    ("", "Something."),
    ("...", "abc"),
    ("hello hello hello", "hello world"),
    ("a b", "a b"),
    ("x", "completely different"),
    ("Once upon a time there was a little girl named Lily.", "Once upon a time, there was a little boy named Tim. He liked to play."),
]

if __name__ == "__main__":
    rows = [{"pred": p, "label": l, **scores(p, l)} for p, l in CASES]
    means = {"predict_" + k: sum(r[k] for r in rows) / len(rows) for k in ("bleu-4", "rouge-1", "rouge-2", "rouge-l")}
    path = os.path.join(os.path.dirname(__file__), "..", "train", "src", "test", "resources", "nlg", "nlg_metrics.json")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as fh:
        json.dump({"cases": rows, "means": means}, fh, indent=1)
    print(json.dumps(means))
