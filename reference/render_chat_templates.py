#!/usr/bin/python3
"""Oracle for peft4j's template module: renders Hugging Face chat templates exactly as transformers does.

Run with Debian's jinja2 (apt-get install -y python3-jinja2):
    /usr/bin/python3 reference/render_chat_templates.py
It reads template/src/test/resources/org/peft4j/template/templates/*.jinja and writes
template/src/test/resources/org/peft4j/template/chat_template_cases.json (inputs and expected outputs).

The environment copies transformers' utils/chat_template_utils.py `_compile_jinja_template`:
ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols, {% generation %}]),
global raise_exception (raises TemplateError), global strftime_now, and the tojson filter replaced by json.dumps
with ensure_ascii=False. strftime_now reads a FIXED clock (FIXED_NOW) so the fixture is reproducible; the Java test
hands ChatTemplate the same instant. Like apply_chat_template, render() always passes messages, tools (None when
absent), documents (None), add_generation_prompt, the special tokens, then the extra kwargs.
"""
import json
import pathlib
import sys
from datetime import datetime

import jinja2
from jinja2 import nodes
from jinja2.ext import Extension, loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment

ROOT = pathlib.Path(__file__).resolve().parent.parent
RES = ROOT / "template/src/test/resources/org/peft4j/template"
FIXED_NOW = datetime(2025, 3, 7, 9, 5, 3)  # a day < 10 exercises %d's zero padding


class GenerationTracker(Extension):
    """transformers' AssistantTracker without the index tracking: {% generation %} renders its body."""
    tags = {"generation"}

    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(["name:endgeneration"], drop_needle=True)
        return nodes.CallBlock(self.call_method("_render", []), [], [], body).set_lineno(lineno)

    def _render(self, caller):
        return caller()


def compile_template(source):
    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    def strftime_now(fmt):
        return FIXED_NOW.strftime(fmt)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[GenerationTracker, loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env.from_string(source)


# name -> (file, special tokens from the model's tokenizer_config.json, HF repo)
TEMPLATES = {
    "smollm2": ("smollm2-135m-instruct.jinja", {"bos_token": "<|im_start|>", "eos_token": "<|im_end|>"}),
    "llama3": ("llama3-8b-instruct.jinja", {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"}),
    "llama3.1": ("llama3.1-8b-instruct.jinja", {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"}),
    "llama3.2": ("llama3.2-3b-instruct.jinja", {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"}),
    "qwen2.5": ("qwen2.5-7b-instruct.jinja", {"eos_token": "<|im_end|>"}),
    "mistral-v0.1": ("mistral-7b-instruct-v0.1.jinja", {"bos_token": "<s>", "eos_token": "</s>"}),
    "mistral-v0.2": ("mistral-7b-instruct-v0.2.jinja", {"bos_token": "<s>", "eos_token": "</s>"}),
    # ChatTemplate.plain(): peft4j's own fallback for models without a template (main resources)
    "plain": ("../../../../../../main/resources/org/peft4j/template/plain.jinja", {}),
}
TOOL_TEMPLATES = {"llama3.1", "llama3.2", "qwen2.5"}

SYS = {"role": "system", "content": "You are a concise assistant."}
U1 = {"role": "user", "content": "What is the capital of France?"}
A1 = {"role": "assistant", "content": "Paris."}
U2 = {"role": "user", "content": "And of Japan?"}

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather in a city, in °C.",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "description": "City name, e.g. Zürich or 東京"},
                "days": {"type": "integer", "minimum": 1, "maximum": 7, "default": 1},
                "detailed": {"type": "boolean", "default": False},
                "threshold": {"type": "number", "default": 0.5},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"], "nullable": None},
            },
            "required": ["city"],
        },
    },
}
CALL = {"role": "assistant", "tool_calls": [
    {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "東京", "days": 2}}}]}
RESULT = {"role": "tool", "name": "get_weather", "content": "{\"temperature\": 21.5, \"sky\": \"clear\"}"}

CONVERSATIONS = {
    "user": [U1],
    "system_user": [SYS, U1],
    "multi_turn": [SYS, U1, A1, U2],
    "no_system_multi_turn": [U1, A1, U2],
    "ends_with_assistant": [U1, A1],
    "unicode_whitespace": [
        {"role": "system", "content": "  Réponds en français, s'il te plaît.\n"},
        {"role": "user", "content": "\t你好，世界！ 👋🏽 naïve café — “quotes” \\ back\\slash\n\n"},
        {"role": "assistant", "content": " Ça va très bien 😀 "},
        {"role": "user", "content": "Ein {{ Jinja }} {% raw %} text & <b>html</b>"},
    ],
    "non_alternating": [U1, U2],
    "system_only": [SYS],
}
TOOL_CONVERSATIONS = {
    "tools_first_turn": ([SYS, U1], {"tools": [WEATHER_TOOL]}),
    "tools_no_system": ([U1], {"tools": [WEATHER_TOOL]}),
    "tools_call_and_result": ([SYS, U1, CALL, RESULT], {"tools": [WEATHER_TOOL]}),
    "tools_system_only": ([SYS], {"tools": [WEATHER_TOOL]}),
    "tools_two_calls": ([U1, {"role": "assistant", "content": "Checking both.", "tool_calls": [
        CALL["tool_calls"][0], {"type": "function", "function": {"name": "get_weather",
                                                                 "arguments": {"city": "Paris", "threshold": 1e-05}}}]},
                         RESULT, RESULT], {"tools": [WEATHER_TOOL, {"type": "function", "function": {
                             "name": "now", "description": "Current time", "parameters": {}}}]}),
    "tools_in_system": ([SYS, U1], {"tools": [WEATHER_TOOL], "tools_in_user_message": False,
                                     "date_string": "01 Jan 2030"}),
}
LLAMA31_ONLY = {
    "builtin_tools": ([SYS, U1, {"role": "assistant", "tool_calls": [{"type": "function", "function": {
        "name": "brave_search", "arguments": {"query": "capital of France"}}}]}],
                      {"builtin_tools": ["brave_search", "code_interpreter", "wolfram_alpha"]}),
}


def main():
    cases = []
    templates = {}
    for name, (file, special) in TEMPLATES.items():
        source = (RES / "templates" / file).read_text(encoding="utf-8")
        templates[name] = {"file": file, "special_tokens": special}
        template = compile_template(source)
        convs = [(c, m, {}) for c, m in CONVERSATIONS.items()]
        if name in TOOL_TEMPLATES:
            convs += [(c, m, e) for c, (m, e) in TOOL_CONVERSATIONS.items()]
        if name == "llama3.1":
            convs += [(c, m, e) for c, (m, e) in LLAMA31_ONLY.items()]
        for conv, messages, extra in convs:
            for gen in (False, True):
                case = {"template": name, "conversation": conv, "add_generation_prompt": gen,
                        "messages": messages, "extra": extra}
                try:
                    case["expected"] = template.render(messages=messages, tools=extra.get("tools"),
                                                       documents=None, add_generation_prompt=gen,
                                                       **special, **{k: v for k, v in extra.items() if k != "tools"})
                except jinja2.exceptions.TemplateError as e:
                    case["error"] = str(e)
                cases.append(case)
    out = {
        "generator": "reference/render_chat_templates.py",
        "jinja2": jinja2.__version__,
        "python": sys.version.split()[0],
        "fixed_now": FIXED_NOW.isoformat(),
        "templates": templates,
        "cases": cases,
    }
    path = RES / "chat_template_cases.json"
    path.write_text(json.dumps(out, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    errors = sum("error" in c for c in cases)
    print(f"wrote {len(cases)} cases ({errors} expected errors) to {path}")


if __name__ == "__main__":
    main()
