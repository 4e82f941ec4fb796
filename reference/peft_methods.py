#!/usr/bin/env python3
"""Goldens for peft4j's non-LoRA PEFT methods (Ia3Test, PromptTuningTest): PEFT's semantics re-implemented in numpy from PEFT's
source, on the bundled model (models/tinystories-656k), independent of peft4j's Java code.

IA3 (PEFT src/peft/tuners/ia3/layer.py, Linear.forward): a vector ia3_l per targeted linear layer; on a
feed-forward module (feedforward_modules) the input is scaled before the base layer, `base(x * ia3_l)`, ia3_l of shape
(1, in); otherwise the output is scaled after it, `base(x) * ia3_l`, bias included, ia3_l of shape (out, 1). Saved by
get_peft_model_state_dict as `base_model.model.<module path>.ia3_l` (the adapter name removed).

PROMPT_TUNING (PEFT src/peft/peft_model.py, PeftModelForCausalLM.forward / prepare_inputs_for_generation): the
num_virtual_tokens embeddings `prompt_embeddings` (n, token_dim) are concatenated before the input embeddings; the
positions run over the concatenation.

Writes under model/src/test/resources/adapters/<name>/: adapter_config.json + adapter_model.safetensors (random
vectors around 1, as PEFT would load them) and expected.safetensors: `ids` (int64, T), `logits` (T, V) float32 with
the adapter and `base_logits` without it (the same forward: the Java side's error on the base is the yardstick).

Run from the repository root:  python3 reference/peft_methods.py   (numpy only; a few seconds)
"""
import json
import math
import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(ROOT), "shared", "reference"))
import llama_reference as ref  # noqa: E402  (safetensors I/O and the HF weight loader only)

MODEL = os.path.join(ROOT, "models", "tinystories-656k")
OUT = os.path.join(ROOT, "model", "src", "test", "resources", "adapters")
IDS = [1, 2000, 37, 1024, 5, 999, 0, 1500]
PARENT = {"q_proj": "self_attn", "k_proj": "self_attn", "v_proj": "self_attn", "o_proj": "self_attn",
          "gate_proj": "mlp", "up_proj": "mlp", "down_proj": "mlp"}


def rmsnorm(x, w, eps):
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * w


def rope(x, pos, theta):
    """transformers apply_rotary_pos_emb with rotate_half; x: (T, H, hd)."""
    hd = x.shape[-1]
    inv = 1.0 / (theta ** (np.arange(0, hd, 2, dtype=np.float64) / hd))
    ang = pos[:, None] * inv[None, :]
    cos, sin = np.cos(ang)[:, None, :], np.sin(ang)[:, None, :]
    a, b = x[..., : hd // 2], x[..., hd // 2:]
    return np.concatenate([a * cos - b * sin, b * cos + a * sin], axis=-1)


def forward(cfg, W, ids, linear, prompt=None):
    """transformers LlamaForCausalLM.forward in float64; linear(layer, module, x, weight) is each nn.Linear.
    prompt (n, C) or None: PEFT prompt tuning's PeftModelForCausalLM.forward, inputs_embeds = cat(prompt, embed(ids)),
    positions 0 .. n+T-1 (position_ids default to arange over the concatenated sequence); logits for all n+T."""
    C, H, KV = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"]
    hd = C // H
    eps, theta = cfg["rms_norm_eps"], cfg.get("rope_theta", 10000.0)
    embed = W.get("model.embed_tokens.weight", W.get("lm_head.weight"))   # tied: this checkpoint stores lm_head only
    x = embed[ids]
    if prompt is not None:
        x = np.concatenate([prompt.astype(np.float64), x], axis=0)
    T = x.shape[0]
    pos = np.arange(T, dtype=np.float64)
    mask = np.triu(np.full((T, T), -np.inf), k=1)
    for l in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{l}."
        h = rmsnorm(x, W[p + "input_layernorm.weight"], eps)
        q = linear(l, "q_proj", h, W[p + "self_attn.q_proj.weight"]).reshape(T, H, hd)
        k = linear(l, "k_proj", h, W[p + "self_attn.k_proj.weight"]).reshape(T, KV, hd)
        v = linear(l, "v_proj", h, W[p + "self_attn.v_proj.weight"]).reshape(T, KV, hd)
        q, k = rope(q, pos, theta), rope(k, pos, theta)
        att = np.empty((T, H, hd))
        for hh in range(H):
            kv = hh // (H // KV)    # repeat_kv: consecutive query heads share a key/value head
            s = q[:, hh] @ k[:, kv].T / math.sqrt(hd) + mask
            pr = np.exp(s - s.max(-1, keepdims=True))
            att[:, hh] = (pr / pr.sum(-1, keepdims=True)) @ v[:, kv]
        x = x + linear(l, "o_proj", att.reshape(T, H * hd), W[p + "self_attn.o_proj.weight"])
        h = rmsnorm(x, W[p + "post_attention_layernorm.weight"], eps)
        g = linear(l, "gate_proj", h, W[p + "mlp.gate_proj.weight"])
        u = linear(l, "up_proj", h, W[p + "mlp.up_proj.weight"])
        x = x + linear(l, "down_proj", g / (1 + np.exp(-g)) * u, W[p + "mlp.down_proj.weight"])
    x = rmsnorm(x, W["model.norm.weight"], eps)
    return x @ W.get("lm_head.weight", embed).T


def ia3_linear(vectors, feedforward):
    """PEFT ia3 Linear.forward: is_feedforward → base(x * ia3_l); else base(x) * ia3_l (llama: no biases)."""
    def linear(l, module, x, w):
        key = f"base_model.model.model.layers.{l}.{PARENT[module]}.{module}.ia3_l"
        if key not in vectors:
            return x @ w.T
        s = vectors[key].astype(np.float64).reshape(-1)
        return (x * s) @ w.T if module in feedforward else (x @ w.T) * s
    return linear


def write_ia3(name, targets, feedforward, seed):
    cfg = json.load(open(os.path.join(MODEL, "config.json")))
    W = {k: v.astype(np.float64) for k, v in ref.load_safetensors(os.path.join(MODEL, "model.safetensors")).items()}
    rng = np.random.default_rng(seed)
    C, F = cfg["hidden_size"], cfg["intermediate_size"]
    kv = cfg["num_key_value_heads"] * (C // cfg["num_attention_heads"])
    out = {"q_proj": C, "k_proj": kv, "v_proj": kv, "o_proj": C, "gate_proj": F, "up_proj": F, "down_proj": C}
    inp = {"q_proj": C, "k_proj": C, "v_proj": C, "o_proj": C, "gate_proj": C, "up_proj": C, "down_proj": F}
    vectors = {}
    for l in range(cfg["num_hidden_layers"]):
        for m in targets:
            shape = (1, inp[m]) if m in feedforward else (out[m], 1)   # IA3Layer.update_layer
            vectors[f"base_model.model.model.layers.{l}.{PARENT[m]}.{m}.ia3_l"] = \
                (1 + 0.3 * rng.standard_normal(shape)).astype(np.float32)
    d = os.path.join(OUT, name)
    os.makedirs(d, exist_ok=True)
    ref.save_safetensors(os.path.join(d, "adapter_model.safetensors"), vectors, {"format": "pt"})
    config = {"auto_mapping": None, "base_model_name_or_path": "models/tinystories-656k", "fan_in_fan_out": False,
              "feedforward_modules": feedforward, "inference_mode": True, "init_ia3_weights": True,
              "modules_to_save": None, "peft_type": "IA3", "revision": None, "target_modules": targets,
              "task_type": "CAUSAL_LM"}
    with open(os.path.join(d, "adapter_config.json"), "w") as f:
        f.write(json.dumps(config, indent=2, sort_keys=True))
    logits = forward(cfg, W, np.array(IDS), ia3_linear(vectors, feedforward))
    base = forward(cfg, W, np.array(IDS), lambda l, m, x, w: x @ w.T)
    ref.save_safetensors(os.path.join(d, "expected.safetensors"),
                         {"ids": np.array(IDS, dtype=np.int64), "logits": logits.astype(np.float32),
                          "base_logits": base.astype(np.float32)},
                         {"source": "reference/peft_methods.py (numpy " + np.__version__ + ", float64)"})
    print(f"{name}: {len(vectors)} vectors, max |logits - base| {np.abs(logits - base).max():.3f}")


def write_prompt(name, n, seed):
    """PEFT PROMPT_TUNING: prompt_embeddings (n, C); a TEXT-like start (word embeddings of random ids) plus noise."""
    cfg = json.load(open(os.path.join(MODEL, "config.json")))
    W = {k: v.astype(np.float64) for k, v in ref.load_safetensors(os.path.join(MODEL, "model.safetensors")).items()}
    embed = W.get("model.embed_tokens.weight", W.get("lm_head.weight"))
    rng = np.random.default_rng(seed)
    C = cfg["hidden_size"]
    prompt = (embed[rng.integers(0, embed.shape[0], n)] + 0.1 * rng.standard_normal((n, C))).astype(np.float32)
    d = os.path.join(OUT, name)
    os.makedirs(d, exist_ok=True)
    ref.save_safetensors(os.path.join(d, "adapter_model.safetensors"), {"prompt_embeddings": prompt}, {"format": "pt"})
    config = {"auto_mapping": None, "base_model_name_or_path": "models/tinystories-656k", "inference_mode": True,
              "num_attention_heads": None, "num_layers": None, "num_transformer_submodules": 1, "num_virtual_tokens": n,
              "peft_type": "PROMPT_TUNING", "prompt_tuning_init": "RANDOM", "prompt_tuning_init_text": None,
              "revision": None, "task_type": "CAUSAL_LM", "token_dim": C, "tokenizer_kwargs": None,
              "tokenizer_name_or_path": None}
    with open(os.path.join(d, "adapter_config.json"), "w") as f:
        f.write(json.dumps(config, indent=2, sort_keys=True))
    plain = lambda l, m, x, w: x @ w.T
    logits = forward(cfg, W, np.array(IDS), plain, prompt)
    # greedy generation as PEFT's generate: the prompt embeddings before the ids at every step
    seq = list(IDS)
    for _ in range(6):
        seq.append(int(np.argmax(forward(cfg, W, np.array(seq), plain, prompt)[-1])))
    ref.save_safetensors(os.path.join(d, "expected.safetensors"),
                         {"ids": np.array(IDS, dtype=np.int64), "logits": logits.astype(np.float32),
                          "greedy": np.array(seq[len(IDS):], dtype=np.int64)},
                         {"source": "reference/peft_methods.py (numpy " + np.__version__ + ", float64)"})
    print(f"{name}: {n} virtual tokens, greedy {seq[len(IDS):]}")


def main():
    write_ia3("ia3-default", ["k_proj", "v_proj", "down_proj"], ["down_proj"], seed=1)
    write_ia3("ia3-all", ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
              ["gate_proj", "down_proj"], seed=2)
    write_prompt("prompt-tuning", 5, seed=3)


if __name__ == "__main__":
    main()
