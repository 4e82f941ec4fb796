"""Independent numpy implementation of the preference losses of LLaMA-Factory's stage dpo, written from the formulas:

- sigmoid / hinge / ipo: TRL DPOTrainer.dpo_loss (logits = (c - r) - (c0 - r0); sigmoid with label smoothing,
  relu(1 - beta*logits), (logits - 1/(2*beta))**2); rewards beta*(c - c0), beta*(r - r0)
- orpo: LLaMA-Factory CustomDPOTrainer.odds_ratio_loss; simpo: CustomDPOTrainer.simpo_loss; rewards beta*c, beta*r
- ipo, orpo, simpo use log-probabilities averaged over the labelled tokens (CustomDPOTrainer.concatenated_forward)
- pref_ftx adds ftx * (-c_sum / n_c) (CustomDPOTrainer.get_batch_loss_metrics)
- kto (stage kto): TRL KTOTrainer.kto_loss with LLaMA-Factory's CustomKTOTrainer.get_batch_loss_metrics:
  KL = max(0, mean(policy_KL - reference_KL)) (no gradient); desirable w_d*(1 - sigmoid(beta*((p - p0) - KL))),
  undesirable w_u*(1 - sigmoid(beta*(KL - (p - p0)))); micro-batch loss = mean, plus with ftx > 1e-6
  ftx * mean over desirable of (-p/len), divided by the number of desirable examples and times N (as LLaMA-Factory
  writes it); rewards beta*(p - p0)

Writes train/src/test/resources/pref/kto_losses.json (micro-batch loss, per-example losses and rewards, and
d(micro-batch loss)/d(policy sums) by central differences) and train/src/test/resources/pref/preference_losses.json: fixed inputs and, per case, per-pair losses, rewards and
the gradients d(mean loss)/d(policy sums) by central differences in float64 (h = 1e-6) of this implementation.
Run: python3 reference/preference_losses.py
"""
import json
import sys
import numpy as np

def logsigmoid(x):
    return -np.logaddexp(0.0, -x)

def losses(kind, beta, ftx, eps, gamma, pc, pr, nc, nr, rc, rr):
    avg = kind in ("ipo", "orpo", "simpo")
    c, r = (pc / nc, pr / nr) if avg else (pc, pr)
    if kind in ("sigmoid", "hinge", "ipo"):
        c0, r0 = (rc / nc, rr / nr) if avg else (rc, rr)
        z = (c - r) - (c0 - r0)
        if kind == "sigmoid":
            l = -(1 - eps) * logsigmoid(beta * z) - eps * logsigmoid(-beta * z)
        elif kind == "hinge":
            l = np.maximum(0.0, 1 - beta * z)
        else:
            l = (z - 1 / (2 * beta)) ** 2
        rw_c, rw_r = beta * (c - c0), beta * (r - r0)
    elif kind == "orpo":
        log_odds = (c - r) - (np.log1p(-np.exp(c)) - np.log1p(-np.exp(r)))
        l = -c + beta * -logsigmoid(log_odds)
        rw_c, rw_r = beta * c, beta * r
    else:
        l = -logsigmoid(beta * ((c - r) - gamma / beta))
        rw_c, rw_r = beta * c, beta * r
    if ftx > 1e-6:
        l = l + ftx * -(pc / nc)
    return l, rw_c, rw_r, c, r

def kto(beta, wd, wu, ftx, p, p0, lengths, desirable, pkl, p0kl):
    kl = max(0.0, float(np.mean(pkl - p0kl)))
    ratio = p - p0
    sig = lambda x: 1.0 / (1.0 + np.exp(-x))
    l = np.where(desirable, wd * (1 - sig(beta * (ratio - kl))), wu * (1 - sig(beta * (kl - ratio))))
    loss = l.mean()
    nc = int(desirable.sum())
    if ftx > 1e-6 and nc > 0:
        loss = loss + ftx * np.mean(-p[desirable] / lengths[desirable]) / nc * len(p)
    return loss, l, beta * ratio, kl

def kto_main():
    rng = np.random.default_rng(20261202)
    N = 7
    lengths = rng.integers(2, 30, N).astype(np.float64)
    p = lengths * rng.uniform(-3.0, -0.05, N)
    p0 = p + rng.normal(0, 3.0, N)
    desirable = np.array([True, False, True, True, False, False, True])
    pkl = rng.uniform(-80, -5, N)
    cases = []
    for beta, wd, wu, ftx, shift in [(0.1, 1.0, 1.0, 0.0, 2.0), (0.5, 1.0, 1.33, 0.0, 2.0), (0.1, 0.7, 1.0, 0.5, 2.0),
                                     (2.0, 1.0, 1.0, 0.0, 2.0), (0.1, 1.0, 1.0, 0.0, -2.0), (0.3, 2.0, 0.5, 1.0, -2.0)]:
        p0kl = pkl - shift          # shift > 0: KL estimate 2 > 0; shift < 0: the mean is negative and KL clamps to 0
        loss, l, rw, kl = kto(beta, wd, wu, ftx, p, p0, lengths, desirable, pkl, p0kl)
        h = 1e-6
        dp = np.zeros(N)
        for i in range(N):
            e = np.zeros(N); e[i] = h
            dp[i] = (kto(beta, wd, wu, ftx, p + e, p0, lengths, desirable, pkl, p0kl)[0]
                     - kto(beta, wd, wu, ftx, p - e, p0, lengths, desirable, pkl, p0kl)[0]) / (2 * h)
        cases.append(dict(beta=beta, desirable_weight=wd, undesirable_weight=wu, ftx=ftx, p0kl=p0kl.tolist(),
                          kl=kl, loss=float(loss), losses=l.tolist(), rewards=rw.tolist(), dp=dp.tolist()))
    out = dict(generator="reference/preference_losses.py", numpy=np.__version__, python=sys.version.split()[0],
               p=p.tolist(), p0=p0.tolist(), lengths=lengths.astype(int).tolist(), desirable=desirable.tolist(),
               pkl=pkl.tolist(), cases=cases)
    path = "train/src/test/resources/pref/kto_losses.json"
    with open(path, "w") as f:
        json.dump(out, f, indent=1)
    print("wrote", path, len(cases), "cases")

def main():
    rng = np.random.default_rng(20240614)
    P = 6
    nc = rng.integers(3, 40, P).astype(np.float64)
    nr = rng.integers(3, 40, P).astype(np.float64)
    # per-token log-probabilities between -3 and -0.05, so averages are strictly negative (ORPO needs p < 1)
    pc = nc * rng.uniform(-3.0, -0.05, P)
    pr = nr * rng.uniform(-3.0, -0.05, P)
    rc = pc + rng.normal(0, 2.0, P)
    rr = pr + rng.normal(0, 2.0, P)
    cases = []
    for kind, beta, ftx, eps, gamma in [
        ("sigmoid", 0.1, 0.0, 0.0, 0.5), ("sigmoid", 0.5, 0.0, 0.2, 0.5), ("sigmoid", 0.1, 1.0, 0.0, 0.5),
        ("hinge", 0.1, 0.0, 0.0, 0.5), ("hinge", 2.0, 0.0, 0.0, 0.5),
        ("ipo", 0.1, 0.0, 0.0, 0.5), ("ipo", 1.0, 0.5, 0.0, 0.5),
        ("orpo", 0.1, 0.0, 0.0, 0.5), ("orpo", 0.5, 0.0, 0.0, 0.5),
        ("simpo", 2.0, 0.0, 0.0, 0.5), ("simpo", 0.5, 0.3, 0.0, 1.0)]:
        l, rw_c, rw_r, c, r = losses(kind, beta, ftx, eps, gamma, pc, pr, nc, nr, rc, rr)
        h = 1e-6
        def mean_loss(a, b):
            return losses(kind, beta, ftx, eps, gamma, a, b, nc, nr, rc, rr)[0].mean()
        dpc, dpr = np.zeros(P), np.zeros(P)
        for i in range(P):
            e = np.zeros(P); e[i] = h
            dpc[i] = (mean_loss(pc + e, pr) - mean_loss(pc - e, pr)) / (2 * h)
            dpr[i] = (mean_loss(pc, pr + e) - mean_loss(pc, pr - e)) / (2 * h)
        cases.append(dict(kind=kind, beta=beta, ftx=ftx, label_smoothing=eps, simpo_gamma=gamma,
                          losses=l.tolist(), rewards_chosen=rw_c.tolist(), rewards_rejected=rw_r.tolist(),
                          logps_chosen=c.tolist(), logps_rejected=r.tolist(), dpc=dpc.tolist(), dpr=dpr.tolist()))
    out = dict(generator="reference/preference_losses.py", numpy=np.__version__, python=sys.version.split()[0],
               pc=pc.tolist(), pr=pr.tolist(), nc=nc.astype(int).tolist(), nr=nr.astype(int).tolist(),
               rc=rc.tolist(), rr=rr.tolist(), cases=cases)
    path = "train/src/test/resources/pref/preference_losses.json"
    with open(path, "w") as f:
        json.dump(out, f, indent=1)
    print("wrote", path, len(cases), "cases")

if __name__ == "__main__":
    main()
    kto_main()
