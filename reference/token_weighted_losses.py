"""Independent numpy implementation of LLaMA-Factory's token-weighted SFT losses (src/llamafactory/train/trainer_utils.py),
written from the formulas:

- per-token cross-entropy l_n = logsumexp(x_n) - x_n[y_n] over labelled rows (y_n != -100)
- DFT (_dft_cross_entropy): w_n = exp(-l_n) under torch.no_grad()
- EAFT (_eaft_cross_entropy): top-k (k = 20) of the row's logits, log-softmax over them, H = -sum p log p,
  w_n = (H / 3) ** alpha under torch.no_grad()
- loss = sum_n w_n * l_n / num_items_in_batch (here: the number of labelled rows)

Writes train/src/test/resources/loss/token_weighted.json: fixed logits (N, V) and targets, per case (dft, eaft with
alpha 1 and 0.5) the weights, the loss, and d(loss)/d(logits) by central differences in float64 (h = 1e-6) with
the weights held at their values (the detach).
Run: python3 reference/token_weighted_losses.py
"""
import json
import os
import numpy as np

def lse(x):
    m = x.max(axis=-1, keepdims=True)
    return (m + np.log(np.exp(x - m).sum(axis=-1, keepdims=True)))[..., 0]

def ce(x, y):
    return np.array([lse(x[n]) - x[n, y[n]] if y[n] != -100 else 0.0 for n in range(len(y))])

def weights(kind, alpha, x, y):
    l = ce(x, y)
    w = np.zeros(len(y))
    for n in range(len(y)):
        if y[n] == -100:
            continue
        if kind == "dft":
            w[n] = np.exp(-l[n])
        else:
            top = np.sort(x[n])[::-1][:20]
            lp = top - lse(top)
            h = -(np.exp(lp) * lp).sum()
            w[n] = (h / 3.0) ** alpha
    return w

rng = np.random.default_rng(7)
N, V = 6, 27
x = rng.uniform(-3, 3, size=(N, V)).astype(np.float32).astype(np.float64)
x[2, 5] = 9.0                                   # a confident row
y = np.array([3, -100, 5, 0, 26, -100])
count = int((y != -100).sum())
cases = []
for kind, alpha in (("dft", 1.0), ("eaft", 1.0), ("eaft", 0.5)):
    w = weights(kind, alpha, x, y)
    f = lambda xx: float((w * ce(xx, y)).sum() / count)
    g = np.zeros_like(x)
    h = 1e-6
    for i in range(N):
        for j in range(V):
            old = x[i, j]
            x[i, j] = old + h; lp = f(x)
            x[i, j] = old - h; lm = f(x)
            x[i, j] = old
            g[i, j] = (lp - lm) / (2 * h)
    cases.append({"kind": kind, "alpha": alpha, "weights": w.tolist(), "loss": f(x), "dlogits": g.ravel().tolist()})
path = os.path.join(os.path.dirname(__file__), "..", "train", "src", "test", "resources", "loss", "token_weighted.json")
os.makedirs(os.path.dirname(path), exist_ok=True)
with open(path, "w") as fh:
    json.dump({"N": N, "V": V, "logits": x.ravel().tolist(), "targets": y.tolist(), "count": count, "cases": cases}, fh, indent=1)
print("wrote", os.path.normpath(path), [round(c["loss"], 6) for c in cases])
