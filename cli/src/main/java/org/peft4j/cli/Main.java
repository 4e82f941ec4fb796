package org.peft4j.cli;

import org.peft4j.core.Peft4jException;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

import java.io.PrintWriter;

/// peft4j's command line: a thin layer over the library. Results go to stdout; logs and progress to stderr.
/// Exit codes: 0 success, 1 a reported error (bad input, unsupported model), 2 usage error, 3 internal error.
@Command(name = "peft4j", mixinStandardHelpOptions = true, version = "peft4j 0.1.0",
        description = "Fine-tune and run Llama-family language models on the JVM.")
public final class Main implements Runnable {
    /// The subcommands' names, in help order. Only the one a command line names is built (picocli reads each
    /// command's options by reflection: building all of them took most of a second of every start); the root's help,
    /// `help` and unknown names get them all.
    private static final java.util.List<String> COMMANDS = java.util.List.of("generate", "chat", "tokenize", "inspect",
            "init-random", "train", "eval", "export", "export-adapter", "estimate", "quantize", "serve", "webui", "bench", "help");

    /// A new subcommand object. A switch, not a map of constructor references: each reference is a class the JVM
    /// spins at start-up (the AOT cache keeps no lambda classes while the module graph is not archived, which
    /// `--add-modules jdk.incubator.vector` prevents), about 3 ms apiece in a cold JVM.
    private static Object command(String name) {
        return switch (name) {
            case "generate" -> new GenerateCommand();
            case "chat" -> new ChatCommand();
            case "tokenize" -> new TokenizeCommand();
            case "inspect" -> new InspectCommand();
            case "init-random" -> new InitRandomCommand();
            case "train" -> new TrainCommand();
            case "eval" -> new EvalCommand();
            case "export" -> new ExportCommand();
            case "export-adapter" -> new ExportAdapterCommand();
            case "estimate" -> new EstimateCommand();
            case "quantize" -> new QuantizeCommand();
            case "serve" -> new ServeCommand();
            case "webui" -> new WebuiCommand();
            case "bench" -> new BenchCommand();
            case "help" -> new CommandLine.HelpCommand();
            default -> throw new IllegalArgumentException("no command " + name);
        };
    }

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
        String named = null;
        for (String a : args) if (!a.startsWith("-")) { named = a; break; }
        if (named != null && !named.equals("help") && COMMANDS.contains(named)) cl.addSubcommand(named, command(named));
        else for (String name : COMMANDS) cl.addSubcommand(name, command(name));
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
