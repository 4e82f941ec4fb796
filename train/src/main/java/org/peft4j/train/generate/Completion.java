package org.peft4j.train.generate;

import org.peft4j.model.generate.Generator;

/// What a generated sequence came to.
///
/// @param text   the continuation as streamed: decode(prompt + tokens) minus decode(prompt), special tokens left out,
///               cut before the stop string that ended it
/// @param tokens every generated id, those that spelled a stop string included (the stop id that ended it excluded)
/// @param finish why generation ended; CALLBACK when a stop string ended it
/// @param stop   the stop string that ended it, or null
public record Completion(String text, int[] tokens, Generator.Finish finish, String stop) {
    /// OpenAI's `finish_reason`: "length" when maxNewTokens or the context ended it, else "stop".
    public String finishReason() {
        return switch (finish) {
            case LENGTH, CONTEXT_FULL -> "length";
            case STOP_ID, CALLBACK, CANCELLED -> "stop";
        };
    }
}
