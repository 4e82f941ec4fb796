#!/usr/bin/env python3
"""Goldens for peft4j's P-tuning (PEFT P_TUNING; PTuningTest): PEFT's PromptEncoder re-implemented in numpy (float64)
from PEFT's source, independent of peft4j's Java code, and the bundled model's logits with the saved adapter.

PromptEncoder (PEFT src/peft/tuners/p_tuning/model.py), input the indices 0..n-1 (one row, PEFT's prompt_tokens[:1]):
  input_embeds = embedding.weight                                           (n, C)
  MLP:  mlp_head = Linear(C, H), ReLU, Linear(H, H), ReLU, Linear(H, C)      (encoder_num_layers ignored)
  LSTM: lstm_head = torch.nn.LSTM(C, H, num_layers, bidirectional=True, batch_first=True); output [0] (n, 2H),
        then mlp_head = Linear(2H, 2H), ReLU, Linear(2H, C)
torch.nn.LSTM (its documentation's equations), gates in the order i, f, g, o of weight_ih_l{k}[_reverse] (4H, in):
  i = sig(W_ii x + b_ii + W_hi h + b_hi), f = sig(..), g = tanh(..), o = sig(..); c' = f c + i g; h' = o tanh(c');
  h0 = c0 = 0; the _reverse direction runs from the last step to the first; layer k+1 reads [h_fwd, h_bwd].
get_peft_model_state_dict saves the encoder's output as `prompt_embeddings` (n, C) (get_prompt_embedding_to_save);
PEFT then prepends it as prompt tuning does (reference/peft_methods.py's forward).

Writes under model/src/test/resources/adapters/p-tuning/:
  encoder-mlp.safetensors, encoder-lstm.safetensors: the encoder's weights under PEFT's parameter names (relative to
    prompt_encoder.default.), `output` (n, C), the encoder's output in float64 rounded to float32, `dout` (n, C) a
    random output gradient and `grad.<name>` the weights' gradients of sum(dout * output) by float64 central
    differences (no backward written here: the Java backward is checked against differences);
  adapter_config.json + adapter_model.safetensors: the P_TUNING folder PEFT would save for the MLP encoder;
  expected.safetensors: `ids` and `logits` (n + T, V) with those virtual tokens before the ids.

Run from the repository root:  python3 reference/ptuning_reference.py   (numpy only; about a minute)
"""
import json
import os

import numpy as np

import peft_methods as pm  # the numpy Llama forward with prompt embeddings (PEFT's concatenation)

ref = pm.ref
OUT = os.path.join(pm.OUT, "p-tuning")
N_VIRTUAL = 4


def linear(x, W, prefix):
    return x @ W[prefix + ".weight"].T + W[prefix + ".bias"]


def relu(x):
    return np.maximum(x, 0)


def lstm_direction(x, W, suffix, H, reverse):
    """One direction of one torch.nn.LSTM layer over x (n, in); returns h (n, H)."""
    wih, whh = W["lstm_head.weight_ih" + suffix], W["lstm_head.weight_hh" + suffix]
    b = W["lstm_head.bias_ih" + suffix] + W["lstm_head.bias_hh" + suffix]
    n = x.shape[0]
    h, c = np.zeros(H), np.zeros(H)
    out = np.zeros((n, H))
    sig = lambda z: 1 / (1 + np.exp(-z))
    for t in (range(n - 1, -1, -1) if reverse else range(n)):
        a = wih @ x[t] + whh @ h + b
        i, f, g, o = sig(a[:H]), sig(a[H:2 * H]), np.tanh(a[2 * H:3 * H]), sig(a[3 * H:])
        c = f * c + i * g
        h = o * np.tanh(c)
        out[t] = h
    return out


def prompt_encoder(W, kind, H, num_layers):
    x = W["embedding.weight"]
    if kind == "MLP":
        return linear(relu(linear(relu(linear(x, W, "mlp_head.0")), W, "mlp_head.2")), W, "mlp_head.4")
    for l in range(num_layers):
        x = np.concatenate([lstm_direction(x, W, f"_l{l}", H, False), lstm_direction(x, W, f"_l{l}_reverse", H, True)], axis=1)
    return linear(relu(linear(x, W, "mlp_head.0")), W, "mlp_head.2")


def random_encoder(rng, kind, n, C, H, num_layers):
    """Weights under PEFT's names, drawn as torch initialises them (embedding N(0,1), Linear/LSTM U(+-1/sqrt(fan)))."""
    u = lambda shape, fan: rng.uniform(-1 / np.sqrt(fan), 1 / np.sqrt(fan), shape)
    W = {"embedding.weight": rng.standard_normal((n, C))}
    if kind == "MLP":
        dims = [(C, H), (H, H), (H, C)]
    else:
        for l in range(num_layers):
            inp = C if l == 0 else 2 * H
            for s in (f"_l{l}", f"_l{l}_reverse"):
                W["lstm_head.weight_ih" + s] = u((4 * H, inp), H)
                W["lstm_head.weight_hh" + s] = u((4 * H, H), H)
                W["lstm_head.bias_ih" + s] = u((4 * H,), H)
                W["lstm_head.bias_hh" + s] = u((4 * H,), H)
        dims = [(2 * H, 2 * H), (2 * H, C)]
    for i, (fi, fo) in enumerate(dims):
        W[f"mlp_head.{2 * i}.weight"] = u((fo, fi), fi)
        W[f"mlp_head.{2 * i}.bias"] = u((fo,), fi)
    return {k: v.astype(np.float32) for k, v in W.items()}


def fd_gradients(W, kind, H, num_layers, R, h=1e-6):
    """dL/dW of L = sum(R * encoder(W)) by central differences in float64 (step 1e-6: truncation ~1e-12, rounding
    ~1e-10, no ReLU kink crossed at these weights unless an input lies within 1e-6 of 0)."""
    G = {}
    for k, v in W.items():
        g = np.zeros_like(v)
        for idx in np.ndindex(v.shape):
            x0 = v[idx]
            v[idx] = x0 + h
            lp = np.sum(R * prompt_encoder(W, kind, H, num_layers))
            v[idx] = x0 - h
            lm = np.sum(R * prompt_encoder(W, kind, H, num_layers))
            v[idx] = x0
            g[idx] = (lp - lm) / (2 * h)
        G["grad." + k] = g
    return G


def write_encoder(name, rng, kind, C, H, num_layers):
    W = random_encoder(rng, kind, N_VIRTUAL, C, H, num_layers)
    W64 = {k: v.astype(np.float64) for k, v in W.items()}
    out = prompt_encoder(W64, kind, H, num_layers)
    R = rng.uniform(-1, 1, out.shape)   # the output's gradient: L = sum(R * output)
    G = fd_gradients(W64, kind, H, num_layers, R)
    ref.save_safetensors(os.path.join(OUT, name), dict(W, output=out.astype(np.float32), dout=R.astype(np.float32),
                                                        **{k: g.astype(np.float32) for k, g in G.items()}),
                         {"type": kind, "encoder_hidden_size": str(H), "encoder_num_layers": str(num_layers),
                          "source": "reference/ptuning_reference.py (numpy " + np.__version__ + ", float64)"})
    print(f"{name}: {kind} H={H} layers={num_layers}, |output| max {np.abs(out).max():.3f}")
    return out.astype(np.float32)


def main():
    cfg = json.load(open(os.path.join(pm.MODEL, "config.json")))
    C = cfg["hidden_size"]
    os.makedirs(OUT, exist_ok=True)
    rng = np.random.default_rng(15)
    prompt = write_encoder("encoder-mlp.safetensors", rng, "MLP", C, 32, 2)
    write_encoder("encoder-lstm.safetensors", rng, "LSTM", C, 8, 2)
    # the folder PEFT saves after training the MLP encoder: its output as prompt_embeddings
    ref.save_safetensors(os.path.join(OUT, "adapter_model.safetensors"), {"prompt_embeddings": prompt}, {"format": "pt"})
    config = {"auto_mapping": None, "base_model_name_or_path": "models/tinystories-656k", "encoder_dropout": 0.0,
              "encoder_hidden_size": 32, "encoder_num_layers": 2, "encoder_reparameterization_type": "MLP",
              "inference_mode": True, "num_attention_heads": None, "num_layers": None, "num_transformer_submodules": 1,
              "num_virtual_tokens": N_VIRTUAL, "peft_type": "P_TUNING", "revision": None, "task_type": "CAUSAL_LM",
              "token_dim": C}
    with open(os.path.join(OUT, "adapter_config.json"), "w") as f:
        f.write(json.dumps(config, indent=2, sort_keys=True))
    W = {k: v.astype(np.float64) for k, v in ref.load_safetensors(os.path.join(pm.MODEL, "model.safetensors")).items()}
    logits = pm.forward(cfg, W, np.array(pm.IDS), lambda l, m, x, w: x @ w.T, prompt)
    ref.save_safetensors(os.path.join(OUT, "expected.safetensors"),
                         {"ids": np.array(pm.IDS, dtype=np.int64), "logits": logits.astype(np.float32)},
                         {"source": "reference/ptuning_reference.py (numpy " + np.__version__ + ", float64)"})
    print(f"p-tuning: {N_VIRTUAL} virtual tokens, logits {logits.shape}")


if __name__ == "__main__":
    main()
