"""Writes formats/src/test/resources/safetensors/layout_case.safetensors: a small file laid out the way the Python
`safetensors.save_file` (Rust `prepare`) does, per specs.md section 6.1, using only json + struct. It is the
independent answer `SafeTensorsWriterTest` compares the Java writer's bytes with.

Tensor values follow formulas the Java test repeats: element i of each tensor is given below in `tensors`.
Run: python3 reference/safetensors_layout.py
"""
import json
import os
import struct

# safetensors' Dtype enum in declaration order; the writer sorts by it descending, then by name (UTF-8 bytes).
ENUM = ["BOOL", "F4", "F6_E2M3", "F6_E3M2", "U8", "I8", "F8_E5M2", "F8_E4M3", "F8_E8M0", "F8_E4M3FNUZ",
        "F8_E5M2FNUZ", "I16", "U16", "F16", "BF16", "I32", "U32", "F32", "C64", "F64", "I64", "U64"]


def f32_to_bf16_bits(x):
    b = struct.unpack("<I", struct.pack("<f", x))[0]
    return (b + 0x7FFF + ((b >> 16) & 1)) >> 16  # round to nearest even (no NaN here)


tensors = {  # name: (dtype, shape, little-endian bytes)
    "w.f32": ("F32", [2, 3], struct.pack("<6f", *[i * 0.5 - 1.0 for i in range(6)])),
    "w.bf16": ("BF16", [4], struct.pack("<4H", *[f32_to_bf16_bits(1.0 / (i + 3)) for i in range(4)])),
    "w.f16": ("F16", [3], struct.pack("<3e", *[(i + 1) * 0.1 for i in range(3)])),
    "w.f64": ("F64", [2], struct.pack("<2d", 3.141592653589793, -2.5)),
    "ids.i64": ("I64", [3], struct.pack("<3q", -1, 0, 1 << 40)),
    "ids.i32": ("I32", [2], struct.pack("<2i", -7, 123456789)),
    "ids.i16": ("I16", [2], struct.pack("<2h", -300, 300)),
    "ids.i8": ("I8", [3], struct.pack("<3b", -128, 0, 127)),
    "packed.u8": ("U8", [5, 1], bytes([0x00, 0x7F, 0x80, 0xAB, 0xFF])),
    "mask.bool": ("BOOL", [3], bytes([1, 0, 1])),
    "scalar": ("F32", [], struct.pack("<f", 42.0)),
    "empty": ("F32", [0, 3], b""),
    "caf\u00e9 \"q\"\n": ("U8", [1], bytes([9])),  # non-ASCII, a quote and a control character in a name
}
metadata = {"format": "pt", "note": "tab\there"}

order = sorted(tensors.items(), key=lambda kv: (-ENUM.index(kv[1][0]), kv[0].encode("utf-8")))
header = {"__metadata__": dict(sorted(metadata.items()))}
offset = 0
for name, (dtype, shape, data) in order:
    header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + len(data)]}
    offset += len(data)
h = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
h += b" " * ((8 - len(h) % 8) % 8)
out = os.path.join(os.path.dirname(__file__), "..", "formats", "src", "test", "resources", "safetensors",
                   "layout_case.safetensors")
with open(out, "wb") as f:
    f.write(struct.pack("<Q", len(h)) + h + b"".join(d for _, (_, _, d) in order))
print(out, 8 + len(h) + offset, "bytes")
print(h.decode("utf-8"))
