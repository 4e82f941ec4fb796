#!/usr/bin/env python3
"""Q4_K quantization vectors from llama.cpp's own compiled ggml: calls `quantize_row_q4_K_ref` in libggml-base.so (the
library node-llama-cpp ships, the one llama.cpp runs) through ctypes on blocks chosen to reach the quantizer's edges:
all-zero, constant, all-positive, all-negative, one spike, tiny and large magnitudes, sub-blocks whose scale rounds to
0, and random normal blocks. Writes quant/src/test/resources/ggml_q4k_quantize.json (inputs and block bytes as hex).

    python3 reference/ggml_q4k_quantize.py bench/llamacpp/node_modules/@node-llama-cpp/linux-x64/bins/linux-x64/libggml-base.so
"""
import ctypes, json, sys
import numpy as np

lib = ctypes.CDLL(sys.argv[1])
f = lib.quantize_row_q4_K_ref
f.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64]
f.restype = None

rng = np.random.default_rng(20261202)
blocks = [np.zeros(256), np.full(256, 0.75), np.abs(rng.normal(size=256)) + 0.1, -np.abs(rng.normal(size=256)) - 0.1]
spike = rng.normal(scale=1e-3, size=256); spike[77] = 40.0; blocks.append(spike)
blocks.append(rng.normal(scale=1e-6, size=256))
blocks.append(rng.normal(scale=300.0, size=256))
mixed = rng.normal(size=256); mixed[:32] *= 1e-7; mixed[128:160] = 0.0; blocks.append(mixed)   # scales rounding to 0
for _ in range(8):
    blocks.append(rng.normal(scale=rng.uniform(0.01, 2.0), size=256))
x = np.concatenate(blocks).astype(np.float32)
out = (ctypes.c_uint8 * (len(blocks) * 144))()
f(x.ctypes.data, ctypes.addressof(out), len(x))
json.dump({"generator": "reference/ggml_q4k_quantize.py: quantize_row_q4_K_ref of node-llama-cpp 3.22.1's libggml-base.so",
           "input_f32_hex": x.view(np.uint32).astype(">u4").tobytes().hex(), "q4_K_hex": bytes(out).hex()},
          open("quant/src/test/resources/ggml_q4k_quantize.json", "w"), indent=1)
print(len(blocks), "blocks")
