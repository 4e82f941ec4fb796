"""Goldens for the Python-json writer (model/src/test/resources/lora/, formats/src/test/resources/json/).

adapter_config.json is written by PEFT as json.dumps(asdict(config), indent=2, sort_keys=True) (peft config.py
save_pretrained). This script produces that text for the config LoraAdapterTest writes, with Python's own json
module, plus Python repr() of a few floats (json.dumps formats floats with float.__repr__).
Run: python3 reference/lora_adapter_config.py   (no dependencies beyond the standard library)
"""
import json, os, struct

out = os.path.join(os.path.dirname(__file__), "..", "model", "src", "test", "resources", "lora")
os.makedirs(out, exist_ok=True)

config = {
    "alpha_pattern": {"down_proj": 24.5, "o_proj": 32},
    "auto_mapping": None,
    "base_model_name_or_path": "HuggingFaceTB/SmolLM2-135M \u00e9",
    "bias": "none",
    "fan_in_fan_out": False,
    "inference_mode": True,
    "init_lora_weights": "gaussian",
    "layers_pattern": None,
    "layers_to_transform": [0, 1],
    "lora_alpha": 16,
    "lora_dropout": 0.05,
    "modules_to_save": None,
    "peft_type": "LORA",
    "r": 8,
    "rank_pattern": {"o_proj": 4},
    "revision": None,
    "target_modules": ["q_proj", "v_proj", "o_proj", "down_proj"],
    "task_type": "CAUSAL_LM",
    "use_dora": True,
    "use_rslora": True,
}
with open(os.path.join(out, "expected_adapter_config.json"), "w") as f:
    f.write(json.dumps(config, indent=2, sort_keys=True))

floats = [0.0, 0.05, 0.1, 1 / 3, 1e-05, 0.0001, 0.00012345, 2.5e-07, 16.0, 24.5, 123456789.125,
          1e15, 1e16, 1.5e300, -0.3, -1e-10]
floats_out = os.path.join(os.path.dirname(__file__), "..", "formats", "src", "test", "resources", "json")
os.makedirs(floats_out, exist_ok=True)
with open(os.path.join(floats_out, "python_float_repr.json"), "w") as f:
    json.dump([[struct.pack(">d", x).hex(), repr(x)] for x in floats], f, indent=1)
