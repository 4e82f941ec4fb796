/// Generation at the text level, shared by the CLI (`generate`, `chat`), the web board and the server, over the
/// model module's batching [org.peft4j.model.generate.Generator], in the order a request runs:
///
/// 1. [org.peft4j.train.generate.ChatPrompt] turns messages into prompt ids: the model's Jinja chat template, one of
///    LLaMA-Factory's named templates (as in training), or a plain `User:`/`Assistant:` format; it also names the stop
///    strings and stop ids the format needs.
/// 2. The generator produces ids; a [org.peft4j.train.generate.TextStream] attached to a sequence turns them into text
///    pieces as they come: decode(prompt + ids) minus decode(prompt), as transformers' TextStreamer and llama.cpp print
///    it (the tokenizer's `StreamDecoder` primed with the prompt).
/// 3. [org.peft4j.train.generate.StopStrings] holds back text that could begin a stop string and cuts the text before
///    the first one, which ends the sequence.
/// 4. The outcome is a [org.peft4j.train.generate.Completion]: the text, the ids, and why it ended.
package org.peft4j.train.generate;
