package org.peft4j.cli;

import org.peft4j.model.adapter.LoadedAdapter;

import java.nio.file.Path;

/// `--adapter DIR`: reads a PEFT LoRA/DoRA adapter, checked against the session's model. It runs unmerged, as a value
/// passed with each request (the base weights stay as stored, also when they are 16- or 4-bit), so `generate` and
/// `chat` give what the server gives for the same adapter.
final class Adapters {
    private Adapters() {}

    static LoadedAdapter read(Session s, Path dir) {
        Path name = dir.toAbsolutePath().normalize().getFileName();
        return LoadedAdapter.read(name == null ? "adapter" : name.toString(), dir, s.model.config);
    }
}
