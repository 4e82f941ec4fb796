"""Golden for OftRotationTest (model/src/test/resources/oft/oft_forward.json): PEFT's OFT forward of one linear layer
for a given adapter, written independently in numpy (float64):
  - oft_R.weight (n_blocks, b(b-1)/2) fills the strict upper triangle (np.triu_indices(b, 1), row-major) of U; Q = U - U^T
  - Cayley-Neumann with t terms (PEFT OFTConfig defaults use_cayley_neumann=True, num_cayley_neumann_terms=5):
    R = I + 2Q + 2Q^2 + ... + 2Q^(t-2) + Q^(t-1)   (PEFT tuners/oft/layer.py OFTRotationModule._cayley_batch)
    also the exact Cayley (I - Q)^-1 (I + Q) = (I + Q)(I - Q)^-1 for comparison: the series is its truncation
  - x_rot[..., block q, c] = sum_k x[..., q, k] R_q[k, c]   (einsum "...rk,rkc->...rc" in OFTRotationModule.forward)
  - y = x_rot W^T + bias                                      (the base nn.Linear on the rotated input)
  - merged weight W' = (blockdiag(R) W^T)^T                   (OFT Linear.merge)
Run: python3 reference/oft_reference.py   (numpy only)
"""
import json, os
import numpy as np

rng = np.random.default_rng(20230607)  # OFT's arXiv month (2306.07280)


def rotation(theta, b, t):
    u = np.zeros((b, b))
    u[np.triu_indices(b, 1)] = theta
    q = u - u.T
    r = np.eye(b)
    p = np.eye(b)
    for k in range(1, t):
        p = p @ q
        r = r + (1.0 if (k == t - 1 and t >= 3) else 2.0) * p
    exact = np.linalg.solve(np.eye(b) - q, np.eye(b) + q)
    return r, exact


def case(M, K, b, N, t, scale):
    nb = K // b
    n = b * (b - 1) // 2
    theta = (rng.standard_normal((nb, n)) * scale).astype(np.float32)
    w = (rng.standard_normal((M, K)) / np.sqrt(K)).astype(np.float32)
    bias = (rng.standard_normal(M) * 0.1).astype(np.float32)
    x = rng.standard_normal((N, K)).astype(np.float32)
    rs, ex = zip(*[rotation(theta[i].astype(np.float64), b, t) for i in range(nb)])
    xr = np.einsum("nrk,rkc->nrc", x.astype(np.float64).reshape(N, nb, b), np.stack(rs)).reshape(N, K)
    y = xr @ w.astype(np.float64).T + bias
    bd = np.zeros((K, K))
    for i in range(nb):
        bd[i * b:(i + 1) * b, i * b:(i + 1) * b] = rs[i]
    merged = (bd @ w.astype(np.float64).T).T
    return {"M": M, "K": K, "block_size": b, "N": N, "terms": t,
            "theta": [float(v) for v in theta.ravel()], "w": [float(v) for v in w.ravel()],
            "bias": [float(v) for v in bias.ravel()], "x": [float(v) for v in x.ravel()],
            "rotations": [round(float(v), 12) for v in np.stack(rs).ravel()],
            "cayley_exact_max_diff": float(max(np.abs(r - e).max() for r, e in zip(rs, ex))),
            "y": [round(float(v), 12) for v in y.ravel()],
            "merged": [round(float(v), 12) for v in merged.ravel()]}


cases = [case(6, 8, 4, 3, 5, 0.1), case(5, 12, 3, 2, 5, 0.2), case(4, 8, 8, 2, 3, 0.1), case(3, 6, 2, 2, 2, 0.3)]
out = os.path.join(os.path.dirname(__file__), "..", "model", "src", "test", "resources", "oft", "oft_forward.json")
with open(out, "w") as f:
    json.dump({"cases": cases}, f, indent=None)
print("wrote", out, [c["cayley_exact_max_diff"] for c in cases])
