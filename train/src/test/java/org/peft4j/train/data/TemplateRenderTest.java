package org.peft4j.train.data;

import org.junit.jupiter.api.Test;
import org.peft4j.core.Peft4jException.ConfigException;

import java.util.List;

import static org.junit.jupiter.api.Assertions.*;

/// Each named template rendered on a 2-turn conversation with a system prompt, against strings derived by hand from
/// LLaMA-Factory `src/llamafactory/data/template.py` (commit ff6d4d1, `register_template(name=...)` and
/// `register_template`'s defaults: format_system/format_user default `["{{content}}"]`, format_assistant default
/// `["{{content}}", {"eos_token"}]`; `Template._encode` puts prefix + system before the first user message;
/// `Llama2Template._encode` puts the formatted system inside the first user message).
class TemplateRenderTest {
    static final Conversation TWO_TURNS = Conversation.of("SYS", "Q1", "A1", "Q2", "A2");
    static final Conversation NO_SYSTEM = Conversation.of("", "Q1", "A1");

    static String render(String template, Conversation c) {
        return Template.named(template).render(c, "<BOS>", "<EOS>");
    }

    @Test void defaultTemplate() {
        // user ["Human: {{content}}", eos, "\nAssistant:"], assistant ["{{content}}", eos, "\n"], system ["System: {{content}}", eos, "\n"]
        assertEquals("System: SYS<EOS>\nHuman: Q1<EOS>\nAssistant:A1<EOS>\nHuman: Q2<EOS>\nAssistant:A2<EOS>\n", render("default", TWO_TURNS));
    }

    @Test void emptyTemplate() {
        // only format_assistant ["{{content}}"] is given: no EOS anywhere, system via the default ["{{content}}"]
        assertEquals("SYSQ1A1Q2A2", render("empty", TWO_TURNS));
    }

    @Test void alpacaTemplate() {
        // user ["### Instruction:\n{{content}}\n\n### Response:\n"], assistant ["{{content}}", eos, "\n\n"], default_system "Below is ...\n\n"
        assertEquals("SYS### Instruction:\nQ1\n\n### Response:\nA1<EOS>\n\n### Instruction:\nQ2\n\n### Response:\nA2<EOS>\n\n",
                render("alpaca", TWO_TURNS));
        assertEquals("Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n"
                + "### Instruction:\nQ1\n\n### Response:\nA1<EOS>\n\n", render("alpaca", NO_SYSTEM));
    }

    @Test void vicunaTemplate() {
        // user ["USER: {{content}} ASSISTANT:"], assistant default ["{{content}}", eos], system default ["{{content}}"]
        assertEquals("SYSUSER: Q1 ASSISTANT:A1<EOS>USER: Q2 ASSISTANT:A2<EOS>", render("vicuna", TWO_TURNS));
        assertTrue(render("vicuna", NO_SYSTEM).startsWith("A chat between a curious user and an artificial intelligence assistant. "
                + "The assistant gives helpful, detailed, and polite answers to the user's questions.USER: Q1 ASSISTANT:A1<EOS>"));
    }

    @Test void chatmlTemplate() {
        assertEquals("<|im_start|>system\nSYS<|im_end|>\n<|im_start|>user\nQ1<|im_end|>\n<|im_start|>assistant\nA1<|im_end|>\n"
                + "<|im_start|>user\nQ2<|im_end|>\n<|im_start|>assistant\nA2<|im_end|>\n", render("chatml", TWO_TURNS));
        assertEquals("<|im_start|>user\nQ1<|im_end|>\n<|im_start|>assistant\nA1<|im_end|>\n", render("chatml", NO_SYSTEM));
    }

    @Test void llama2Template() {
        // user [bos, "[INST] {{content}} [/INST]"], system ["<<SYS>>\n{{content}}\n<</SYS>>\n\n"] fused into the first user
        // message, assistant default ["{{content}}", eos]: BOS opens every turn
        assertEquals("<BOS>[INST] <<SYS>>\nSYS\n<</SYS>>\n\nQ1 [/INST]A1<EOS><BOS>[INST] Q2 [/INST]A2<EOS>", render("llama2", TWO_TURNS));
    }

    @Test void llama3Template() {
        // prefix [bos]; system/user/assistant with <|start_header_id|>…<|eot_id|>
        assertEquals("<BOS><|start_header_id|>system<|end_header_id|>\n\nSYS<|eot_id|>"
                + "<|start_header_id|>user<|end_header_id|>\n\nQ1<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nA1<|eot_id|>"
                + "<|start_header_id|>user<|end_header_id|>\n\nQ2<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nA2<|eot_id|>",
                render("llama3", TWO_TURNS));
    }

    @Test void qwenTemplate() {
        assertEquals("<|im_start|>system\nSYS<|im_end|>\n<|im_start|>user\nQ1<|im_end|>\n<|im_start|>assistant\nA1<|im_end|>\n"
                + "<|im_start|>user\nQ2<|im_end|>\n<|im_start|>assistant\nA2<|im_end|>\n", render("qwen", TWO_TURNS));
        assertEquals("<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n"
                + "<|im_start|>user\nQ1<|im_end|>\n<|im_start|>assistant\nA1<|im_end|>\n", render("qwen", NO_SYSTEM));
    }

    @Test void mistralTemplate() {
        // prefix [bos], user ["[INST] {{content}}[/INST]"], assistant [" {{content}}", eos], system ["{{content}}\n\n"] fused (Llama2Template)
        assertEquals("<BOS>[INST] SYS\n\nQ1[/INST] A1<EOS>[INST] Q2[/INST] A2<EOS>", render("mistral", TWO_TURNS));
    }

    @Test void everyNameRendersAndUnknownNamesAreListed() {
        for (String n : SlotTemplate.NAMES) assertFalse(render(n, TWO_TURNS).isEmpty(), n);
        var e = assertThrows(ConfigException.class, () -> Template.named("llama9"));
        assertTrue(e.getMessage().contains("llama9") && e.getMessage().contains("chatml") && e.getMessage().contains("qwen3_nothink"), e.getMessage());
    }

    @Test void defaultSystemOverride() {
        assertEquals("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nQ1<|im_end|>\n<|im_start|>assistant\nA1<|im_end|>\n",
                Template.named("qwen").withDefaultSystem("Be brief.").render(NO_SYSTEM, null, null));
    }

    /// glaive_toolcall_en_demo row 203 (human, function_call, observation, gpt with a tools column).
    static final Conversation TOOL_ROW = new Conversation("",
            "[{\"name\": \"calculate_age\", \"description\": \"Calculate the age based on birthdate\", \"parameters\": {\"type\": \"object\", "
                    + "\"properties\": {\"birthdate\": {\"type\": \"string\", \"description\": \"The birthdate in YYYY-MM-DD format\"}}, \"required\": [\"birthdate\"]}}]",
            List.of(Message.user("How old am I?"),
                    new Message(Role.FUNCTION, "{\"name\": \"calculate_age\", \"arguments\": {\"birthdate\": \"1990-05-15\"}}"),
                    new Message(Role.OBSERVATION, "{\"age\": 31}"), Message.assistant("You are 31.")));

    @Test void defaultToolFormat() {
        // tool_utils.py DEFAULT_TOOL_PROMPT and DefaultToolUtils.tool_formatter / function_formatter; the function message
        // uses format_assistant's slots, the observation format_user's
        String tools = "You have access to the following tools:\n> Tool Name: calculate_age\nTool Description: Calculate the age based on birthdate\n"
                + "Tool Args:\n  - birthdate (string, required): The birthdate in YYYY-MM-DD format\n\n"
                + "Use the following format if using a tool:\n```\nAction: tool name (one of [calculate_age])\n"
                + "Action Input: the input to the tool, in a JSON format representing the kwargs (e.g. ```{\"input\": \"hello world\", \"num_beams\": 5}```)\n```\n";
        assertEquals("System: " + tools + "<EOS>\nHuman: How old am I?<EOS>\nAssistant:"
                + "Action: calculate_age\nAction Input: {\"birthdate\": \"1990-05-15\"}<EOS>\n"
                + "Human: {\"age\": 31}<EOS>\nAssistant:You are 31.<EOS>\n", render("default", TOOL_ROW));
    }

    @Test void qwenToolFormat() {
        // QWEN_TOOL_PROMPT and QwenToolUtils: each tool wrapped as {"type": "function", "function": …}, json.dumps separators
        String tools = "\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
                + "You are provided with function signatures within <tools></tools> XML tags:\n<tools>\n"
                + "{\"type\": \"function\", \"function\": {\"name\": \"calculate_age\", \"description\": \"Calculate the age based on birthdate\", "
                + "\"parameters\": {\"type\": \"object\", \"properties\": {\"birthdate\": {\"type\": \"string\", \"description\": \"The birthdate in YYYY-MM-DD format\"}}, "
                + "\"required\": [\"birthdate\"]}}}\n</tools>\n\nFor each function call, return a json object with function name and arguments within "
                + "<tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call>";
        assertEquals("<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant." + tools + "<|im_end|>\n"
                + "<|im_start|>user\nHow old am I?<|im_end|>\n<|im_start|>assistant\n"
                + "<tool_call>\n{\"name\": \"calculate_age\", \"arguments\": {\"birthdate\": \"1990-05-15\"}}\n</tool_call><|im_end|>\n"
                + "<|im_start|>user\n<tool_response>\n{\"age\": 31}\n</tool_response><|im_end|>\n<|im_start|>assistant\n"
                + "You are 31.<|im_end|>\n", render("qwen", TOOL_ROW));
    }

    @Test void unimplementedToolFormatSaysWhatToDo() {
        var e = assertThrows(ConfigException.class, () -> render("llama3", TOOL_ROW));
        assertTrue(e.getMessage().contains("tool_format: default"), e.getMessage());
        assertTrue(Template.named("llama3").withToolFormat("default").render(TOOL_ROW, "<BOS>", "<EOS>")
                .contains("Action: calculate_age\nAction Input: {\"birthdate\": \"1990-05-15\"}<EOS>"));
    }
}
