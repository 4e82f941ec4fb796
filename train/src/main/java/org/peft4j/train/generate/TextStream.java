package org.peft4j.train.generate;

import org.peft4j.model.generate.GenerateRequest;
import org.peft4j.model.generate.Generator;
import org.peft4j.model.llama.LlamaModel;
import org.peft4j.tokenizer.StreamDecoder;
import org.peft4j.tokenizer.Tokenizer;

import java.util.List;

/// The text of one generated sequence, as it comes: attached to a sequence of a [Generator] as its listener, it
/// turns ids into pieces that add up to decode(prompt + ids) minus decode(prompt) (special tokens left out, a
/// character split across tokens released whole), holds back what could begin a stop string, and ends the sequence
/// at the first one. Reference: transformers `TextStreamer(skip_prompt=True)` with `stop_strings`.
public final class TextStream implements Generator.TokenListener {
    /// Receives the text pieces in order, then the outcome. Called on the generator's stepping thread.
    public interface Listener {
        void onText(String piece);

        default void onFinish(Completion completion) {}
    }

    private final StreamDecoder decoder;
    private final StopStrings stops;
    private final Listener listener;
    private volatile Completion completion;

    /// `prompt`: the ids the sequence continues (the stream's context).   `listener`: or null to only collect.
    public TextStream(Tokenizer tokenizer, int[] prompt, List<String> stops, Listener listener) {
        this.decoder = tokenizer.streamDecoder(true).prefill(prompt);
        this.stops = new StopStrings(stops);
        this.listener = listener;
    }

    /// One sequence, blocking: [Generator#generate(LlamaModel, GenerateRequest, Generator.TokenListener)] with its
    /// text streamed to `listener` (or null).
    public static Completion complete(LlamaModel model, Tokenizer tokenizer, GenerateRequest request, List<String> stops,
                                      Listener listener) {
        TextStream s = new TextStream(tokenizer, request.prompt(), stops, listener);
        Generator.generate(model, request, s);
        return s.completion();
    }

    @Override
    public boolean onToken(int id) {
        emit(stops.push(decoder.push(id)));
        return !stops.stopped();
    }

    @Override
    public void onFinish(Generator.Result result) {
        if (!stops.stopped()) emit(stops.push(decoder.flush()));
        if (!stops.stopped()) emit(stops.flush());
        completion = new Completion(stops.text(), result.tokens(), result.finish(), stops.matched());
        if (listener != null) listener.onFinish(completion);
    }

    /// The outcome, or null until the sequence has ended.
    public Completion completion() { return completion; }

    private void emit(String piece) {
        if (!piece.isEmpty() && listener != null) listener.onText(piece);
    }
}
