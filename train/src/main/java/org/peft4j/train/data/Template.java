package org.peft4j.train.data;

import java.util.List;
import java.util.function.Function;

/// A chat template that turns a [Conversation] into (prompt ids, response ids) per turn, as LLaMA-Factory's
/// `Template.encode_multiturn`. Either one of LLaMA-Factory's named templates ([SlotTemplate]) or the model's own
/// chat template given as a renderer ([RendererTemplate]).
public sealed interface Template permits SlotTemplate, RendererTemplate {
    String name();

    /// One [EncodedTurn] per (prompt, response) pair of the conversation, in order.
    List<EncodedTurn> encodeMultiturn(TextEncoder encoder, Conversation conversation);

    /// LLaMA-Factory `efficient_eos`: the EOS is not part of each response but trained at the start of the next prompt
    /// and appended once at the end.
    boolean efficientEos();

    /// The EOS id LLaMA-Factory uses with this template: the first stop word when the template replaces the EOS
    /// (`replace_eos`, e.g. `<|im_end|>` for chatml/qwen), else the tokenizer's.
    int eosId(TextEncoder encoder);

    /// LLaMA-Factory's template of this name (`template:` in the YAML).
    static SlotTemplate named(String name) { return SlotTemplate.named(name); }

    /// The model's own chat template, given as a function from messages (a SYSTEM message first when the conversation
    /// has a system prompt) to the rendered text without a generation prompt, e.g. the tokenizer module's Jinja renderer.
    static Template fromRenderer(String name, Function<List<Message>, String> renderer) {
        return new RendererTemplate(name, renderer);
    }
}
