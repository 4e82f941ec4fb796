package org.peft4j.cli;

import org.peft4j.core.Peft4jException;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

import java.io.PrintWriter;

/// peft4j's command line: a thin layer over the library. Results go to stdout; logs and progress to stderr.
/// Exit codes: 0 success, 1 a reported error (bad input, unsupported model), 2 usage error, 3 internal error.
@Command(name = "peft4j", mixinStandardHelpOptions = true, version = "peft4j 0.1.0",
        description = "Fine-tune and run Llama-family language models on the JVM.",
        subcommands = {
                GenerateCommand.class, ChatCommand.class, TokenizeCommand.class, InspectCommand.class,
                InitRandomCommand.class, TrainCommand.class, EvalCommand.class, ExportCommand.class, EstimateCommand.class, QuantizeCommand.class, ServeCommand.class, WebuiCommand.class, BenchCommand.class, CommandLine.HelpCommand.class})
public final class Main implements Runnable {
    @Option(names = "--verbose", scope = CommandLine.ScopeType.INHERIT, description = "Show stack traces on errors.")
    static boolean verbose;

    @Override
    public void run() { new CommandLine(this).usage(System.err); }

    public static void main(String[] args) {
        configureLogging(java.util.Arrays.asList(args).contains("--verbose"));
        System.exit(run(args));
    }

    /// Library logs (System.Logger → java.util.logging) go to stderr as one short line; INFO only with --verbose.
    static void configureLogging(boolean verbose) {
        System.setProperty("java.util.logging.SimpleFormatter.format", "peft4j: %4$s: %5$s%6$s%n");
        java.util.logging.Logger root = java.util.logging.Logger.getLogger("");
        for (var h : root.getHandlers()) root.removeHandler(h);
        var handler = new java.util.logging.ConsoleHandler();
        handler.setFormatter(new java.util.logging.SimpleFormatter());
        java.util.logging.Level level = verbose ? java.util.logging.Level.INFO : java.util.logging.Level.WARNING;
        handler.setLevel(level);
        root.setLevel(level);
        root.addHandler(handler);
    }

    /// Runs the CLI and returns its exit code (used by tests).
    public static int run(String... args) {
        CommandLine cl = new CommandLine(new Main());
        cl.setExecutionExceptionHandler((ex, cmd, parsed) -> {
            PrintWriter err = cmd.getErr();
            if (ex instanceof Peft4jException) {
                err.println("error: " + ex.getMessage());
                if (verbose) ex.printStackTrace(err);
                err.flush();
                return 1;
            }
            if (ex instanceof java.io.UncheckedIOException || ex instanceof java.io.IOException) {
                err.println("error: " + ex.getMessage());
                if (verbose) ex.printStackTrace(err);
                err.flush();
                return 1;
            }
            err.println("internal error: " + ex);
            ex.printStackTrace(err);
            err.println("This is a bug in peft4j; please report it with the command line above.");
            err.flush();
            return 3;
        });
        cl.setCaseInsensitiveEnumValuesAllowed(true);
        try {
            String[] expanded = LlamaFactoryYaml.expand(args, System.err);
            if (expanded != args) cl.setOverwrittenOptionsAllowed(true);   // the command line's flags override the YAML's
            args = expanded;
        } catch (Peft4jException e) {
            System.err.println("error: " + e.getMessage());
            return 1;
        }
        return cl.execute(args);
    }
}
