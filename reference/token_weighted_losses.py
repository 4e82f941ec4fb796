"""Independent numpy implementation of LLaMA-Factory's token-weighted SFT losses (src/llamafactory/train/trainer_utils.py),
written from the formulas:

- per-token cross-entropy l_n = logsumexp(x_n) - x_n[y_n] over labelled rows (y_n != -100)
- DFT (_dft_cross_entropy): w_n = exp(-l_n) under torch.no_grad()
- EAFT (_eaft_cross_entropy): top-k (k = 20) of the row's logits, log-softmax over them, H = -sum p log p,
  w_n = (H / 3) ** alpha under torch.no_grad()
- loss = sum_n w_n * l_n / num_items_in_batch (here: the number of labelled rows)
- ASFT (asft_loss_func -> _asft_cross_entropy): the DFT mean over the labelled rows plus
  asft_alpha * mean over the labelled rows of KL_n = sum_v q_v (log q_v - log p_v), p = softmax(policy logits),
  q = softmax(reference logits) (F.kl_div(log_softmax(x), softmax(r)).sum(-1)); the reference is a constant

Writes train/src/test/resources/loss/token_weighted.json: fixed logits (N, V) and targets, per case (dft, eaft with
alpha 1 and 0.5) the weights, the loss, and d(loss)/d(logits) by central differences in float64 (h = 1e-6) with
the weights held at their values (the detach); under "asft": fixed reference logits and, for asft_alpha 0.1 and 0.7,
the KL per row, the loss and its gradient the same way.
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
def log_softmax(x):
    return x - lse(x)[..., None]

r = rng.uniform(-2, 2, size=(N, V)).astype(np.float32).astype(np.float64)
r[2, 1] = 7.0                                   # the reference is confident elsewhere on the confident row
mask = y != -100
w_dft = weights("dft", 1.0, x, y)

def kl_rows(xx):
    q = np.exp(log_softmax(r))
    return np.where(mask, (q * (log_softmax(r) - log_softmax(xx))).sum(axis=-1), 0.0)

asft = []
for alpha in (0.1, 0.7):
    f = lambda xx: float((w_dft * ce(xx, y)).sum() / count + alpha * kl_rows(xx).sum() / count)
    g = np.zeros_like(x)
    h = 1e-6
    for i in range(N):
        for j in range(V):
            old = x[i, j]
            x[i, j] = old + h; lp = f(x)
            x[i, j] = old - h; lm = f(x)
            x[i, j] = old
            g[i, j] = (lp - lm) / (2 * h)
    asft.append({"alpha": alpha, "weights": w_dft.tolist(), "kl": kl_rows(x).tolist(), "loss": f(x), "dlogits": g.ravel().tolist()})

path = os.path.join(os.path.dirname(__file__), "..", "train", "src", "test", "resources", "loss", "token_weighted.json")
os.makedirs(os.path.dirname(path), exist_ok=True)
with open(path, "w") as fh:
    json.dump({"N": N, "V": V, "logits": x.ravel().tolist(), "targets": y.tolist(), "count": count, "cases": cases,
               "asft": {"ref_logits": r.ravel().tolist(), "cases": asft}}, fh, indent=1)
print("wrote", os.path.normpath(path), [round(c["loss"], 6) for c in cases], [round(c["loss"], 6) for c in asft])
