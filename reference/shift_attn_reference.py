"""Golden for ShiftedAttentionTest (model/src/test/resources/layers/shift_attn.json): LongLoRA's shifted sparse
attention (S2-Attn) written independently in numpy (float64), following LongLoRA's `llama_attn_replace.py`
`forward_noflashattn` (dvlab-research/LongLoRA) step by step on already-rotated q, k, v:

  group_size = int(q_len * 1/4); num_group = q_len // group_size
  k, v = repeat_kv(k, n_rep), repeat_kv(v, n_rep)                         (B, NH, T, HS)
  shift(x): x[:, NH//2:] = x[:, NH//2:].roll(-group_size // 2, dims=2)    along the WHOLE sequence
            x.transpose(1, 2).reshape(B * num_group, group_size, NH, HS).transpose(1, 2)
  w = q @ k^T / sqrt(HS) + causal mask of one group; softmax (float32 in LongLoRA, float64 here); o = w @ v
  o.transpose(1, 2).reshape(B, T, NH, HS); o[:, :, NH//2:] = o[:, :, NH//2:].roll(group_size // 2, dims=1)

LLaMA-Factory's copy (src/llamafactory/model/model_utils/longlora.py) rolls the output back inside each group (its
`attn_output.reshape(...)` is not assigned), which does not undo the shift: we follow LongLoRA, not that.

Gradients: d(sum(out * W))/d(q, k, v) for a fixed random W by central differences in float64 (h = 1e-6), so no
backward formula is involved. Cases: GQA whose shifted heads are whole key/value heads (NH 4, KVH 2), GQA where they
are not (NH 4, KVH 1: k, v are expanded per query head), plain MHA with B 2, and full causal attention of the same
inputs (to show S2 differs from it).
Run: python3 reference/shift_attn_reference.py   (numpy only)
"""
import json, os
import numpy as np

rng = np.random.default_rng(2309)  # LongLoRA's arXiv month (2309.12307)


def roll(x, shift, axis):
    return np.roll(x, shift, axis=axis)  # torch.roll semantics: out[i] = x[(i - shift) mod n]


def s2_attn(q, k, v, NH, KVH, shifted=True):
    """q: (B, T, NH, HS), k, v: (B, T, KVH, HS) -> (B, T, NH, HS)."""
    B, T, _, HS = q.shape
    n_rep = NH // KVH
    q = q.transpose(0, 2, 1, 3)                                           # (B, NH, T, HS)
    k = np.repeat(k.transpose(0, 2, 1, 3), n_rep, axis=1)                 # repeat_kv
    v = np.repeat(v.transpose(0, 2, 1, 3), n_rep, axis=1)
    gs = int(T * 0.25) if shifted else T
    assert T % gs == 0
    ng = T // gs

    def shift(x):
        x = x.copy()
        if shifted:
            x[:, NH // 2:] = roll(x[:, NH // 2:], -gs // 2, axis=2)
        return x.transpose(0, 2, 1, 3).reshape(B * ng, gs, NH, HS).transpose(0, 2, 1, 3)

    qs, ks, vs = shift(q), shift(k), shift(v)
    w = qs @ ks.transpose(0, 1, 3, 2) / np.sqrt(HS)
    mask = np.triu(np.full((gs, gs), -np.inf), 1)
    w = w + mask
    w = np.exp(w - w.max(axis=-1, keepdims=True))
    w = w / w.sum(axis=-1, keepdims=True)
    o = w @ vs                                                            # (B*ng, NH, gs, HS)
    o = o.transpose(0, 2, 1, 3).reshape(B, T, NH, HS)
    if shifted:
        o[:, :, NH // 2:] = roll(o[:, :, NH // 2:], gs // 2, axis=1)
    return o


def case(name, B, T, NH, KVH, HS):
    q = rng.uniform(-2, 2, (B, T, NH, HS)).astype(np.float32)
    k = rng.uniform(-2, 2, (B, T, KVH, HS)).astype(np.float32)
    v = rng.uniform(-1, 1, (B, T, KVH, HS)).astype(np.float32)
    W = rng.uniform(-1, 1, (B, T, NH, HS)).astype(np.float32)
    q64, k64, v64, W64 = (a.astype(np.float64) for a in (q, k, v, W))
    out = s2_attn(q64, k64, v64, NH, KVH)
    full = s2_attn(q64, k64, v64, NH, KVH, shifted=False)
    f = lambda a, b, c: float((s2_attn(a, b, c, NH, KVH) * W64).sum())
    grads = []
    for which in range(3):
        xs = [q64.copy(), k64.copy(), v64.copy()]
        x = xs[which]
        g = np.zeros_like(x)
        flat, gflat = x.reshape(-1), g.reshape(-1)
        for i in range(flat.size):
            old = flat[i]
            flat[i] = old + 1e-6; fp = f(*xs)
            flat[i] = old - 1e-6; fm = f(*xs)
            flat[i] = old
            gflat[i] = (fp - fm) / 2e-6
        grads.append(g)
    lst = lambda a: [float(x) for x in np.asarray(a).reshape(-1)]
    return {"name": name, "B": B, "T": T, "NH": NH, "KVH": KVH, "HS": HS,
            "q": lst(q), "k": lst(k), "v": lst(v), "dout": lst(W), "out": lst(out), "full_causal_out": lst(full),
            "dq": lst(grads[0]), "dk": lst(grads[1]), "dv": lst(grads[2])}


cases = [case("gqa_aligned", 1, 16, 4, 2, 4), case("gqa_expanded", 1, 16, 4, 1, 4), case("mha_b2", 2, 24, 2, 2, 3)]
path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "model", "src", "test", "resources", "layers", "shift_attn.json")
os.makedirs(os.path.dirname(path), exist_ok=True)
with open(path, "w") as fh:
    json.dump({"source": "reference/shift_attn_reference.py (LongLoRA forward_noflashattn, numpy float64; gradients by central differences)",
               "numpy": np.__version__, "cases": cases}, fh, separators=(",", ":"))
print("wrote", path, os.path.getsize(path), "bytes")
