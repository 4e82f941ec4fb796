#!/usr/bin/env python3
"""PyTorch eager LoRA (or full) training speed of a Llama-family model with random weights: the anchor that
peft4j's TrainBench is compared with. Modules are written out by hand (no transformers): RMSNorm, RoPE (rotate_half),
GQA attention as eager softmax(q·kᵀ/√d + causal mask)·v, SwiGLU MLP, tied lm_head, cross-entropy. LoRA r=16,
alpha=32 on all seven linear layers of every block, base frozen (requires_grad=False), AdamW on the adapters.

Threads as docs/oracles.md says: OpenBLAS's own pool through openblas_set_num_threads (ctypes), ATen at 1
(torch.set_num_threads does not reach OpenBLAS and two pools oversubscribe two cores). Unset OPENBLAS_CORETYPE and
OPENBLAS_L2_SIZE before starting python (OpenBLAS reads them when it loads). These VMs take freed memory back and
charge ~3 s/GiB to touch it again, so also run with glibc told to keep it, and report the better of the two:
  MALLOC_TRIM_THRESHOLD_=17179869184 MALLOC_TOP_PAD_=1073741824 MALLOC_MMAP_THRESHOLD_=33554432 python3 ...
(32 MiB is glibc's largest mmap threshold; bigger tensors, e.g. the logits, are still mmapped and unmapped.)

  python3 bench/python/torch_lora_bench.py --model smollm2-135m --seq 512 --batch 1 --blas-threads 2 --aten-threads 1
Prints one line: tokens/s from the median step (as peft4j's bench train), the mean step split, peak RSS (ru_maxrss).
"""
import argparse, ctypes, ctypes.util, glob, math, os, resource, sys, time

import torch
import torch.nn as nn
import torch.nn.functional as F

CONFIGS = {  # hidden, intermediate, layers, heads, kv heads, head dim, vocab, rms eps, rope theta, qkv bias
    "smollm2-135m": dict(C=576, F=1536, L=30, NH=9, KVH=3, HS=64, V=49152, eps=1e-5, theta=100000.0, bias=False),
    "qwen2.5-0.5b": dict(C=896, F=4864, L=24, NH=14, KVH=2, HS=64, V=151936, eps=1e-6, theta=1000000.0, bias=True),
}


def openblas_set_threads(n):
    """Sets the thread count of the OpenBLAS that torch loaded; returns the library path, or None if not found."""
    paths = []
    with open("/proc/self/maps") as f:
        for line in f:
            p = line.split()[-1]
            if "openblas" in p and p.endswith(tuple(".so" + s for s in ("", ".0"))) or "libopenblas" in p and ".so" in p:
                paths.append(p)
    for p in dict.fromkeys(paths):
        lib = ctypes.CDLL(p)
        if hasattr(lib, "openblas_set_num_threads"):
            lib.openblas_set_num_threads(n)
            return p
    return None


class LoraLinear(nn.Module):
    """y = x·W0ᵀ + b + s·(x·Aᵀ)·Bᵀ, PEFT's Linear with dropout 0; W0 and b frozen when lora."""
    def __init__(self, inf, outf, bias, r, alpha, lora):
        super().__init__()
        self.base = nn.Linear(inf, outf, bias=bias)
        self.base.weight.data.normal_(0, 0.02)
        self.lora = lora
        if lora:
            self.base.requires_grad_(False)
            self.A = nn.Parameter(torch.empty(r, inf))
            nn.init.kaiming_uniform_(self.A, a=math.sqrt(5))
            self.B = nn.Parameter(torch.zeros(outf, r))
            self.s = alpha / r

    def forward(self, x):
        y = self.base(x)
        if self.lora:
            y = y + (x @ self.A.t()) @ self.B.t() * self.s
        return y


class RMSNorm(nn.Module):
    def __init__(self, C, eps):
        super().__init__()
        self.w = nn.Parameter(torch.ones(C))
        self.eps = eps

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.w


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


class Block(nn.Module):
    def __init__(self, c, r, alpha, lora):
        super().__init__()
        C, NH, KVH, HS, Fi = c["C"], c["NH"], c["KVH"], c["HS"], c["F"]
        self.NH, self.KVH, self.HS = NH, KVH, HS
        lin = lambda i, o, b=False: LoraLinear(i, o, b, r, alpha, lora)
        self.ln1, self.ln2 = RMSNorm(C, c["eps"]), RMSNorm(C, c["eps"])
        self.q, self.k, self.v = lin(C, NH * HS, c["bias"]), lin(C, KVH * HS, c["bias"]), lin(C, KVH * HS, c["bias"])
        self.o = lin(NH * HS, C)
        self.gate, self.up, self.down = lin(C, Fi), lin(C, Fi), lin(Fi, C)
        if lora:
            for n in (self.ln1, self.ln2):
                n.requires_grad_(False)

    def forward(self, x, cos, sin, mask):
        B, T, _ = x.shape
        h = self.ln1(x)
        q = self.q(h).view(B, T, self.NH, self.HS).transpose(1, 2)
        k = self.k(h).view(B, T, self.KVH, self.HS).transpose(1, 2)
        v = self.v(h).view(B, T, self.KVH, self.HS).transpose(1, 2)
        q, k = q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin
        g = self.NH // self.KVH
        k, v = k.repeat_interleave(g, dim=1), v.repeat_interleave(g, dim=1)   # HF repeat_kv
        att = (q @ k.transpose(-1, -2)) / math.sqrt(self.HS) + mask
        y = torch.softmax(att, dim=-1) @ v
        x = x + self.o(y.transpose(1, 2).reshape(B, T, self.NH * self.HS))
        h = self.ln2(x)
        return x + self.down(F.silu(self.gate(h)) * self.up(h))


class Llama(nn.Module):
    def __init__(self, c, r, alpha, lora, T):
        super().__init__()
        self.embed = nn.Embedding(c["V"], c["C"])
        self.embed.weight.data.normal_(0, 0.02)
        self.blocks = nn.ModuleList(Block(c, r, alpha, lora) for _ in range(c["L"]))
        self.norm = RMSNorm(c["C"], c["eps"])
        if lora:
            self.embed.requires_grad_(False)
            self.norm.requires_grad_(False)
        inv = 1.0 / (c["theta"] ** (torch.arange(0, c["HS"], 2, dtype=torch.float64) / c["HS"]))
        ang = torch.outer(torch.arange(T, dtype=torch.float64), inv)
        ang = torch.cat((ang, ang), dim=-1)
        self.register_buffer("cos", ang.cos().float())
        self.register_buffer("sin", ang.sin().float())
        self.register_buffer("mask", torch.full((T, T), float("-inf")).triu(1))

    def forward(self, tokens, targets):
        x = self.embed(tokens)
        for b in self.blocks:
            x = b(x, self.cos, self.sin, self.mask)
        logits = self.norm(x) @ self.embed.weight.t()        # tied lm_head
        return F.cross_entropy(logits.view(-1, logits.shape[-1]), targets.view(-1), ignore_index=-100)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2-135m", choices=sorted(CONFIGS))
    ap.add_argument("--seq", type=int, default=512)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--method", default="lora", choices=["lora", "full"])
    ap.add_argument("--blas-threads", type=int, default=2)
    ap.add_argument("--aten-threads", type=int, default=1)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--steps", type=int, default=5)
    a = ap.parse_args()
    for var in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):
        if var in os.environ:
            print(f"warning: {var} is set; OpenBLAS read it at load time, unset it before starting python", file=sys.stderr)
    torch.set_num_threads(a.aten_threads)
    blas = openblas_set_threads(a.blas_threads)
    torch.manual_seed(0)
    c = CONFIGS[a.model]
    model = Llama(c, 16, 32, a.method == "lora", a.seq)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.0)
    g = torch.Generator().manual_seed(7)
    fwd = bwd = upd = 0.0
    steps = []
    for step in range(a.warmup + a.steps):
        tokens = torch.randint(0, c["V"], (a.batch, a.seq), generator=g)
        targets = torch.cat((tokens[:, 1:], torch.full((a.batch, 1), -100)), dim=1)
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=False)
        loss = model(tokens, targets)
        t1 = time.perf_counter()
        loss.backward()
        t2 = time.perf_counter()
        opt.step()
        t3 = time.perf_counter()
        if step >= a.warmup:
            fwd += t1 - t0; bwd += t2 - t1; upd += t3 - t2
            steps.append(t3 - t0)
    n = a.steps
    step_s = (fwd + bwd + upd) / n
    srt = sorted(steps)
    median_s = srt[n // 2] if n % 2 else (srt[n // 2 - 1] + srt[n // 2]) / 2
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    trim = os.environ.get("MALLOC_TRIM_THRESHOLD_", "-"), os.environ.get("MALLOC_TOP_PAD_", "-")
    print(f"torch {torch.__version__} {a.model:13s} {a.method:5s} seq {a.seq} batch {a.batch} blas {a.blas_threads} "
          f"aten {a.aten_threads} | {a.batch * a.seq / median_s:7.1f} tok/s | median step {median_s * 1e3:5.0f} ms | mean "
          f"{step_s * 1e3:5.0f} ms = fwd "
          f"{fwd / n * 1e3:6.0f} + bwd {bwd / n * 1e3:6.0f} + opt {upd / n * 1e3:5.0f} | peak RSS {rss / 1e9:5.2f} GB | "
          f"loss {loss.item():.4f} | malloc trim/top_pad {trim[0]}/{trim[1]} | trainable {sum(p.numel() for p in params):,} | {blas}")


if __name__ == "__main__":
    main()
