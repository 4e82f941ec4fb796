#!/usr/bin/env python3
"""Golden for peft4j's prefix tuning (PrefixTuningTest): PEFT's PREFIX_TUNING re-implemented in numpy from PEFT's source,
on the bundled model (models/tinystories-656k: 2 layers, 8 query heads, 4 key/value heads), independent of peft4j's Java.

PEFT (src/peft/peft_model.py, src/peft/utils/other.py, src/peft/tuners/prefix_tuning/model.py):
- _prepare_prompt_learning_config: for a config with num_key_value_heads (grouped-query attention, PEFT #1901)
  token_dim = head_dim * num_key_value_heads and num_attention_heads = num_key_value_heads; encoder_hidden_size
  defaults to token_dim.
- PrefixEncoder: with prefix_projection (training) Embedding(n, token_dim) -> Linear(token_dim, encoder_hidden_size)
  -> Tanh -> Linear(encoder_hidden_size, num_layers*2*token_dim); else Embedding(n, num_layers*2*token_dim).
  get_prompt_embedding_to_save saves the encoder's output as `prompt_embeddings`, and the saved config has
  inference_mode true (the plain Embedding is then loaded with it).
- get_prompt: prompt (n, L*2*token_dim).view(B, n, L*2, heads, hd).permute(2, 0, 3, 1, 4).split(2): layer l's key is
  index 2l, its value 2l+1, each (B, heads, n, hd), handed to the model as past_key_values: never rotated.
- PeftModelForCausalLM.forward: attention_mask gets n ones in front; position_ids None (or offset by n), so
  transformers' cache_position starts after the cached prefix: the text's positions are n .. n+T-1. Every text token
  attends to all n prefix slots and causally to the text. Logits are for the T text tokens.

Writes model/src/test/resources/adapters/prefix-tuning/: adapter_config.json + adapter_model.safetensors (the prefix
computed through a random MLP, prefix_projection true, as PEFT saves it) and expected.safetensors: `ids`, `logits`
(T, V) with the prefix, `greedy` ids, and the MLP's parameters (`mlp.embedding`, `mlp.w1`, `mlp.b1`, `mlp.w2`,
`mlp.b2`) whose output the saved prefix is.

Run from the repository root:  python3 reference/peft_prefix.py   (numpy only; a few seconds)
"""
import json
import math
import os

import numpy as np

from peft_methods import MODEL, OUT, IDS, ref, rmsnorm, rope


def forward(cfg, W, ids, prefix):
    """transformers LlamaForCausalLM.forward in float64 with PEFT's prefix as past_key_values; prefix (n, L*2*D)."""
    C, H, KV = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"]
    hd = C // H
    eps, theta = cfg["rms_norm_eps"], cfg.get("rope_theta", 10000.0)
    L = cfg["num_hidden_layers"]
    n = prefix.shape[0]
    # get_prompt's view/permute/split: pkv[2l] keys, pkv[2l+1] values of layer l, each (KV, n, hd)
    pkv = prefix.astype(np.float64).reshape(n, L * 2, KV, hd).transpose(1, 2, 0, 3)
    embed = W.get("model.embed_tokens.weight", W.get("lm_head.weight"))
    x = embed[ids]
    T = x.shape[0]
    pos = np.arange(n, n + T, dtype=np.float64)          # cache_position after the n cached prefix slots
    mask = np.concatenate([np.zeros((T, n)), np.triu(np.full((T, T), -np.inf), k=1)], axis=1)
    for l in range(L):
        p = f"model.layers.{l}."
        h = rmsnorm(x, W[p + "input_layernorm.weight"], eps)
        q = (h @ W[p + "self_attn.q_proj.weight"].T).reshape(T, H, hd)
        k = (h @ W[p + "self_attn.k_proj.weight"].T).reshape(T, KV, hd)
        v = (h @ W[p + "self_attn.v_proj.weight"].T).reshape(T, KV, hd)
        q, k = rope(q, pos, theta), rope(k, pos, theta)
        k = np.concatenate([pkv[2 * l].transpose(1, 0, 2), k], axis=0)        # DynamicCache.update: cat on the seq axis
        v = np.concatenate([pkv[2 * l + 1].transpose(1, 0, 2), v], axis=0)
        att = np.empty((T, H, hd))
        for hh in range(H):
            kv = hh // (H // KV)    # repeat_kv
            s = q[:, hh] @ k[:, kv].T / math.sqrt(hd) + mask
            pr = np.exp(s - s.max(-1, keepdims=True))
            att[:, hh] = (pr / pr.sum(-1, keepdims=True)) @ v[:, kv]
        x = x + att.reshape(T, H * hd) @ W[p + "self_attn.o_proj.weight"].T
        h = rmsnorm(x, W[p + "post_attention_layernorm.weight"], eps)
        g = h @ W[p + "mlp.gate_proj.weight"].T
        u = h @ W[p + "mlp.up_proj.weight"].T
        x = x + (g / (1 + np.exp(-g)) * u) @ W[p + "mlp.down_proj.weight"].T
    x = rmsnorm(x, W["model.norm.weight"], eps)
    return x @ W.get("lm_head.weight", embed).T


def write_prefix(name, n, E, seed):
    cfg = json.load(open(os.path.join(MODEL, "config.json")))
    W = {k: v.astype(np.float64) for k, v in ref.load_safetensors(os.path.join(MODEL, "model.safetensors")).items()}
    rng = np.random.default_rng(seed)
    C, H, KV, L = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["num_hidden_layers"]
    D = C // H * KV                                      # token_dim for GQA
    f32 = lambda a: a.astype(np.float32)
    mlp = {"mlp.embedding": f32(rng.standard_normal((n, D))),
           "mlp.w1": f32(rng.standard_normal((E, D)) / math.sqrt(D)), "mlp.b1": f32(0.1 * rng.standard_normal(E)),
           "mlp.w2": f32(rng.standard_normal((L * 2 * D, E))), "mlp.b2": f32(0.1 * rng.standard_normal(L * 2 * D))}
    m = {k: v.astype(np.float64) for k, v in mlp.items()}
    prefix = f32(np.tanh(m["mlp.embedding"] @ m["mlp.w1"].T + m["mlp.b1"]) @ m["mlp.w2"].T + m["mlp.b2"])
    d = os.path.join(OUT, name)
    os.makedirs(d, exist_ok=True)
    ref.save_safetensors(os.path.join(d, "adapter_model.safetensors"), {"prompt_embeddings": prefix}, {"format": "pt"})
    config = {"auto_mapping": None, "base_model_name_or_path": "models/tinystories-656k", "encoder_hidden_size": E,
              "inference_mode": True, "num_attention_heads": KV, "num_layers": L, "num_transformer_submodules": 1,
              "num_virtual_tokens": n, "peft_type": "PREFIX_TUNING", "prefix_projection": True, "revision": None,
              "task_type": "CAUSAL_LM", "token_dim": D}
    with open(os.path.join(d, "adapter_config.json"), "w") as f:
        f.write(json.dumps(config, indent=2, sort_keys=True))
    logits = forward(cfg, W, np.array(IDS), prefix)
    seq = list(IDS)   # greedy generation: the prefix in the cache before every step
    for _ in range(6):
        seq.append(int(np.argmax(forward(cfg, W, np.array(seq), prefix)[-1])))
    out = {"ids": np.array(IDS, dtype=np.int64), "logits": f32(logits), "greedy": np.array(seq[len(IDS):], dtype=np.int64)}
    out.update(mlp)
    ref.save_safetensors(os.path.join(d, "expected.safetensors"), out,
                         {"source": "reference/peft_prefix.py (numpy " + np.__version__ + ", float64)"})
    print(f"{name}: {n} virtual tokens, prefix {prefix.shape}, greedy {seq[len(IDS):]}")


if __name__ == "__main__":
    write_prefix("prefix-tuning", 4, 24, seed=5)
