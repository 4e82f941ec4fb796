package org.peft4j.cli;

import org.peft4j.board.Board;
import org.peft4j.board.BoardConfig;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.Callable;
import java.util.concurrent.CountDownLatch;

/// `peft4j webui`: the web board (see [Board]) — configure, run, watch, evaluate, chat and export in a browser.
@Command(name = "webui", mixinStandardHelpOptions = true,
        description = "The web board: train, watch runs, evaluate, chat and export in a browser (http://127.0.0.1:7860).")
final class WebuiCommand implements Callable<Integer> {
    @Option(names = "--host", defaultValue = "127.0.0.1", description = "Address to bind (default: ${DEFAULT-VALUE}, this machine only).")
    String host;

    @Option(names = "--port", defaultValue = "7860", description = "Port (default: ${DEFAULT-VALUE}; 0 = any free port).")
    int port;

    @Option(names = "--saves", defaultValue = "saves", paramLabel = "DIR", description = "Runs, adapters, saved arguments and exports live here (default: ${DEFAULT-VALUE}).")
    Path saves;

    @Option(names = "--data", defaultValue = "data", paramLabel = "DIR", description = "Datasets (dataset_info.json) and text files (default: ${DEFAULT-VALUE}).")
    Path data;

    @Option(names = "--models", paramLabel = "DIR", description = "A folder of model folders the page may pick from (repeatable; default: the bundled models folder).")
    List<Path> models = new ArrayList<>();

    @Option(names = "--gemm", paramLabel = "MODE", defaultValue = "auto", description = "Matrix products for chat, evaluation and export (default: ${DEFAULT-VALUE}).")
    String gemm;

    @Override
    public Integer call() throws InterruptedException {
        Path bundled = ModelOptions.defaultModel();
        List<Path> roots = models.isEmpty() ? List.of(bundled.getParent()) : models;
        Board board = Board.start(new BoardConfig(host, port, saves, data, roots, models.isEmpty() ? bundled : null, ModelResolver::resolve, gemm));
        Runtime.getRuntime().addShutdownHook(new Thread(board::close));
        System.err.printf("peft4j webui: http://%s:%d/ (saves %s, data %s, models %s)%n", host.contains(":") ? "[" + host + "]" : host, board.port(),
                saves.toAbsolutePath().normalize(), data.toAbsolutePath().normalize(), roots);
        new CountDownLatch(1).await();
        return 0;
    }
}
