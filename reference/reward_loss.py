"""Independent numpy implementation of LLaMA-Factory's stage rm loss, written from the formulas:

- value head: TRL ValueHead (trl/models/modeling_value_head.py), summary = nn.Linear(hidden, 1): v = x @ w.T + b
  (dropout is off here: evaluation mode)
- LLaMA-Factory PairwiseTrainer.compute_loss (src/llamafactory/train/rm/trainer.py): rows are P chosen then P
  rejected; each row's score is the value at its last non-pad token; loss = -logsigmoid(chosen - rejected).mean()
- accuracy: LLaMA-Factory rm/metric.py ComputeAccuracy, mean of chosen > rejected

Writes train/src/test/resources/pref/reward_loss.json: fixed inputs x (2P, C) (the gathered last-token states), w, b,
the values, per-pair losses, the mean loss, the accuracy, and d(mean loss)/d(x, w, b) by central differences in
float64 (h = 1e-6) of this implementation.
Run: python3 reference/reward_loss.py
"""
import json
import os
import numpy as np

def loss_of(x, w, b, P):
    v = x @ w + b
    c, r = v[:P], v[P:]
    losses = np.logaddexp(0.0, -(c - r))          # -logsigmoid(c - r)
    return losses.mean(), v, losses, float(np.mean(c > r))

def central(f, a, h=1e-6):
    g = np.zeros_like(a)
    it = np.nditer(a, flags=["multi_index"])
    for _ in it:
        i = it.multi_index
        old = a[i]
        a[i] = old + h; lp = f()
        a[i] = old - h; lm = f()
        a[i] = old
        g[i] = (lp - lm) / (2 * h)
    return g

rng = np.random.default_rng(18)
P, C = 3, 5
x = rng.uniform(-2, 2, size=(2 * P, C))
w = rng.uniform(-1, 1, size=C)
b = np.array([0.3])
# one pair far apart (a saturated sigmoid), one pair exactly tied
x[P + 1] = x[1]
x[2] *= 4
mean, v, losses, acc = loss_of(x, w, b, P)
f = lambda: loss_of(x, w, b, P)[0]
out = {"P": P, "C": C, "x": x.ravel().tolist(), "w": w.tolist(), "b": b.tolist(), "values": v.tolist(),
       "losses": losses.tolist(), "mean_loss": float(mean), "accuracy": acc,
       "dx": central(f, x).ravel().tolist(), "dw": central(f, w).tolist(), "db": central(f, b).tolist()}
path = os.path.join(os.path.dirname(__file__), "..", "train", "src", "test", "resources", "pref", "reward_loss.json")
with open(path, "w") as fh:
    json.dump(out, fh, indent=1)
print("wrote", os.path.normpath(path), "mean loss", mean, "accuracy", acc)
