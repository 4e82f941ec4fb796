#!/usr/bin/python3
"""Oracle for peft4j's AdamW8bit: bitsandbytes' blockwise 8-bit AdamW (specs.md §1.6) in numpy float32, written from
the spec, not from the Java code. Update order as the spec's steps 1-7 with the CPU reference's formulas
(backends/cpu/ops.py `_optimizer_update_8bit_blockwise_cpu`): dequantize, v then m update, decay p *before* the
update, `p + (-lr/c1)·m / (sqrt(v)/c2 + eps)`, requantize with per-256-block absmax, then the CUDA kernel's sign rule
for m (kernels.cu l.1120). Every operation is one float32 rounding (numpy does not fuse). Tensors with fewer than
4096 elements keep float32 moments (bitsandbytes' min_8bit_size) and use the same formulas without quantization.

The code search is implemented as the spec states its net effect (nearest map entry, an exact tie at a float32
midpoint goes to the even index), independently of the Java binary-search transcription in quant/Blockwise8.

Gradients come from a 64-bit integer hash that the Java test reproduces, so the fixture holds only results.

    python3 reference/adamw8bit_reference.py   # writes train/src/test/resources/optim/adamw8bit.json
"""
import base64, json, math, os
import numpy as np

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "train", "src", "test", "resources", "optim")
NF4 = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "docs", "vectors", "nf4_vectors.json")
f32 = np.float32
M64 = np.uint64(0xFFFFFFFFFFFFFFFF)
BLOCK, MIN_8BIT = 256, 4096
SIZES = [4500, 1000, 4096]        # partial last block; 32-bit path; zero-grad start + NaN/Inf gradients
STEPS, BETA1, BETA2, EPS, WD = 10, 0.9, 0.999, 1e-8, 0.01


def lr_at(step):                  # 1-based
    return 1e-3 * (1 - (step - 1) / 20)


def hash_values(seed, step, n):
    """splitmix64 finalizer of seed·φ + step·c + i, mapped exactly to float32 in [-0.5, 0.5)·2^-e, e in 0..7."""
    with np.errstate(over="ignore"):
        x = (np.uint64(seed) * np.uint64(0x9E3779B97F4A7C15) + np.uint64(step) * np.uint64(0xBF58476D1CE4E5B9)
             + np.arange(n, dtype=np.uint64))
        x ^= x >> np.uint64(30); x *= np.uint64(0xBF58476D1CE4E5B9)
        x ^= x >> np.uint64(27); x *= np.uint64(0x94D049BB133111EB)
        x ^= x >> np.uint64(31)
    u = (x >> np.uint64(40)).astype(f32) * f32(2.0 ** -24) - f32(0.5)
    e = ((x >> np.uint64(8)) & np.uint64(7)).astype(np.int32)
    return (u * np.ldexp(f32(1), -e).astype(f32)).astype(f32)


def grad(t, step, n):
    g = hash_values(100 + t, step, n) * f32(2.0 ** -4)
    if t == 0:                          # block 2: one large gradient, the rest ~2^-24 of it, so some tiny negative
        g[513:768] *= f32(2.0 ** -20)   # m fall below half of code 128 and need the sign rule (code 127 → 126)
        g[512] = f32(1.0)
    if t == 2:
        g[3840:] = 0                    # an all-zero block: absmax 0, NaN codes, and the sign rule's wrap to 255
        if step <= 2: g[:] = 0          # a LoRA A matrix sees exact zero gradients until B moves off zero
        if step == 5: g[77] = np.nan
        if step == 6: g[78] = np.inf
    return g


def load_maps():
    vec = json.load(open(NF4))
    def hx(key): return np.array([int(h, 16) for h in vec[key]], dtype=np.uint32).view(f32)
    return hx("dynamic_map_signed_f32_hex"), hx("dynamic_map_unsigned_f32_hex")


def quantize_codes(cmap, s):
    """Nearest entry of the ascending 256-entry map; exact float32-midpoint ties to the even index; NaN → 0."""
    mids = ((cmap[1:] + cmap[:-1]) * f32(0.5)).astype(f32)     # fl32(fl32(c[p+1] + c[p]) · 0.5)
    idx = np.searchsorted(mids, s, side="left")                # midpoints strictly below s
    tie = (idx < 255) & (s == mids[np.minimum(idx, 254)])
    idx = np.where(tie & (idx % 2 == 1), idx + 1, idx)         # a tie between idx and idx+1 takes the even one
    return np.where(np.isnan(s), 0, idx).astype(np.int64)


def requantize(x, cmap, signed):
    n = x.size
    nb = -(-n // BLOCK)
    absmax = np.zeros(nb, dtype=f32)
    codes = np.zeros(n, dtype=np.int64)
    for b in range(nb):
        blk = x[b * BLOCK:(b + 1) * BLOCK]
        m = f32(np.max(np.abs(blk)))
        with np.errstate(divide="ignore", invalid="ignore"):
            inv = f32(1) / m
            c = quantize_codes(cmap, (blk * inv).astype(f32))
        if signed:                                             # kernels.cu: move one step toward m's sign
            flip = np.signbit(cmap[c]) != np.signbit(blk)
            c = np.where(flip, np.where(blk > 0, c + 1, c - 1), c)
        codes[b * BLOCK:(b + 1) * BLOCK] = c & 0xFF            # unsigned char wrap, as on the GPU
        absmax[b] = m
    return codes.astype(np.uint8), absmax


def run(qmap1, qmap2):
    params = [hash_values(1 + t, 0, n) for t, n in enumerate(SIZES)]
    state = []
    for n in SIZES:
        if n >= MIN_8BIT:
            nb = -(-n // BLOCK)
            state.append(dict(c1=np.zeros(n, np.uint8), c2=np.zeros(n, np.uint8), a1=np.zeros(nb, f32), a2=np.zeros(nb, f32)))
        else:
            state.append(dict(m=np.zeros(n, f32), v=np.zeros(n, f32)))
    after = {}
    for step in range(1, STEPS + 1):
        lr = lr_at(step)
        c1 = 1 - BETA1 ** step
        c2 = f32(math.sqrt(1 - BETA2 ** step))
        step_size = f32(-lr / c1)
        decay = f32(1 - lr * WD)
        for t, n in enumerate(SIZES):
            g, p, st = grad(t, step, n), params[t], state[t]
            if "c1" in st:                                      # 1. dequantize with the previous absmax
                blk = np.arange(n) // BLOCK
                m = (qmap1[st["c1"]] * st["a1"][blk]).astype(f32)
                v = (qmap2[st["c2"]] * st["a2"][blk]).astype(f32)
            else:
                m, v = st["m"], st["v"]
            ok = np.isfinite(g)
            gz = np.where(ok, g, f32(0))
            v = np.where(ok, v * f32(BETA2) + f32(1 - BETA2) * gz * gz, f32(0)).astype(f32)   # 2.
            m = np.where(ok, m * f32(BETA1) + f32(1 - BETA1) * gz, f32(0)).astype(f32)
            denom = (np.sqrt(v) / c2 + f32(EPS)).astype(f32)                                  # 4.
            pn = p * decay if WD > 0 else p                                                    # 5. (CPU order)
            pn = (pn + (step_size * m) / denom).astype(f32)
            params[t] = np.where(ok, pn, p).astype(f32)                                        # 7.
            if "c1" in st:                                                                     # 3. + 6.
                st["c1"], st["a1"] = requantize(m, qmap1, True)
                st["c2"], st["a2"] = requantize(v, qmap2, False)
            else:
                st["m"], st["v"] = m, v
        if step in (1, STEPS):
            after[step] = [p.copy() for p in params]
    return after, state


def b64(a): return base64.b64encode(np.ascontiguousarray(a).astype(a.dtype.newbyteorder("<")).tobytes()).decode()


def main():
    qmap1, qmap2 = load_maps()
    assert qmap1[127] == 0 and qmap1[255] == 1 and qmap2[0] == 0 and qmap2[255] == 1
    after, state = run(qmap1, qmap2)
    out = dict(
        comment="reference/adamw8bit_reference.py; arrays are base64 little-endian float32 / uint8",
        numpy=np.__version__, sizes=SIZES, steps=STEPS, beta1=BETA1, beta2=BETA2, eps=EPS, weight_decay=WD,
        lr="1e-3 * (1 - (step - 1) / 20)",
        params_step1=[b64(p) for p in after[1]], params_final=[b64(p) for p in after[STEPS]],
        state=[{k: b64(v) for k, v in st.items()} for st in state])
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, "adamw8bit.json"), "w") as f:
        json.dump(out, f, indent=1)
    # Self-checks of the oracle: the tie rule and the sign rule were exercised.
    c = state[0]["c1"]
    print("codes used (tensor 0, m):", len(np.unique(c)), " absmax1[0..3]:", state[0]["a1"][:3])
    print("code 126 in block 2 of tensor 0 (sign rule):", int(np.sum(c[512:768] == 126)),
          " code 255 in tensor 2's zero block (wrap):", int(np.sum(state[2]["c1"][3840:] == 255)))


if __name__ == "__main__":
    main()
