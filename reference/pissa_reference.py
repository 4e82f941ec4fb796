"""Golden for PissaTest (model/src/test/resources/lora/pissa_svd.json): numpy's SVD of small float32 matrices with a
planted spectrum, and PiSSA's residual W - U_r S_r V_r^T at rank r (PEFT pissa_init: s*B*A = U_r S_r V_r^T for any
scaling s, so the residual does not depend on s, nor on the signs of the singular vectors).
Run: python3 reference/pissa_reference.py   (numpy only)
"""
import json, os
import numpy as np

SEED = 20240402  # PiSSA's arXiv month
rng = np.random.default_rng(SEED)


def orthonormal(n, k):
    q, _ = np.linalg.qr(rng.standard_normal((n, k)))
    return q


def case(M, K, r):
    n = min(M, K)
    # a clear gap after sigma_r: the top r decay by 0.6, the rest start at 0.5 and decay by 0.8
    sigma = np.array([8 * 0.6 ** i for i in range(r)] + [0.5 * 0.8 ** i for i in range(n - r)])
    w = (orthonormal(M, n) * sigma) @ orthonormal(K, n).T
    w = w.astype(np.float32)
    wd = w.astype(np.float64)
    u, s, vt = np.linalg.svd(wd, full_matrices=False)
    residual = wd - (u[:, :r] * s[:r]) @ vt[:r]
    return {"M": M, "K": K, "r": r,
            "w": [float(x) for x in w.ravel()],
            "singular_values": [float(x) for x in s],
            "residual": [round(float(x), 9) for x in residual.ravel()]}


out = os.path.join(os.path.dirname(__file__), "..", "model", "src", "test", "resources", "lora")
os.makedirs(out, exist_ok=True)
doc = {"seed": SEED, "numpy": np.__version__, "cases": [case(24, 16, 4), case(12, 20, 3)]}
with open(os.path.join(out, "pissa_svd.json"), "w") as f:
    json.dump(doc, f)
    f.write("\n")
