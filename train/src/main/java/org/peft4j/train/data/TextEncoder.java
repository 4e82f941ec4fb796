package org.peft4j.train.data;

/// What the data pipeline needs from a tokenizer: text to ids without added special tokens (HF
/// `encode(text, add_special_tokens=False)`), the BOS/EOS ids, and the id of a named token. The tokenizer
/// module's `Tokenizer` is adapted to this by the caller, so this package does not depend on it.
public interface TextEncoder {
    /// Ids of `text` with no BOS/EOS added.
    int[] encode(String text);

    /// The BOS id, or -1 when the tokenizer has none (then `{"bos_token"}` slots add nothing, as in LLaMA-Factory).
    int bosId();

    /// The EOS id; never -1 (LLaMA-Factory adds `<|endoftext|>` when a tokenizer lacks one, which we cannot).
    int eosId();

    /// The id of a token given by its text (a special token such as `<|im_end|>`), or -1 when it is not in the vocabulary.
    int tokenId(String token);
}
