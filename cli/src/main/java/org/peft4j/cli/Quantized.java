package org.peft4j.cli;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;

/// Whether a model folder holds a bitsandbytes 4-bit checkpoint (its config.json has a `quantization_config`).
final class Quantized {
    private Quantized() {}

    static boolean isQuantized(Path dir) {
        Path c = dir.resolve("config.json");
        try {
            return Files.isRegularFile(c) && Files.readString(c).contains("\"quantization_config\"");
        } catch (IOException e) {
            return false;
        }
    }
}
