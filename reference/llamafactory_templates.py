#!/usr/bin/python3
"""Oracle for peft4j's LLaMA-Factory templates: runs LLaMA-Factory's own template registry and encoder.

    python3 reference/llamafactory_templates.py /path/to/LLaMA-Factory [commit, when the folder is not a git checkout]

LLaMA-Factory (Apache-2.0) is not copied into peft4j: its src/llamafactory/data/{template,formatter,tool_utils}.py are
executed from the given checkout, with stand-ins for the modules that pull in torch/transformers/datasets (logging,
data_utils.Role, mm_plugin: the multimodal plugin only acts on images/videos/audio, which text rows do not have).
The tokenizer stand-in encodes a text to the one-element list [text] and a token to its spelling, so each turn's
prompt and response ids join back into the exact text LLaMA-Factory tokenizes; BOS is "<BOS>", EOS "<EOS>" (or the
first stop word when the template replaces the EOS, as `fix_special_tokens` makes it).

It writes two files (pinned commit recorded in both):
- train/src/main/resources/org/peft4j/train/data/llamafactory-templates.json: every text-capable template's
  definition (slots, default system, stop words, flags, thought words, class), the table `Template.named` reads;
- train/src/test/resources/org/peft4j/train/data/llamafactory-template-cases.json: conversations and the
  (prompt, response) texts LLaMA-Factory's `encode_multiturn` gives for each template, with enable_thinking true/false
  for reasoning templates; TemplateTableTest compares peft4j's encoding with them.
"""
import enum
import importlib.util
import json
import pathlib
import subprocess
import sys
import types

ROOT = pathlib.Path(__file__).resolve().parent.parent
LF = pathlib.Path(sys.argv[1]).resolve()
SRC = LF / "src/llamafactory"


def stub(name, **attrs):
    m = types.ModuleType(name)
    m.__dict__.update(attrs)
    sys.modules[name] = m
    return m


class _Log:
    def __getattr__(self, _):
        return lambda *a, **k: None


class Role(enum.StrEnum):
    USER = "user"
    ASSISTANT = "assistant"
    SYSTEM = "system"
    FUNCTION = "function"
    OBSERVATION = "observation"


stub("llamafactory").__path__ = []
stub("llamafactory.extras").__path__ = []
stub("llamafactory.extras.logging", get_logger=lambda *_: _Log())
sys.modules["llamafactory.extras"].logging = sys.modules["llamafactory.extras.logging"]
stub("llamafactory.data").__path__ = []
stub("llamafactory.data.data_utils", Role=Role, SLOTS=list)


class _Plugin:
    def __init__(self, name, **kw):
        self.name = name


stub("llamafactory.data.mm_plugin", get_mm_plugin=lambda name="base", **kw: _Plugin(name, **kw))


def load(mod):
    spec = importlib.util.spec_from_file_location("llamafactory.data." + mod, SRC / "data" / (mod + ".py"))
    m = importlib.util.module_from_spec(spec)
    sys.modules["llamafactory.data." + mod] = m
    spec.loader.exec_module(m)
    return m


load("tool_utils")
formatter = load("formatter")
template = load("template")

# LLaMA-Factory templates whose encoding is their own code (not slots): refused by peft4j
OWN_ENCODING = {"moss_vl"}


def slots(fmt):
    out = []
    for s in fmt.slots:
        if isinstance(s, str):
            out.append(s)
        elif isinstance(s, set):  # _convert_elements_to_ids encodes only {"bos_token"} and {"eos_token"}; other sets add nothing
            if "bos_token" in s or "eos_token" in s:
                out.append({"special": "bos_token" if "bos_token" in s else "eos_token"})
        else:
            out.append({"token": s["token"]})
    return out


def kind(t):
    return type(t).__name__


table = {}
for name, t in template.TEMPLATES.items():
    if name in OWN_ENCODING or kind(t) not in ("Template", "Llama2Template", "ReasoningTemplate", "Glm47ReasoningTemplate"):
        continue
    table[name] = {
        "user": slots(t.format_user), "assistant": slots(t.format_assistant), "system": slots(t.format_system),
        "function": slots(t.format_function), "observation": slots(t.format_observation), "prefix": slots(t.format_prefix),
        "tool_format": t.format_function.tool_format or "default",
        "default_system": t.default_system, "stop_words": t.stop_words, "thought_words": list(t.thought_words),
        "efficient_eos": t.efficient_eos, "replace_eos": t.replace_eos, "replace_jinja_template": t.replace_jinja_template,
        "enable_thinking": t.enable_thinking, "class": kind(t), "multimodal": t.mm_plugin.name != "base",
    }


class Tok:
    def __init__(self, eos):
        self.bos_token, self.bos_token_id = "<BOS>", "<BOS>"
        self.eos_token, self.eos_token_id = eos, eos

    def encode(self, text, add_special_tokens=False):
        return [text]

    def convert_tokens_to_ids(self, token):
        return token


CONVERSATIONS = [
    ("SYS", ["Q1", "A1", "Q2", "A2"]),
    ("", ["Q1", "A1"]),
    ("", ["Q1", "<think>\nR1\n</think>\n\nA1", "Q2", "A2"]),
]

cases = []
for name, d in table.items():
    t = template.TEMPLATES[name]
    eos = t.stop_words[0] if t.replace_eos else "<EOS>"
    tok = Tok(eos)
    reasoning = d["class"] != "Template" and d["class"] != "Llama2Template"
    for thinking in ([True, False] if reasoning else [None]):
        if reasoning:
            t.enable_thinking = thinking
        for system, contents in CONVERSATIONS:
            if not reasoning and "<think>" in contents[1]:
                continue
            messages = [{"role": "user" if i % 2 == 0 else "assistant", "content": c} for i, c in enumerate(contents)]
            turns = t.encode_multiturn(tok, [dict(m) for m in messages], system or None, None)
            cases.append({"template": name, "enable_thinking": thinking, "system": system, "messages": contents,
                          "eos": eos, "turns": [["".join(p), "".join(r)] for p, r in turns]})
    if reasoning:
        t.enable_thinking = d["enable_thinking"]

commit = subprocess.run(["git", "-C", str(LF), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip() or sys.argv[2]
source = f"LLaMA-Factory src/llamafactory/data/template.py at {commit} (Apache-2.0), read by reference/llamafactory_templates.py"
main = ROOT / "train/src/main/resources/org/peft4j/train/data/llamafactory-templates.json"
test = ROOT / "train/src/test/resources/org/peft4j/train/data/llamafactory-template-cases.json"
main.parent.mkdir(parents=True, exist_ok=True)
test.parent.mkdir(parents=True, exist_ok=True)
main.write_text(json.dumps({"source": source, "templates": table}, ensure_ascii=False, indent=1) + "\n")
test.write_text(json.dumps({"source": source, "cases": cases}, ensure_ascii=False, indent=1) + "\n")
print(f"{len(table)} templates, {len(cases)} cases", file=sys.stderr)
