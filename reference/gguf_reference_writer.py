#!/usr/bin/env python3
"""An independent GGUF v3 writer (numpy only, from specs.md section 4 and ggml docs/gguf.md), used to check that peft4j
reads GGUF files it did not write: converts a Hugging Face Llama folder (single model.safetensors, F32) into an F32
GGUF with the llama architecture's hyper-parameters, convert_hf_to_gguf's tensor names and its Q/K row permutation.

    python3 reference/gguf_reference_writer.py ../shared/models/stories260K-hf model/src/test/resources/gguf/stories260K-numpy-f32.gguf

Only what the model loader needs is written (no tokenizer keys); general.alignment is set to 64 to exercise it.
"""
import json
import struct
import sys

import numpy as np


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        assert t["dtype"] == "F32", (name, t["dtype"])
        a, b = t["data_offsets"]
        out[name] = np.frombuffer(data[a:b], dtype="<f4").reshape(t["shape"])
    return out


def permute(w, n_head):
    # convert_hf_to_gguf.py LlamaModel.permute: rows viewed as [n_head, 2, hd/2], the last two axes swapped
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def s(x):
    b = x.encode("utf-8")
    return struct.pack("<Q", len(b)) + b


def kv(key, vtype, value):
    out = s(key) + struct.pack("<I", vtype)
    if vtype == 4:   # UINT32
        return out + struct.pack("<I", value)
    if vtype == 6:   # FLOAT32
        return out + struct.pack("<f", value)
    if vtype == 8:   # STRING
        return out + s(value)
    raise ValueError(vtype)


def main(src, dst):
    cfg = json.load(open(f"{src}/config.json"))
    st = read_safetensors(f"{src}/model.safetensors")
    heads, kv_heads = cfg["num_attention_heads"], cfg.get("num_key_value_heads", cfg["num_attention_heads"])
    head_dim = cfg.get("head_dim", cfg["hidden_size"] // heads)
    tensors = []
    embed = st.get("model.embed_tokens.weight", st.get("lm_head.weight"))
    tensors.append(("token_embd.weight", embed))
    for l in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{l}."
        tensors += [
            (f"blk.{l}.attn_norm.weight", st[p + "input_layernorm.weight"]),
            (f"blk.{l}.attn_q.weight", permute(st[p + "self_attn.q_proj.weight"], heads)),
            (f"blk.{l}.attn_k.weight", permute(st[p + "self_attn.k_proj.weight"], kv_heads)),
            (f"blk.{l}.attn_v.weight", st[p + "self_attn.v_proj.weight"]),
            (f"blk.{l}.attn_output.weight", st[p + "self_attn.o_proj.weight"]),
            (f"blk.{l}.ffn_norm.weight", st[p + "post_attention_layernorm.weight"]),
            (f"blk.{l}.ffn_gate.weight", st[p + "mlp.gate_proj.weight"]),
            (f"blk.{l}.ffn_up.weight", st[p + "mlp.up_proj.weight"]),
            (f"blk.{l}.ffn_down.weight", st[p + "mlp.down_proj.weight"]),
        ]
    tensors.append(("output_norm.weight", st["model.norm.weight"]))
    if not cfg.get("tie_word_embeddings", False):
        tensors.append(("output.weight", st["lm_head.weight"]))
    a = "llama"
    kvs = [
        kv("general.architecture", 8, a), kv("general.alignment", 4, 64), kv("general.file_type", 4, 0),
        kv(f"{a}.context_length", 4, cfg["max_position_embeddings"]), kv(f"{a}.embedding_length", 4, cfg["hidden_size"]),
        kv(f"{a}.block_count", 4, cfg["num_hidden_layers"]), kv(f"{a}.feed_forward_length", 4, cfg["intermediate_size"]),
        kv(f"{a}.attention.head_count", 4, heads), kv(f"{a}.attention.head_count_kv", 4, kv_heads),
        kv(f"{a}.attention.layer_norm_rms_epsilon", 6, cfg["rms_norm_eps"]),
        kv(f"{a}.rope.freq_base", 6, cfg.get("rope_theta", 10000.0)), kv(f"{a}.rope.dimension_count", 4, head_dim),
    ]
    if head_dim != cfg["hidden_size"] // heads:
        kvs += [kv(f"{a}.attention.key_length", 4, head_dim), kv(f"{a}.attention.value_length", 4, head_dim)]
    align = 64
    infos, blobs, offset = b"", [], 0
    for name, t in tensors:
        t = np.ascontiguousarray(t, dtype="<f4")
        ne = list(reversed(t.shape))
        infos += s(name) + struct.pack("<I", len(ne)) + b"".join(struct.pack("<Q", d) for d in ne)
        infos += struct.pack("<IQ", 0, offset)   # GGML_TYPE_F32, offset
        raw = t.tobytes()
        pad = (-len(raw)) % align
        blobs.append(raw + b"\0" * pad)
        offset += len(raw) + pad
    head = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(kvs)) + b"".join(kvs) + infos
    head += b"\0" * ((-len(head)) % align)
    with open(dst, "wb") as f:
        f.write(head)
        for b in blobs:
            f.write(b)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
