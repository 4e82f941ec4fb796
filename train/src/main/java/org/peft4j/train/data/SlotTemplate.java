package org.peft4j.train.data;

import org.peft4j.core.Peft4jException.ConfigException;

import java.util.ArrayList;
import java.util.List;
import java.util.stream.Stream;

/// LLaMA-Factory's named templates: formatters made of slots (text with `{{content}}`, `{"bos_token"}`,
/// `{"eos_token"}`, `{"token": ...}`), each text slot tokenized on its own. Reference: LLaMA-Factory `data/template.py`
/// (`Template._encode`, `_convert_elements_to_ids`, `Llama2Template`, `ReasoningTemplate`, `register_template`) and
/// `data/formatter.py`. The table itself ([#NAMES], [#named]) is `llamafactory-templates.json`, LLaMA-Factory's
/// registry as `reference/llamafactory_templates.py` reads it (every template whose encoding is slots: its
/// multimodal templates too, whose text format is what text rows get).
///
/// @param user         `format_user`; `{{content}}` and `{{idx}}` (turn index) are filled
/// @param assistant    `format_assistant`
/// @param system       `format_system`, applied once before the first user message
/// @param function     `format_function` (slots around the formatted tool calls)
/// @param observation  `format_observation`
/// @param prefix       `format_prefix`, once at the very start (e.g. BOS)
/// @param fuseSystem   `Llama2Template`: the formatted system text goes inside the first user message
/// @param toolFormat   `default` or `qwen` are implemented; others (`llama3`, `mistral`, `glm4`, ...) fail when a row has tools
/// @param thinking     `ReasoningTemplate`'s thought handling, or [Thinking#NONE]
public record SlotTemplate(String name, List<Slot> user, List<Slot> assistant, List<Slot> system, List<Slot> function,
                           List<Slot> observation, List<Slot> prefix, String defaultSystem, List<String> stopWords,
                           boolean efficientEos, boolean replaceEos, boolean fuseSystem, String toolFormat, Thinking thinking)
        implements Template {

    /// One element of a formatter.
    public sealed interface Slot permits Text, Bos, Eos, Token {}
    public record Text(String text) implements Slot {}
    public record Bos() implements Slot {}
    public record Eos() implements Slot {}
    /// `{"token": "<|user|>"}`: a vocabulary entry by spelling (`convert_tokens_to_ids`), never split by the tokenizer.
    public record Token(String token) implements Slot {}

    public static final Slot BOS = new Bos(), EOS = new Eos();

    static Slot text(String s) { return new Text(s); }

    /// LLaMA-Factory's `ReasoningTemplate` (kind REASONING) and `Glm47ReasoningTemplate` (GLM47: an empty thought is the
    /// closing word alone): `open`/`close` are `thought_words`; `enable` is the enable_thinking in force (LLaMA-Factory's
    /// data argument, default true): true trains an empty thought added to answers without one, false strips thoughts
    /// from answers and puts the empty thought in the prompt (not trained).
    public record Thinking(Kind kind, String open, String close, boolean enable) {
        public enum Kind { NONE, REASONING, GLM47 }
        public static final Thinking NONE = new Thinking(Kind.NONE, "<think>\n", "\n</think>\n\n", true);

        /// `add_thought("")`: the empty thought.
        String empty() { return kind == Kind.GLM47 ? close : open + close; }

        /// `remove_thought`: every open…close span cut, then leading newlines.
        String remove(String content) {
            String out = java.util.regex.Pattern.compile(java.util.regex.Pattern.quote(open) + "(.*?)" + java.util.regex.Pattern.quote(close),
                    java.util.regex.Pattern.DOTALL).matcher(content).replaceAll("");
            int i = 0;
            while (i < out.length() && out.charAt(i) == '\n') i++;
            return out.substring(i);
        }

        boolean hasThought(String content) { return content.contains(open.strip()) || content.contains(close.strip()); }
    }

    /// A template without thought handling (the 13 components before [Thinking]).
    public SlotTemplate(String name, List<Slot> user, List<Slot> assistant, List<Slot> system, List<Slot> function,
                        List<Slot> observation, List<Slot> prefix, String defaultSystem, List<String> stopWords,
                        boolean efficientEos, boolean replaceEos, boolean fuseSystem, String toolFormat) {
        this(name, user, assistant, system, function, observation, prefix, defaultSystem, stopWords, efficientEos, replaceEos,
                fuseSystem, toolFormat, Thinking.NONE);
    }

    /// The names [#named] knows, in LLaMA-Factory's registration order.
    public static final List<String> NAMES = List.copyOf(Table.TEMPLATES.keySet());

    /// LLaMA-Factory templates whose encoding is code of their own rather than slots, refused with a reason.
    static final java.util.Map<String, String> NOT_SLOTS = java.util.Map.of("moss_vl",
            "LLaMA-Factory's MOSS-VL template, whose multimodal encoding is its own code; peft4j trains text models only");

    /// The templates as registered in LLaMA-Factory `data/template.py` (`register_template(name=...)`, with
    /// `register_template`'s defaults filled in by the registry itself).
    public static SlotTemplate named(String name) {
        SlotTemplate t = Table.TEMPLATES.get(name);
        if (t != null) return t;
        if (NOT_SLOTS.containsKey(name)) throw new ConfigException("template '" + name + "' is " + NOT_SLOTS.get(name));
        throw new ConfigException("template '" + name + "' is not known; peft4j has LLaMA-Factory's " + String.join(", ", NAMES)
                + "; or leave `template` unset to use the model's own chat template (empty when the model has none), or set template: model");
    }

    /// Whether LLaMA-Factory registers `name` with a multimodal plugin (its text format applies to text rows).
    public static boolean multimodal(String name) { return Table.MULTIMODAL.contains(name); }

    /// LLaMA-Factory `enable_thinking:` (reasoning templates only; others are returned as they are).
    public SlotTemplate withEnableThinking(boolean enable) {
        if (thinking.kind() == Thinking.Kind.NONE) return this;
        return new SlotTemplate(name, user, assistant, system, function, observation, prefix, defaultSystem, stopWords,
                efficientEos, replaceEos, fuseSystem, toolFormat, new Thinking(thinking.kind(), thinking.open(), thinking.close(), enable));
    }

    /// The table read once from `llamafactory-templates.json`.
    private static final class Table {
        static final java.util.Map<String, SlotTemplate> TEMPLATES = new java.util.LinkedHashMap<>();
        static final java.util.Set<String> MULTIMODAL = new java.util.HashSet<>();

        static {
            try (var in = SlotTemplate.class.getResourceAsStream("llamafactory-templates.json")) {
                var root = new com.fasterxml.jackson.databind.ObjectMapper().readTree(in).get("templates");
                for (var it = root.fields(); it.hasNext(); ) {
                    var e = it.next();
                    var t = e.getValue();
                    Thinking thinking = switch (t.get("class").asText()) {
                        case "ReasoningTemplate" -> thinking(Thinking.Kind.REASONING, t);
                        case "Glm47ReasoningTemplate" -> thinking(Thinking.Kind.GLM47, t);
                        default -> Thinking.NONE;
                    };
                    List<String> stops = new ArrayList<>();
                    t.get("stop_words").forEach(x -> stops.add(x.asText()));
                    TEMPLATES.put(e.getKey(), new SlotTemplate(e.getKey(), slots(t.get("user")), slots(t.get("assistant")), slots(t.get("system")),
                            slots(t.get("function")), slots(t.get("observation")), slots(t.get("prefix")), t.get("default_system").asText(),
                            stops, t.get("efficient_eos").asBoolean(), t.get("replace_eos").asBoolean(),
                            t.get("class").asText().equals("Llama2Template"), t.get("tool_format").asText(), thinking));
                    if (t.get("multimodal").asBoolean()) MULTIMODAL.add(e.getKey());
                }
            } catch (java.io.IOException | NullPointerException e) {
                throw new IllegalStateException("the template table llamafactory-templates.json is missing or broken", e);
            }
        }

        private static Thinking thinking(Thinking.Kind kind, com.fasterxml.jackson.databind.JsonNode t) {
            var w = t.get("thought_words");
            return new Thinking(kind, w.get(0).asText(), w.get(1).asText(), true);
        }

        private static List<Slot> slots(com.fasterxml.jackson.databind.JsonNode arr) {
            List<Slot> out = new ArrayList<>();
            for (var x : arr) {
                if (x.isTextual()) out.add(text(x.asText()));
                else if (x.has("token")) out.add(new Token(x.get("token").asText()));
                else out.add(x.get("special").asText().equals("bos_token") ? BOS : EOS);
            }
            return out;
        }
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
                efficientEos, replaceEos, fuseSystem, toolFormat, thinking);
    }

    /// LLaMA-Factory `tool_format:` override: also resets the function slots to `{{content}}` (+ EOS unless efficient_eos).
    public SlotTemplate withToolFormat(String toolFormat) {
        List<Slot> fn = efficientEos ? List.of(text("{{content}}")) : List.of(text("{{content}}"), EOS);
        return new SlotTemplate(name, user, assistant, system, fn, observation, prefix, defaultSystem, stopWords,
                efficientEos, replaceEos, fuseSystem, toolFormat, thinking);
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

    /// This template as a Jinja chat template (null for templates with token slots, for which LLaMA-Factory writes none), as LLaMA-Factory writes it into the tokenizer it saves when the model has
    /// none (`_get_jinja_template`; the fused-system form for llama2-style templates): prefix, the system message (the
    /// conversation's or the default), then each user and assistant message through its slots. BOS/EOS slots become
    /// the tokenizer's tokens (`bosToken`/`eosToken`, left out when null); tools and observations are not rendered.
    public String jinja(String bosToken, String eosToken) {
        if (Stream.of(prefix, system, user, assistant).flatMap(List::stream).anyMatch(x -> x instanceof Token)) return null;
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
                case Token t -> throw new IllegalStateException("LLaMA-Factory writes no Jinja for token slots");
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
                    case Token t -> sb.append(t.token());
                }
        return sb.toString();
    }

    /// LLaMA-Factory `encode_multiturn` (`ReasoningTemplate`'s for reasoning templates: with enable_thinking false the
    /// thoughts are cut from the answers and the empty thought closes each prompt; with it true an answer without a
    /// thought gets the empty thought at its start, trained).
    @Override public List<EncodedTurn> encodeMultiturn(TextEncoder encoder, Conversation c) {
        boolean reasoning = thinking.kind() != Thinking.Kind.NONE;
        if (reasoning && !thinking.enable()) {
            List<Message> ms = new ArrayList<>(c.messages());
            for (int i = 1; i < ms.size(); i += 2) ms.set(i, new Message(ms.get(i).role(), thinking.remove(ms.get(i).content())));
            c = new Conversation(c.system(), c.tools(), ms);
        }
        List<List<Slot>> elements = elements(c);
        List<EncodedTurn> turns = new ArrayList<>(elements.size() / 2);
        for (int i = 0; i < elements.size(); i += 2) {
            int[] prompt = ids(encoder, elements.get(i)), response = ids(encoder, elements.get(i + 1));
            if (reasoning && !thinking.hasThought(c.messages().get(i + 1).content())) {
                int[] thought = encoder.encode(thinking.empty());
                if (thinking.enable()) response = concat(thought, response);
                else prompt = concat(prompt, thought);
            }
            turns.add(new EncodedTurn(prompt, response));
        }
        return turns;
    }

    private static int[] concat(int[] a, int[] b) {
        int[] out = java.util.Arrays.copyOf(a, a.length + b.length);
        System.arraycopy(b, 0, out, a.length, b.length);
        return out;
    }

    /// `_convert_elements_to_ids`: each non-empty text slot encoded alone, BOS only when the tokenizer has one, a token
    /// slot by its vocabulary id.
    private int[] ids(TextEncoder encoder, List<Slot> slots) {
        IntArray out = new IntArray();
        for (Slot s : slots)
            switch (s) {
                case Text t -> { if (!t.text().isEmpty()) out.addAll(encoder.encode(t.text())); }
                case Bos b -> { if (encoder.bosId() >= 0) out.add(encoder.bosId()); }
                case Eos x -> out.add(eosId(encoder));
                case Token t -> {
                    int id = encoder.tokenId(t.token());
                    if (id < 0) throw new ConfigException("template '" + name + "' needs the token " + t.token() + ", which the tokenizer does not have; "
                            + "choose a template that matches the model");
                    out.add(id);
                }
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
