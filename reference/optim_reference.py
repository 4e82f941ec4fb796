#!/usr/bin/python3
"""Oracle for peft4j's train/optim: torch.optim.AdamW and SGD step by step, and transformers' get_scheduler
lambdas, re-implemented in numpy from their sources (torch/optim/adamw.py `_single_tensor_adamw`,
torch/optim/sgd.py, transformers/optimization.py). Optimizer math is float32 in torch's order of operations.

    python3 reference/optim_reference.py   # writes train/src/test/resources/optim/{adamw,schedules}.json
"""
import json, math, os
import numpy as np

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "train", "src", "test", "resources", "optim")
f32 = np.float32


def adamw(params, grads_per_step, lrs, beta1, beta2, eps, wd):
    """torch _single_tensor_adamw (amsgrad=False, maximize=False, capturable=False), float32 tensors."""
    p = [x.astype(f32).copy() for x in params]
    m = [np.zeros_like(x) for x in p]
    v = [np.zeros_like(x) for x in p]
    history = []
    for step, (grads, lr) in enumerate(zip(grads_per_step, lrs), start=1):
        for i, g in enumerate(grads):
            p[i] = p[i] * f32(1 - lr * wd)                                  # param.mul_(1 - lr * weight_decay)
            m[i] = m[i] + f32(1 - beta1) * (g - m[i])                       # exp_avg.lerp_(grad, 1 - beta1)
            v[i] = v[i] * f32(beta2) + f32(1 - beta2) * g * g               # mul_(beta2).addcmul_(g, g, 1 - beta2): self + value * t1 * t2
            bc1 = 1 - beta1 ** step
            bc2 = 1 - beta2 ** step
            step_size = lr / bc1
            denom = np.sqrt(v[i]) / f32(math.sqrt(bc2)) + f32(eps)          # (exp_avg_sq.sqrt() / bc2_sqrt).add_(eps)
            p[i] = p[i] + (f32(-step_size) * m[i]) / denom                 # addcdiv_ kernel: self + value * t1 / t2
        history.append([x.tolist() for x in p])
    return history, m, v


def sgd(params, grads_per_step, lrs, momentum, wd):
    """torch SGD (dampening=0, nesterov=False), float32."""
    p = [x.astype(f32).copy() for x in params]
    buf = [None] * len(p)
    history = []
    for grads, lr in zip(grads_per_step, lrs):
        for i, g in enumerate(grads):
            d = g + f32(wd) * p[i]
            if momentum != 0:
                buf[i] = d.copy() if buf[i] is None else f32(momentum) * buf[i] + d
                d = buf[i]
            p[i] = p[i] - f32(lr) * d
        history.append([x.tolist() for x in p])
    return history


def lam(kind, s, steps, warmup, cycles=None, power=1.0, lr_end=1e-7, lr_init=None):
    """transformers optimization.py lr lambdas."""
    if kind == "constant":
        return 1.0
    if s < warmup:
        return float(s) / float(max(1, warmup))
    if kind == "constant_with_warmup":
        return 1.0
    if kind == "linear":
        return max(0.0, float(steps - s) / float(max(1, steps - warmup)))
    progress = float(s - warmup) / float(max(1, steps - warmup))
    if kind == "cosine":
        return max(0.0, 0.5 * (1.0 + math.cos(math.pi * float(0.5 if cycles is None else cycles) * 2.0 * progress)))
    if kind == "cosine_with_restarts":
        if progress >= 1.0:
            return 0.0
        return max(0.0, 0.5 * (1.0 + math.cos(math.pi * ((float(1 if cycles is None else cycles) * progress) % 1.0))))
    if kind == "polynomial":
        if s > steps:
            return lr_end / lr_init
        decay_steps = steps - warmup
        pct_remaining = 1 - (s - warmup) / decay_steps
        return ((lr_init - lr_end) * pct_remaining ** power + lr_end) / lr_init
    raise ValueError(kind)


def main():
    rng = np.random.default_rng(20240611)
    shapes = [7, 12, 1]
    params = [rng.standard_normal(n).astype(f32) for n in shapes]
    steps = 10
    # step 3 has tiny gradients (v ~ 1e-16, where eps matters); tensor 2 keeps a constant gradient
    grads = []
    for s in range(steps):
        g = [rng.standard_normal(n).astype(f32) * f32(1e-8 if s == 3 else 1.0) for n in shapes]
        g[2] = np.array([0.5], dtype=f32)
        grads.append(g)
    lrs = [2e-4 * lam("linear", s, steps, 2) for s in range(steps)]
    lrs = [1e-2 if s == 0 else lr for s, lr in enumerate(lrs)]          # nonzero first lr too
    cfg = dict(beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.01)
    hist, m, v = adamw(params, grads, lrs, cfg["beta1"], cfg["beta2"], cfg["eps"], cfg["weight_decay"])
    cfg2 = dict(beta1=0.8, beta2=0.95, eps=1e-6, weight_decay=0.1)
    hist2, _, _ = adamw(params, grads, [1e-2] * steps, cfg2["beta1"], cfg2["beta2"], cfg2["eps"], cfg2["weight_decay"])
    sgd_hist = sgd(params, grads, [0.05] * steps, 0.9, 0.01)
    sgd_plain = sgd(params, grads, [0.05] * steps, 0.0, 0.0)
    doc = {
        "generator": "reference/optim_reference.py", "numpy": np.__version__, "seed": 20240611,
        "params": [x.tolist() for x in params],
        "grads": [[x.tolist() for x in g] for g in grads],
        "lrs": lrs,
        "adamw": {"config": cfg, "params_after_step": hist,
                  "final_m": [x.tolist() for x in m], "final_v": [x.tolist() for x in v]},
        "adamw2": {"config": cfg2, "lr": 1e-2, "params_after_step": hist2},
        "sgd_momentum": {"lr": 0.05, "momentum": 0.9, "weight_decay": 0.01, "params_after_step": sgd_hist},
        "sgd_plain": {"lr": 0.05, "momentum": 0.0, "weight_decay": 0.0, "params_after_step": sgd_plain},
    }
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, "adamw.json"), "w") as f:
        json.dump(doc, f, indent=1)

    cases = []
    lr = 3e-4
    for kind in ["linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup"]:
        for steps, warmup_steps, warmup_ratio, cycles in [(20, 0, 0.0, None), (20, 5, 0.0, None), (17, 0, 0.1, None),
                                                          (1, 0, 0.0, None), (30, 3, 0.0, 2.0 if kind.startswith("cosine") else None)]:
            warmup = warmup_steps if warmup_steps > 0 else math.ceil(steps * warmup_ratio)  # TrainingArguments.get_warmup_steps
            factors = [lam(kind, s, steps, warmup, cycles, lr_init=lr) for s in range(steps + 3)]
            cases.append({"kind": kind, "lr": lr, "steps": steps, "warmup_steps": warmup_steps, "warmup_ratio": warmup_ratio,
                          "num_cycles": cycles, "warmup_resolved": warmup, "factors": factors})
    with open(os.path.join(OUT, "schedules.json"), "w") as f:
        json.dump({"generator": "reference/optim_reference.py", "source": "transformers/optimization.py lr lambdas",
                   "cases": cases}, f, indent=1)


if __name__ == "__main__":
    main()
