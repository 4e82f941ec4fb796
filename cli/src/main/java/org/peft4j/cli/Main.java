package org.peft4j.cli;

import org.peft4j.core.Peft4jException;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

import java.io.PrintWriter;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.function.Supplier;

/// peft4j's command line: a thin layer over the library. Results go to stdout; logs and progress to stderr.
/// Exit codes: 0 success, 1 a reported error (bad input, unsupported model), 2 usage error, 3 internal error.
@Command(name = "peft4j", mixinStandardHelpOptions = true, version = "peft4j 0.1.0",
        description = "Fine-tune and run Llama-family language models on the JVM.")
public final class Main implements Runnable {
    /// The subcommands by name, in help order. Only the one a command line names is built (picocli reads each
    /// command's options by reflection: building all of them took most of a second of every start); the root's help,
    /// `help` and unknown names get them all.
    private static final Map<String, Supplier<Object>> COMMANDS = new LinkedHashMap<>();
    static {
        COMMANDS.put("generate", GenerateCommand::new);
        COMMANDS.put("chat", ChatCommand::new);
        COMMANDS.put("tokenize", TokenizeCommand::new);
        COMMANDS.put("inspect", InspectCommand::new);
        COMMANDS.put("init-random", InitRandomCommand::new);
        COMMANDS.put("train", TrainCommand::new);
        COMMANDS.put("eval", EvalCommand::new);
        COMMANDS.put("export", ExportCommand::new);
        COMMANDS.put("export-adapter", ExportAdapterCommand::new);
        COMMANDS.put("estimate", EstimateCommand::new);
        COMMANDS.put("quantize", QuantizeCommand::new);
        COMMANDS.put("serve", ServeCommand::new);
        COMMANDS.put("webui", WebuiCommand::new);
        COMMANDS.put("bench", BenchCommand::new);
        COMMANDS.put("help", CommandLine.HelpCommand::new);
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
        if (named != null && !named.equals("help") && COMMANDS.containsKey(named)) cl.addSubcommand(named, COMMANDS.get(named).get());
        else for (var e : COMMANDS.entrySet()) cl.addSubcommand(e.getKey(), e.getValue().get());
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
