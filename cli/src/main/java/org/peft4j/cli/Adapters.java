package org.peft4j.cli;

import java.nio.file.Path;

/// `--adapter DIR`: loads a PEFT LoRA/DoRA adapter (validated against the model) and merges it into the session's
/// private weights, so that generation runs at the base model's speed.
final class Adapters {
    private Adapters() {}

    static void apply(Session s, Path dir) {
        s.model.loadAdapter("adapter", dir);
        s.model.merge("adapter");
    }
}
