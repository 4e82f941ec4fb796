package org.peft4j.train.data;

import org.peft4j.core.Peft4jException.ConfigException;

import java.util.ArrayList;
import java.util.List;

/// LLaMA-Factory's named templates: formatters made of slots (text with `{{content}}`, `{"bos_token"}`,
/// `{"eos_token"}`), each text slot tokenized on its own. Reference: LLaMA-Factory `data/template.py`
/// (`Template._encode`, `_convert_elements_to_ids`, `Llama2Template`, `register_template`) and `data/formatter.py`.
///
/// @param user         `format_user`; `{{content}}` and `{{idx}}` (turn index) are filled
/// @param assistant    `format_assistant`
/// @param system       `format_system`, applied once before the first user message
/// @param function     `format_function` (slots around the formatted tool calls)
/// @param observation  `format_observation`
/// @param prefix       `format_prefix`, once at the very start (e.g. BOS)
/// @param fuseSystem   `Llama2Template`: the formatted system text goes inside the first user message
/// @param toolFormat   `default` or `qwen` are implemented; `llama3` and `mistral` fail when a row has tools
public record SlotTemplate(String name, List<Slot> user, List<Slot> assistant, List<Slot> system, List<Slot> function,
                           List<Slot> observation, List<Slot> prefix, String defaultSystem, List<String> stopWords,
                           boolean efficientEos, boolean replaceEos, boolean fuseSystem, String toolFormat)
        implements Template {

    /// One element of a formatter.
    public sealed interface Slot permits Text, Bos, Eos {}
    public record Text(String text) implements Slot {}
    public record Bos() implements Slot {}
    public record Eos() implements Slot {}

    public static final Slot BOS = new Bos(), EOS = new Eos();

    static Slot text(String s) { return new Text(s); }

    /// The names [#named] knows.
    public static final List<String> NAMES = List.of("default", "empty", "alpaca", "vicuna", "chatml", "llama2", "llama3", "qwen", "mistral");

    /// The templates as registered in LLaMA-Factory `data/template.py` (`register_template(name=...)`), with
    /// `register_template`'s defaults: user/system `["{{content}}"]`, assistant `["{{content}}", eos]` (or without eos when
    /// `efficient_eos`), function = assistant's slots, observation = user's.
    public static SlotTemplate named(String name) {
        List<Slot> content = List.of(text("{{content}}"));
        List<Slot> contentEos = List.of(text("{{content}}"), EOS);
        return switch (name) {
            case "default" -> of(name, List.of(text("Human: {{content}}"), EOS, text("\nAssistant:")),
                    List.of(text("{{content}}"), EOS, text("\n")), List.of(text("System: {{content}}"), EOS, text("\n")),
                    null, null, List.of(), "", List.of(), false, "default");
            case "empty" -> of(name, content, content, content, null, null, List.of(), "", List.of(), false, "default");
            case "alpaca" -> of(name, List.of(text("### Instruction:\n{{content}}\n\n### Response:\n")),
                    List.of(text("{{content}}"), EOS, text("\n\n")), content, null, null, List.of(),
                    "Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n",
                    List.of(), false, "default");
            case "vicuna" -> of(name, List.of(text("USER: {{content}} ASSISTANT:")), contentEos, content, null, null, List.of(),
                    "A chat between a curious user and an artificial intelligence assistant. "
                            + "The assistant gives helpful, detailed, and polite answers to the user's questions.",
                    List.of(), false, "default");
            case "chatml" -> of(name, List.of(text("<|im_start|>user\n{{content}}<|im_end|>\n<|im_start|>assistant\n")),
                    List.of(text("{{content}}<|im_end|>\n")), List.of(text("<|im_start|>system\n{{content}}<|im_end|>\n")),
                    null, List.of(text("<|im_start|>tool\n{{content}}<|im_end|>\n<|im_start|>assistant\n")), List.of(), "",
                    List.of("<|im_end|>", "<|im_start|>"), true, "default");
            case "llama2" -> fused(of(name, List.of(BOS, text("[INST] {{content}} [/INST]")), contentEos,
                    List.of(text("<<SYS>>\n{{content}}\n<</SYS>>\n\n")), null, null, List.of(), "", List.of(), false, "default"));
            case "llama3" -> of(name, List.of(text("<|start_header_id|>user<|end_header_id|>\n\n{{content}}<|eot_id|>"
                            + "<|start_header_id|>assistant<|end_header_id|>\n\n")),
                    List.of(text("{{content}}<|eot_id|>")),
                    List.of(text("<|start_header_id|>system<|end_header_id|>\n\n{{content}}<|eot_id|>")),
                    List.of(text("{{content}}<|eot_id|>")),
                    List.of(text("<|start_header_id|>ipython<|end_header_id|>\n\n{{content}}<|eot_id|>"
                            + "<|start_header_id|>assistant<|end_header_id|>\n\n")),
                    List.of(BOS), "", List.of("<|eot_id|>", "<|eom_id|>"), true, "llama3");
            case "qwen" -> of(name, List.of(text("<|im_start|>user\n{{content}}<|im_end|>\n<|im_start|>assistant\n")),
                    List.of(text("{{content}}<|im_end|>\n")), List.of(text("<|im_start|>system\n{{content}}<|im_end|>\n")),
                    List.of(text("{{content}}<|im_end|>\n")),
                    List.of(text("<|im_start|>user\n<tool_response>\n{{content}}\n</tool_response><|im_end|>\n<|im_start|>assistant\n")),
                    List.of(), "You are Qwen, created by Alibaba Cloud. You are a helpful assistant.", List.of("<|im_end|>"), true, "qwen");
            case "mistral" -> fused(of(name, List.of(text("[INST] {{content}}[/INST]")), List.of(text(" {{content}}"), EOS),
                    List.of(text("{{content}}\n\n")), List.of(text("[TOOL_CALLS] {{content}}"), EOS),
                    List.of(text("[TOOL_RESULTS] {\"content\": {{content}}}[/TOOL_RESULTS]")), List.of(BOS), "", List.of(), false, "mistral"));
            default -> throw new ConfigException("template '" + name + "' is not known; peft4j has " + String.join(", ", NAMES)
                    + "; or leave `template` unset to use the model's own chat template (empty when the model has none), or set template: model");
        };
    }

    private static SlotTemplate of(String name, List<Slot> user, List<Slot> assistant, List<Slot> system, List<Slot> function,
                                   List<Slot> observation, List<Slot> prefix, String defaultSystem, List<String> stopWords,
                                   boolean replaceEos, String toolFormat) {
        return new SlotTemplate(name, user, assistant, system, function != null ? function : assistant,
                observation != null ? observation : user, prefix, defaultSystem, stopWords, false, replaceEos, false, toolFormat);
    }

    private static SlotTemplate fused(SlotTemplate t) {
        return new SlotTemplate(t.name, t.user, t.assistant, t.system, t.function, t.observation, t.prefix, t.defaultSystem,
                t.stopWords, t.efficientEos, t.replaceEos, true, t.toolFormat);
    }

    public SlotTemplate {
        user = List.copyOf(user); assistant = List.copyOf(assistant); system = List.copyOf(system);
        function = List.copyOf(function); observation = List.copyOf(observation); prefix = List.copyOf(prefix);
        stopWords = List.copyOf(stopWords);
        if (replaceEos && stopWords.isEmpty()) throw new IllegalArgumentException("replaceEos needs a stop word");
    }

    /// LLaMA-Factory `default_system:` override.
    public SlotTemplate withDefaultSystem(String defaultSystem) {
        return new SlotTemplate(name, user, assistant, system, function, observation, prefix, defaultSystem, stopWords,
                efficientEos, replaceEos, fuseSystem, toolFormat);
    }

    /// LLaMA-Factory `tool_format:` override: also resets the function slots to `{{content}}` (+ EOS unless efficient_eos).
    public SlotTemplate withToolFormat(String toolFormat) {
        List<Slot> fn = efficientEos ? List.of(text("{{content}}")) : List.of(text("{{content}}"), EOS);
        return new SlotTemplate(name, user, assistant, system, fn, observation, prefix, defaultSystem, stopWords,
                efficientEos, replaceEos, fuseSystem, toolFormat);
    }

    @Override public int eosId(TextEncoder encoder) {
        if (!replaceEos) return encoder.eosId();
        int id = encoder.tokenId(stopWords.getFirst());
        if (id < 0) throw new ConfigException("template '" + name + "' uses " + stopWords.getFirst() + " as its EOS, but the "
                + "tokenizer has no such token; LLaMA-Factory would add it (resize_vocab), peft4j cannot: choose a template that matches the model");
        return id;
    }

    /// The slots of each message with their content filled in: LLaMA-Factory `_encode` before tokenization.
    /// Turn 0 is prefix + system + query; the system prompt (or the default one) and the tools text go in once.
    public List<List<Slot>> elements(Conversation c) {
        String sys = c.system().isEmpty() ? defaultSystem : c.system();
        List<List<Slot>> out = new ArrayList<>();
        List<Message> messages = c.messages();
        for (int i = 0; i < messages.size(); i++) {
            Message m = messages.get(i);
            List<Slot> e = new ArrayList<>();
            String systemText = "";
            if (i == 0) {
                e.addAll(prefix);
                if (!sys.isEmpty() || !c.tools().isEmpty()) {
                    String toolText = c.tools().isEmpty() ? "" : ToolFormats.tools(toolFormat, c.tools());
                    List<Slot> s = apply(system, sys + toolText, null);
                    if (fuseSystem) systemText = ((Text) s.getFirst()).text();
                    else e.addAll(s);
                }
            }
            switch (m.role()) {
                case USER -> e.addAll(fuseSystem ? apply(user, systemText + m.content(), null) : apply(user, m.content(), String.valueOf(i / 2)));
                case ASSISTANT -> e.addAll(apply(assistant, m.content(), null));
                case OBSERVATION -> e.addAll(apply(observation, m.content(), null));
                case FUNCTION -> e.addAll(apply(function, ToolFormats.functionCalls(toolFormat, m.content(), !fuseSystem), null));
                case SYSTEM -> throw new IllegalStateException("a SYSTEM message inside a conversation");
            }
            out.add(e);
        }
        return out;
    }

    /// This template as a Jinja chat template, as LLaMA-Factory writes it into the tokenizer it saves when the model has
    /// none (`_get_jinja_template`; the fused-system form for llama2-style templates): prefix, the system message (the
    /// conversation's or the default), then each user and assistant message through its slots. BOS/EOS slots become
    /// the tokenizer's tokens (`bosToken`/`eosToken`, left out when null); tools and observations are not rendered.
    public String jinja(String bosToken, String eosToken) {
        StringBuilder j = new StringBuilder();
        String pre = jinjaSlots(prefix, "content", bosToken, eosToken);
        if (!pre.isEmpty()) j.append("{{ ").append(pre).append(" }}");
        if (!defaultSystem.isEmpty()) j.append("{% set system_message = '").append(jinjaEscape(defaultSystem)).append("' %}");
        String sys = jinjaSlots(system, "system_message", bosToken, eosToken);
        j.append("{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}"
                + "{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}{% endif %}");
        if (fuseSystem) {
            j.append("{% for message in loop_messages %}{% if loop.index0 == 0 and system_message is defined %}{% set content = ")
                    .append(sys).append(" + message['content'] %}{% else %}{% set content = message['content'] %}{% endif %}");
        } else {
            j.append("{% if system_message is defined %}{{ ").append(sys).append(" }}{% endif %}")
                    .append("{% for message in loop_messages %}{% set content = message['content'] %}");
        }
        j.append("{% if message['role'] == 'user' %}{{ ").append(jinjaSlots(user, "content", bosToken, eosToken))
                .append(" }}{% elif message['role'] == 'assistant' %}{{ ").append(jinjaSlots(assistant, "content", bosToken, eosToken))
                .append(" }}{% endif %}{% endfor %}");
        return j.toString();
    }

    /// `_convert_slots_to_jinja`: quoted text around the placeholder variable, joined with ` + `.
    private static String jinjaSlots(List<Slot> slots, String placeholder, String bosToken, String eosToken) {
        List<String> items = new ArrayList<>();
        for (Slot s : slots)
            switch (s) {
                case Text(String t) -> {
                    int at = t.indexOf("{{content}}");
                    String before = at < 0 ? t : t.substring(0, at);
                    if (!before.isEmpty()) items.add("'" + jinjaEscape(before) + "'");
                    if (at >= 0) {
                        items.add(placeholder);
                        String after = t.substring(at + "{{content}}".length());
                        if (!after.isEmpty()) items.add("'" + jinjaEscape(after) + "'");
                    }
                }
                case Bos b -> { if (bosToken != null) items.add("'" + jinjaEscape(bosToken) + "'"); }
                case Eos x -> { if (eosToken != null) items.add("'" + jinjaEscape(eosToken) + "'"); }
            }
        return String.join(" + ", items);
    }

    private static String jinjaEscape(String s) { return s.replace("\\", "\\\\").replace("'", "\\'"); }

    /// The conversation as text, BOS/EOS slots written as `bosToken`/`eosToken` (null: the tokenizer has none).
    public String render(Conversation c, String bosToken, String eosToken) {
        StringBuilder sb = new StringBuilder();
        for (List<Slot> message : elements(c))
            for (Slot s : message)
                switch (s) {
                    case Text t -> sb.append(t.text());
                    case Bos b -> { if (bosToken != null) sb.append(bosToken); }
                    case Eos x -> { if (eosToken != null) sb.append(eosToken); }
                }
        return sb.toString();
    }

    @Override public List<EncodedTurn> encodeMultiturn(TextEncoder encoder, Conversation c) {
        List<List<Slot>> elements = elements(c);
        List<EncodedTurn> turns = new ArrayList<>(elements.size() / 2);
        for (int i = 0; i < elements.size(); i += 2)
            turns.add(new EncodedTurn(ids(encoder, elements.get(i)), ids(encoder, elements.get(i + 1))));
        return turns;
    }

    /// `_convert_elements_to_ids`: each non-empty text slot encoded alone, BOS only when the tokenizer has one.
    private int[] ids(TextEncoder encoder, List<Slot> slots) {
        IntArray out = new IntArray();
        for (Slot s : slots)
            switch (s) {
                case Text t -> { if (!t.text().isEmpty()) out.addAll(encoder.encode(t.text())); }
                case Bos b -> { if (encoder.bosId() >= 0) out.add(encoder.bosId()); }
                case Eos x -> out.add(eosId(encoder));
            }
        return out.toArray();
    }

    /// `StringFormatter.apply`: the first `{{content}}` (then `{{idx}}`) of each text slot is replaced.
    private static List<Slot> apply(List<Slot> slots, String content, String idx) {
        List<Slot> out = new ArrayList<>(slots.size());
        for (Slot s : slots) {
            if (s instanceof Text(String t)) {
                t = replaceFirst(t, "{{content}}", content);
                if (idx != null) t = replaceFirst(t, "{{idx}}", idx);
                out.add(new Text(t));
            } else out.add(s);
        }
        return out;
    }

    private static String replaceFirst(String s, String target, String value) {
        int at = s.indexOf(target);
        return at < 0 ? s : s.substring(0, at) + value + s.substring(at + target.length());
    }
}
