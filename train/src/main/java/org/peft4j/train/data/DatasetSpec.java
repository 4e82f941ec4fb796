package org.peft4j.train.data;

import java.nio.file.Path;

/// One entry of LLaMA-Factory's `dataset_info.json` (its `parser.DatasetAttr`), with the same defaults.
/// `file` is null for hub-only datasets (`hf_hub_url`, `ms_hub_url`, …), which peft4j cannot download.
public record DatasetSpec(String name, Path file, Formatting formatting, boolean ranking, Integer numSamples,
                          Columns columns, Tags tags) {

    public enum Formatting { ALPACA, SHAREGPT, OPENAI }

    /// Column names; null means the column is not used. Defaults as `DatasetAttr`: prompt=instruction,
    /// query=input, response=output, messages=conversations; the others are unset.
    public record Columns(String prompt, String query, String response, String history, String messages,
                          String system, String tools, String chosen, String rejected, String ktoTag,
                          String images, String videos, String audios) {
        public static final Columns DEFAULT = new Columns("instruction", "input", "output", null, "conversations",
                null, null, null, null, null, null, null, null);
    }

    /// ShareGPT tags: the keys of a message and the values of its role key.
    public record Tags(String roleTag, String contentTag, String userTag, String assistantTag,
                       String observationTag, String functionTag, String systemTag) {
        public static final Tags DEFAULT = new Tags("from", "value", "human", "gpt", "observation", "function_call", "system");
    }
}
