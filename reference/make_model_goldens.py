#!/usr/bin/env python3
"""Goldens for peft4j's model module (LlamaModelGoldenTest), from the independent numpy reference
../shared/reference/llama_reference.py (float64 accumulation).

Writes under model/src/test/resources/models/:
  * tiny random checkpoints (config.json + model.safetensors written here with json+struct per the safetensors
    spec) covering what the shared real models do not: the Qwen2 layout (q/k/v biases, GQA, head_dim != hidden/heads),
    Llama-3 rope scaling, linear rope scaling, Mistral, F16/BF16 storage, an untied lm_head;
  * expected.json per folder: {"ids": [[...], ...], "logits": [[T*V floats], ...]} for each token sequence;
  * real-model/<name>.json: logits of the shared real models on token sequences other than their goldens.

The reference ignores rope_scaling, so this script scales its inverse frequencies itself, following transformers'
modeling_rope_utils.py (_compute_llama3_parameters; linear = inv_freq / factor).

Run from the repository root:  python3 reference/make_model_goldens.py   (numpy only; about 10 s)
"""
import json
import math
import os
import struct
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(os.path.dirname(ROOT), "shared")
sys.path.insert(0, os.path.join(SHARED, "reference"))
import llama_reference as ref  # noqa: E402

OUT = os.path.join(ROOT, "model", "src", "test", "resources", "models")


def bf16_bits(a: np.ndarray) -> np.ndarray:
    """float32 -> bfloat16 bits, round to nearest even (as torch's .to(torch.bfloat16))."""
    u = a.astype("<f4").view("<u4").astype(np.uint64)
    rounded = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
    return rounded.astype("<u2")


def write_safetensors(path, tensors, dtype):
    """tensors: name -> float32 array, stored as dtype (F32/F16/BF16); names sorted, header padded to 8."""
    blobs, header, off = [], {"__metadata__": {"format": "pt"}}, 0
    for name in sorted(tensors):
        a = np.ascontiguousarray(tensors[name], dtype=np.float32)
        raw = {"F32": lambda x: x.astype("<f4"), "F16": lambda x: x.astype("<f2"), "BF16": bf16_bits}[dtype](a).tobytes()
        header[name] = {"dtype": dtype, "shape": list(a.shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    hb = json.dumps(header, separators=(",", ":")).encode()
    hb += b" " * ((8 - len(hb) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hb)))
        f.write(hb)
        for b in blobs:
            f.write(b)


def stored(a, dtype):
    """What a reader gets back after storing a as dtype."""
    a = a.astype(np.float32)
    if dtype == "F16":
        return a.astype(np.float16).astype(np.float32)
    if dtype == "BF16":
        return (bf16_bits(a).astype(np.uint32) << 16).view(np.float32)
    return a


def scaled_inv_freq(cfg):
    hd, theta = cfg["head_dim"], cfg["rope_theta"]
    inv = 1.0 / (theta ** (np.arange(0, hd, 2, dtype=np.float64) / hd))
    rs = cfg.get("rope_scaling")
    if not rs:
        return inv
    kind = rs.get("rope_type", rs.get("type"))
    if kind == "linear":
        return inv / rs["factor"]
    if kind == "llama3":
        f, lo, hi, old = rs["factor"], rs["low_freq_factor"], rs["high_freq_factor"], rs["original_max_position_embeddings"]
        low_wl, high_wl = old / lo, old / hi
        wl = 2 * math.pi / inv
        out = np.where(wl > low_wl, inv / f, inv)
        smooth = (old / wl - lo) / (hi - lo)
        smoothed = (1 - smooth) * out / f + smooth * out
        medium = ~(wl < high_wl) & ~(wl > low_wl)
        return np.where(medium, smoothed, out)
    raise ValueError(kind)


def random_model(name, cfg, dtype, seed, seqs, store_head_only=False):
    rng = np.random.default_rng(seed)
    D, F, V, L = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"], cfg["num_hidden_layers"]
    H, KV, hd = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["head_dim"]
    qkv_bias = cfg["model_type"] == "qwen2"

    def mat(*shape, std=None):
        return (rng.standard_normal(shape) * (std if std else 1 / math.sqrt(shape[-1]))).astype(np.float32)

    t = {"model.embed_tokens.weight": mat(V, D, std=1.0), "model.norm.weight": 1 + 0.1 * mat(D, std=1.0)}
    for l in range(L):
        p = f"model.layers.{l}."
        t[p + "input_layernorm.weight"] = 1 + 0.1 * mat(D, std=1.0)
        t[p + "post_attention_layernorm.weight"] = 1 + 0.1 * mat(D, std=1.0)
        t[p + "self_attn.q_proj.weight"] = mat(H * hd, D)
        t[p + "self_attn.k_proj.weight"] = mat(KV * hd, D)
        t[p + "self_attn.v_proj.weight"] = mat(KV * hd, D)
        t[p + "self_attn.o_proj.weight"] = mat(D, H * hd)
        if qkv_bias:
            t[p + "self_attn.q_proj.bias"] = mat(H * hd, std=0.5)
            t[p + "self_attn.k_proj.bias"] = mat(KV * hd, std=0.5)
            t[p + "self_attn.v_proj.bias"] = mat(KV * hd, std=0.5)
        t[p + "mlp.gate_proj.weight"] = mat(F, D)
        t[p + "mlp.up_proj.weight"] = mat(F, D)
        t[p + "mlp.down_proj.weight"] = mat(D, F)
    if not cfg["tie_word_embeddings"]:
        t["lm_head.weight"] = mat(V, D)
    elif store_head_only:
        t["lm_head.weight"] = t.pop("model.embed_tokens.weight")
    t = {k: stored(v, dtype) for k, v in t.items()}

    d = os.path.join(OUT, name)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    write_safetensors(os.path.join(d, "model.safetensors"), t, dtype)
    m = ref.load_hf(d)
    m.inv_freq = scaled_inv_freq(cfg)
    expected = {"ids": [], "logits": []}
    for ids in seqs(rng, V):
        expected["ids"].append([int(i) for i in ids])
        expected["logits"].append([round(float(x), 6) for x in m.forward(ids).reshape(-1)])
    with open(os.path.join(d, "expected.json"), "w") as f:
        json.dump({"source": "reference/make_model_goldens.py via shared/reference/llama_reference.py, numpy "
                   + np.__version__, "dtype": dtype, **expected}, f, separators=(",", ":"))
    print(f"{name}: {len(expected['ids'])} sequences, lengths {[len(s) for s in expected['ids']]}")


def base(model_type, **kw):
    cfg = {"architectures": [{"llama": "LlamaForCausalLM", "qwen2": "Qwen2ForCausalLM",
                              "mistral": "MistralForCausalLM"}[model_type]],
           "model_type": model_type, "hidden_act": "silu", "rms_norm_eps": 1e-6, "rope_theta": 10000.0,
           "rope_scaling": None, "max_position_embeddings": 256, "bos_token_id": 1, "eos_token_id": 2,
           "attention_bias": False, "mlp_bias": False, "torch_dtype": "float32"}
    cfg.update(kw)
    return cfg


def main():
    two = lambda lens: (lambda rng, V: [rng.integers(0, V, n) for n in lens])
    # Qwen2 layout: q/k/v biases, GQA 4:2, head_dim 16 != 48/4, theta 1e6, tied.
    random_model("qwen2-tiny", base("qwen2", hidden_size=48, intermediate_size=80, num_hidden_layers=2,
                                    num_attention_heads=4, num_key_value_heads=2, head_dim=16, vocab_size=96,
                                    rope_theta=1000000.0, tie_word_embeddings=True, use_sliding_window=False,
                                    sliding_window=4096), "F32", 1, two([13, 5]))
    # Llama-3 rope scaling with original context 32, so all three bands (divide, blend, keep) are used; MQA; untied; BF16.
    random_model("llama3-rope-tiny", base("llama", hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                                          num_attention_heads=4, num_key_value_heads=1, head_dim=16, vocab_size=128,
                                          rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                                        "high_freq_factor": 4.0,
                                                        "original_max_position_embeddings": 32},
                                          tie_word_embeddings=False, torch_dtype="bfloat16"), "BF16", 2, two([40]))
    # Linear rope scaling (legacy "type" key); F16; tied matrix stored only as lm_head.weight (tinystories quirk).
    random_model("linear-rope-tiny", base("llama", hidden_size=32, intermediate_size=64, num_hidden_layers=3,
                                          num_attention_heads=4, num_key_value_heads=4, head_dim=8, vocab_size=80,
                                          rope_scaling={"type": "linear", "factor": 4.0}, tie_word_embeddings=True,
                                          torch_dtype="float16"), "F16", 3, two([24]), store_head_only=True)
    # Mistral naming and config (no head_dim key, sliding window larger than the test sequence).
    cfg = base("mistral", hidden_size=32, intermediate_size=48, num_hidden_layers=1, num_attention_heads=2,
               num_key_value_heads=1, vocab_size=64, sliding_window=64, tie_word_embeddings=False)
    cfg["head_dim"] = 16
    random_model("mistral-tiny", cfg, "F32", 4, two([9]))
    for m in ("mistral-tiny",):  # HF Mistral configs usually carry head_dim implicitly; drop it after computing
        p = os.path.join(OUT, m, "config.json")
        c = json.load(open(p))
        del c["head_dim"]
        json.dump(c, open(p, "w"), indent=2)

    # Real models on sequences other than their goldens.
    os.makedirs(os.path.join(OUT, "real"), exist_ok=True)
    for name, seqs in (("stories260K-hf", [[1, 403, 407, 261, 378, 432, 300, 17, 500, 2, 44], [1, 5]]),
                       ("tinystories-656k", [[1, 2000, 37, 1024, 5, 999, 0, 1500, 80, 147]])):
        d = os.path.join(SHARED, "models", name)
        m = ref.load_hf(d)
        out = {"model": name, "ids": seqs, "logits": [[round(float(x), 6) for x in m.forward(s).reshape(-1)] for s in seqs]}
        with open(os.path.join(OUT, "real", name + ".json"), "w") as f:
            json.dump(out, f, separators=(",", ":"))
        print(f"real {name}: {len(seqs)} sequences")


if __name__ == "__main__":
    main()
