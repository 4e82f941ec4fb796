"""Reference updates of LLaMA-Factory's memory-saving optimizers, in numpy float64, written from the papers and the
libraries LLaMA-Factory calls (read, not copied):

- Adam-mini: zyushun/Adam-mini adam_mini/adam_mini.py Adam_mini.step (v1.1 partition by name).
- Muon: LLaMA-Factory src/llamafactory/third_party/muon/muon.py Muon.step (+ _create_muon_optimizer's grouping).
- GaLore: jiaweizzhao/GaLore galore_torch/adamw.py AdamW.step and galore_projector.py GaLoreProjector (proj_type std).
- BAdam: Ledzy/BAdam src/badam/block_optim.py BlockOptimizer (layer blocks, ascending) over torch.optim.AdamW.

A tiny named Llama-shaped parameter set gets 6 steps of random gradients with a varying lr; the parameters after each
step are written to train/src/test/resources/optim/memory_optimizers.json for MemoryOptimizersTest.
Run: python3 reference/memory_optim_reference.py
"""
import json
import math
import os

import numpy as np

HIDDEN, HEADS = 8, 2
SHAPES = [
    ("model.embed_tokens.weight", (6, 8)),
    ("model.layers.0.self_attn.q_proj.weight", (8, 8)),
    ("model.layers.0.self_attn.k_proj.weight", (4, 8)),
    ("model.layers.0.self_attn.v_proj.weight", (4, 8)),
    ("model.layers.0.self_attn.o_proj.weight", (8, 8)),
    ("model.layers.0.mlp.gate_proj.weight", (6, 8)),
    ("model.layers.0.mlp.down_proj.weight", (8, 6)),
    ("model.layers.0.input_layernorm.weight", (8,)),
    ("model.layers.1.mlp.up_proj.weight", (6, 8)),
    ("model.layers.1.post_attention_layernorm.weight", (8,)),
    ("model.norm.weight", (8,)),
]
STEPS = 6
LRS = [1e-2, 2e-2, 1.5e-2, 1e-2, 5e-3, 8e-3]
B1, B2, EPS, WD = 0.9, 0.999, 1e-8, 0.1

rng = np.random.default_rng(20261202)
P0 = [rng.standard_normal(s) * 0.5 for _, s in SHAPES]
GRADS = [[rng.standard_normal(s) * (0.1 + 0.05 * t) for _, s in SHAPES] for t in range(STEPS)]


def short(xs):
    """Floats at 9 significant digits (float32 needs 9 to round-trip)."""
    return [float(f"{x:.9g}") for x in xs]


def names():
    return [n for n, _ in SHAPES]


# ---------------------------------------------------------------- Adam-mini
def mini_block(name, shape):
    n = name.lower()
    if "bias" in n:
        return 1
    if any(k in n for k in ["k_proj", "q_proj", "wq", "wk", "query", "key"]):
        return HIDDEN * HIDDEN // HEADS
    if any(k in n for k in ["embed", "embd", "wte", "lm_head", "output", "final_layer", "v_proj", "wv", "value",
                            "o_proj", "wo", "attn.proj", "feed_forward", "linear", "mlp"]):
        return shape[1]
    return int(np.prod(shape))


def adam_mini():
    p = [x.copy() for x in P0]
    m = [np.zeros(x.size) for x in P0]
    v = [np.zeros(int(np.prod(s)) // mini_block(n, s)) for n, s in SHAPES]
    out = []
    for t in range(STEPS):
        lr, step = LRS[t], t + 1
        for i, (n, s) in enumerate(SHAPES):
            b = mini_block(n, s)
            g = GRADS[t][i].reshape(-1)
            wd = 0.0 if ("norm" in n or "ln" in n or "bias" in n) else WD
            v[i] = B2 * v[i] + (1 - B2) * (g.reshape(-1, b) ** 2).mean(axis=1)
            flat = p[i].reshape(-1) * (1 - lr * wd)
            m[i] = m[i] + (1 - B1) * (g - m[i])
            h = np.sqrt(v[i]) / math.sqrt(1 - B2 ** step) + EPS
            upd = (m[i].reshape(-1, b) * ((1 / (1 - B1 ** step)) / h)[:, None]).reshape(-1)
            p[i] = (flat - lr * upd).reshape(s)
        out.append([short(x.reshape(-1)) for x in p])
    return out


# ---------------------------------------------------------------- Muon
def newton_schulz(g, steps=5):
    a, b, c = 3.4445, -4.7750, 2.0315
    x = g.T if g.shape[0] > g.shape[1] else g
    x = x / (np.linalg.norm(x) + 1e-7)
    for _ in range(steps):
        A = x @ x.T
        Bm = b * A + c * A @ A
        x = a * x + Bm @ x
    return x.T if g.shape[0] > g.shape[1] else x


def muon():
    p = [x.copy() for x in P0]
    use = [len(s) == 2 and "embed" not in n and "lm_head" not in n for n, s in SHAPES]
    buf = [np.zeros(s) for _, s in SHAPES]
    m = [np.zeros(s) for _, s in SHAPES]
    v = [np.zeros(s) for _, s in SHAPES]
    out = []
    for t in range(STEPS):
        lr, step = LRS[t], t + 1
        for i, (n, s) in enumerate(SHAPES):
            g = GRADS[t][i]
            if use[i]:
                buf[i] = 0.95 * buf[i] + g
                u = newton_schulz(g + 0.95 * buf[i])
                adj = lr * 0.2 * math.sqrt(max(s[0], s[1]))
                p[i] = p[i] * (1 - lr * WD) - adj * u
            else:
                m[i] = m[i] + (1 - B1) * (g - m[i])
                v[i] = v[i] + (1 - B2) * (g * g - v[i])
                scale = (1 - B1 ** step) / math.sqrt(1 - B2 ** step)
                p[i] = p[i] * (1 - lr * WD) - (lr / scale) * (m[i] / (EPS + np.sqrt(v[i])))
        out.append([short(x.reshape(-1)) for x in p])
    return out


# ---------------------------------------------------------------- GaLore
GALORE_RANK, GALORE_GAP, GALORE_SCALE = 2, 3, 2.0
LINEAR = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def signed(vecs):
    """Rows of vecs, each flipped so its largest-magnitude entry is positive (peft4j's sign convention)."""
    out = vecs.copy()
    for k in range(out.shape[0]):
        j = np.argmax(np.abs(out[k]))
        if out[k, j] < 0:
            out[k] = -out[k]
    return out


def galore():
    p = [x.copy() for x in P0]
    proj = [None] * len(SHAPES)
    target = [len(s) == 2 and n.split(".")[-2] in LINEAR for n, s in SHAPES]
    m = [None] * len(SHAPES)
    v = [None] * len(SHAPES)
    out = []
    for t in range(STEPS):
        lr, step = LRS[t], t + 1
        for i, (n, s) in enumerate(SHAPES):
            g = GRADS[t][i]
            wd = 0.0 if ("norm" in n or n.endswith("bias")) else WD
            if target[i]:
                right = s[0] >= s[1]
                if t % GALORE_GAP == 0:
                    U, S, Vh = np.linalg.svd(g, full_matrices=False)
                    proj[i] = signed(Vh[:GALORE_RANK, :]) if right else signed(U[:, :GALORE_RANK].T).T
                R = g @ proj[i].T if right else proj[i].T @ g
            else:
                R = g
            if m[i] is None:
                m[i] = np.zeros_like(R)
                v[i] = np.zeros_like(R)
            m[i] = B1 * m[i] + (1 - B1) * R
            v[i] = B2 * v[i] + (1 - B2) * R * R
            step_size = lr * math.sqrt(1 - B2 ** step) / (1 - B1 ** step)
            N = m[i] / (np.sqrt(v[i]) + EPS)
            if target[i]:
                N = (N @ proj[i] if s[0] >= s[1] else proj[i] @ N) * GALORE_SCALE
            p[i] = p[i] - step_size * N
            p[i] = p[i] - lr * wd * p[i]
        out.append([short(x.reshape(-1)) for x in p])
    return out


# ---------------------------------------------------------------- APOLLO
APOLLO_RANK, APOLLO_GAP, APOLLO_SCALE = 2, 3, 4.0
# the random projections (torch draws them from its generator; any Gaussian / sqrt(r) serves): per targeted tensor,
# one per refresh (steps 0 and 3)
APOLLO_P = {}
for i, (n, s) in enumerate(SHAPES):
    if len(s) == 2 and n.split(".")[-2] in LINEAR:
        shape = (APOLLO_RANK, s[1]) if s[0] >= s[1] else (s[0], APOLLO_RANK)
        APOLLO_P[i] = [rng.standard_normal(shape) / math.sqrt(APOLLO_RANK) for _ in range(2)]


def apollo(scale_type, scale_front):
    p = [x.copy() for x in P0]
    m = [None] * len(SHAPES)
    v = [None] * len(SHAPES)
    prev = [None] * len(SHAPES)
    out = []
    for t in range(STEPS):
        lr, step = LRS[t], t + 1
        for i, (n, s) in enumerate(SHAPES):
            g = GRADS[t][i]
            wd = 0.0 if ("norm" in n or n.endswith("bias")) else WD
            target = i in APOLLO_P
            if target:
                P = APOLLO_P[i][t // APOLLO_GAP]
                right = s[0] >= s[1]
                R = g @ P.T if right else P.T @ g
            else:
                R = g
            if m[i] is None:
                m[i] = np.zeros_like(R)
                v[i] = np.zeros_like(R)
            m[i] = B1 * m[i] + (1 - B1) * R
            v[i] = B2 * v[i] + (1 - B2) * R * R
            step_size = lr * math.sqrt(1 - B2 ** step) / (1 - B1 ** step)
            N = m[i] / (np.sqrt(v[i]) + EPS)
            if target:
                norm_dim = 0 if s[0] < s[1] else 1
                if scale_type == "channel":
                    f = np.linalg.norm(N, axis=norm_dim) / (np.linalg.norm(R, axis=norm_dim) + 1e-8)
                    U = g * (f[:, None] if norm_dim == 1 else f[None, :])
                else:
                    U = g * (np.linalg.norm(N) / (np.linalg.norm(R) + 1e-8))
                if scale_front:
                    U = U * math.sqrt(APOLLO_SCALE)
                if prev[i] is not None:
                    un = np.linalg.norm(U)
                    lim = max(un / (prev[i] + 1e-8), 1.01) / 1.01
                    U = U / lim
                    prev[i] = np.float32(un / lim)
                else:
                    prev[i] = np.float32(np.linalg.norm(U))
                if not scale_front:
                    U = U * math.sqrt(APOLLO_SCALE)
                N = U
            p[i] = p[i] - step_size * N
            p[i] = p[i] - lr * wd * p[i]
        out.append([short(x.reshape(-1)) for x in p])
    return out


# ---------------------------------------------------------------- BAdam
BADAM_SWITCH = 2


def badam():
    p = [x.copy() for x in P0]
    blocks = []
    for i, (n, _) in enumerate(SHAPES):
        if ".layers." in n:
            prefix = n[: n.index(".layers.") + len(".layers.")] + n.split(".layers.")[1].split(".")[0] + "."
            if not blocks or blocks[-1][0] != prefix:
                blocks.append((prefix, []))
            blocks[-1][1].append(i)
    current, global_step = 0, 0
    state = {}
    out = []
    for t in range(STEPS):
        lr = LRS[t]
        active = blocks[current][1]
        # torch.nn.utils.clip_grad_norm_ is not part of this test; AdamW (torch) on the active block
        for i in active:
            n, s = SHAPES[i]
            g = GRADS[t][i]
            wd = 0.0 if ("norm" in n or n.endswith("bias")) else WD
            st = state.setdefault(i, {"step": 0, "m": np.zeros(s), "v": np.zeros(s)})
            st["step"] += 1
            p[i] = p[i] * (1 - lr * wd)
            st["m"] = st["m"] + (1 - B1) * (g - st["m"])
            st["v"] = B2 * st["v"] + (1 - B2) * g * g
            bc1, bc2 = 1 - B1 ** st["step"], 1 - B2 ** st["step"]
            p[i] = p[i] - (lr / bc1) * st["m"] / (np.sqrt(st["v"]) / math.sqrt(bc2) + EPS)
        global_step += 1
        if (global_step + 1) % BADAM_SWITCH == 0:
            current = (current + 1) % len(blocks)
            state = {}
        out.append([short(x.reshape(-1)) for x in p])
    return out


def main():
    fx = {
        "note": "reference/memory_optim_reference.py (numpy float64)",
        "names": names(),
        "shapes": [list(s) for _, s in SHAPES],
        "hidden": HIDDEN, "heads": HEADS,
        "lrs": LRS, "beta1": B1, "beta2": B2, "eps": EPS, "weight_decay": WD,
        "params0": [short(x.reshape(-1)) for x in P0],
        "grads": [[short(g.reshape(-1)) for g in step] for step in GRADS],
        "galore": {"rank": GALORE_RANK, "update_interval": GALORE_GAP, "scale": GALORE_SCALE},
        "badam": {"switch_interval": BADAM_SWITCH},
        "apollo": {"rank": APOLLO_RANK, "update_interval": APOLLO_GAP, "scale": APOLLO_SCALE,
                   "proj": {str(i): [short(P.reshape(-1)) for P in ps] for i, ps in APOLLO_P.items()}},
        "expected": {"adam_mini": adam_mini(), "muon": muon(), "galore": galore(), "badam": badam(),
                     "apollo_channel": apollo("channel", False), "apollo_tensor_front": apollo("tensor", True)},
    }
    path = os.path.join(os.path.dirname(__file__), "..", "train", "src", "test", "resources", "optim", "memory_optimizers.json")
    with open(path, "w") as f:
        json.dump(fx, f)
    print("wrote", os.path.normpath(path), os.path.getsize(path), "bytes")


if __name__ == "__main__":
    main()
