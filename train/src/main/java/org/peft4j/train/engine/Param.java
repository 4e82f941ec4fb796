package org.peft4j.train.engine;

/// A trainable tensor and its gradient (same length). `name` is the Hugging Face / PEFT tensor name.
public record Param(String name, long[] shape, float[] data, float[] grad) {
    public Param {
        if (data.length != grad.length) throw new IllegalArgumentException(name + ": grad length " + grad.length + " != data " + data.length);
    }
}
