package org.peft4j.board;

import org.peft4j.core.Peft4jException.ConfigException;

import java.nio.file.Path;
import java.util.List;
import java.util.function.Function;

/// The board's settings, read once by `peft4j webui` or built by a test.
///
/// @param host   the address to bind (default loopback: this machine only)
/// @param port   the port, 0 for any free one
/// @param saves  the runs folder: output_dir, adapters, saved arguments and exports are paths inside it
/// @param data   the datasets folder: dataset_dir and forgetting_text are paths inside it
/// @param models folders model_name_or_path may name models in (the saves folder counts too: merged exports)
/// @param defaultModel the model the form starts with (a folder inside `models`)
/// @param hub    turns a Hugging Face repo id (`org/name`) into a local folder (the CLI downloads into the Hub cache);
///               null to refuse repo ids
/// @param gemm   the matrix-product backend for chat, evaluation and export (training takes the `gemm` key)
public record BoardConfig(String host, int port, Path saves, Path data, List<Path> models, Path defaultModel,
                          Function<String, Path> hub, String gemm) {
    public BoardConfig {
        if (port < 0 || port > 65535) throw new ConfigException("--port must be in [0, 65535], got " + port);
        saves = saves.toAbsolutePath().normalize();
        data = data.toAbsolutePath().normalize();
        models = models.stream().map(p -> p.toAbsolutePath().normalize()).toList();
        defaultModel = defaultModel == null ? null : defaultModel.toAbsolutePath().normalize();
    }
}
