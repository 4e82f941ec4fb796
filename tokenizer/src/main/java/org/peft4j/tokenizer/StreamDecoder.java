package org.peft4j.tokenizer;

import java.util.Arrays;

/// Turns ids pushed one at a time into text pieces, for streaming generation. The pieces of a continuation add up to
/// `decode(prompt + ids)` minus `decode(prompt)`, as transformers' `TextStreamer(skip_prompt=True)` and llama.cpp print
/// it: the prompt given to [#prefill] is the context, so a SentencePiece decoder strips the leading space of the
/// sequence's first word only, never of the continuation's ("Once there was a cat" + " named" keeps its space).
/// A piece is released only once it is complete: a character split across byte tokens waits for its last byte.
/// Reference: HF tokenizers `DecodeStream` (decode a short window of recent ids, emit what grew beyond the window's
/// previous text), vLLM's incremental detokenizer (the window starts inside the prompt).
public final class StreamDecoder {
    /// Prompt ids kept as the first window; more are taken when these alone could decode differently (see [#prefill]).
    static final int PROMPT_CONTEXT = 6;

    private final Tokenizer tokenizer;
    private final boolean skipSpecial;
    private int[] ids = new int[16]; // (capacity) ids[0 .. n): the window, context then ids not yet released
    private int n;
    private int prefixIndex;         // ids[0 .. prefixIndex) is context already released (or the prompt)
    private String prefix = "";      // decode of ids[0 .. prefixIndex)
    private boolean started;

    StreamDecoder(Tokenizer tokenizer, boolean skipSpecial) {
        this.tokenizer = tokenizer;
        this.skipSpecial = skipSpecial;
    }

    /// Makes the end of `prompt` the context of what is pushed next; call it once, before the first [#push].
    /// The window starts [#PROMPT_CONTEXT] ids from the end, moved earlier while it could decode differently from the
    /// same ids inside the whole prompt: while it decodes to "" (a leading-space strip would then reach the
    /// continuation), starts with U+FFFD (inside a character) or starts inside a run of byte tokens.
    public StreamDecoder prefill(int[] prompt) {
        if (started) throw new IllegalStateException("prefill must come before the first push");
        started = true;
        int start = Math.max(0, prompt.length - PROMPT_CONTEXT);
        String text = tokenizer.decode(Arrays.copyOfRange(prompt, start, prompt.length), skipSpecial);
        while (start > 0 && (text.isEmpty() || text.charAt(0) == '\uFFFD' || isByte(prompt[start]) && isByte(prompt[start - 1]))) {
            start--;
            text = tokenizer.decode(Arrays.copyOfRange(prompt, start, prompt.length), skipSpecial);
        }
        for (int i = start; i < prompt.length; i++) append(prompt[i]);
        prefixIndex = n;
        prefix = text;
        return this;
    }

    /// The text completed by `id`, or "" while it is pending (an incomplete UTF-8 character, a skipped special token).
    public String push(int id) {
        started = true;
        append(id);
        String text = tokenizer.decode(Arrays.copyOf(ids, n), skipSpecial);
        if (text.length() <= prefix.length() || text.endsWith("\uFFFD")) return "";
        return release(text);
    }

    /// What is still held back at the end of generation (an incomplete character, decoded as U+FFFD as the whole
    /// sequence decodes it), or "". The stream can be pushed to again afterwards.
    public String flush() {
        String text = tokenizer.decode(Arrays.copyOf(ids, n), skipSpecial);
        return text.length() <= prefix.length() ? "" : release(text);
    }

    /// Emits what `text` (the window's decode) has beyond the prefix; the ids just released become the next window.
    /// A byte-fallback run that turns invalid changes text already released (HF's DecodeStream fails there); like
    /// transformers' TextStreamer this goes on by length, so the stream continues and keeps the right length.
    private String release(String text) {
        String fresh = text.substring(prefix.length());
        int released = n - prefixIndex;
        System.arraycopy(ids, prefixIndex, ids, 0, released);
        n = released;
        prefixIndex = released;
        prefix = tokenizer.decode(Arrays.copyOf(ids, n), skipSpecial);
        return fresh;
    }

    private void append(int id) {
        if (n == ids.length) ids = Arrays.copyOf(ids, 2 * n);
        ids[n++] = id;
    }

    /// A byte-fallback token (`<0xAB>`), decoded together with its neighbours of the same kind.
    private boolean isByte(int id) {
        String t = tokenizer.idToToken(id);
        return t != null && t.length() == 6 && t.startsWith("<0x") && t.charAt(5) == '>';
    }
}
