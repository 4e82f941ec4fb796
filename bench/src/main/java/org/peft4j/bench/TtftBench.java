package org.peft4j.bench;

import org.peft4j.core.Peft4jException.ConfigException;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/// Time to first token from the shell: the wall time of `peft4j generate --prompt "Once upon a time"
/// --max-new-tokens 1` (JVM start, command line, model and tokenizer load, the first forward, exit), run as a new
/// process through the launcher, as a user types it. One untimed run first (it builds the CLI and the start-up cache
/// when sources changed), then `runs` timed ones: median and best. Then one more run with the JVM's class-loading log
/// (`-Xlog:class+load`, uptime stamps), whose first loads of a few classes mark the phases: the JVM up to peft4j's
/// `Main`, the command line up to the model load, the model load (weights; the tokenizer loads meanwhile on its own
/// thread) up to the generator, the prompt's encode and the first forward up to the completion, and the exit (the
/// rest of the wall time). That run's log adds a little to each phase.
public final class TtftBench {
    private TtftBench() {}

    /// Phase boundaries: the first load of each class (in this order) ends the phase named before it.
    private static final String[][] MARKS = {
            {"JVM start", "org.peft4j.cli.Main"},
            {"command line", "org.peft4j.model.Models"},
            {"model load (tokenizer in parallel)", "org.peft4j.model.generate.Generator"},
            {"encode + first forward", "org.peft4j.train.generate.Completion"},
    };

    public record Result(String what, double medianSeconds, double bestSeconds, Map<String, Double> phases) {}

    /// Times the bundled model, and the model folder `model` too when not null. `home`: the peft4j checkout (its
    /// `peft4j` launcher).
    public static List<Result> run(Path home, Path model, int runs) {
        if (runs < 1) throw new ConfigException("--runs must be >= 1, got " + runs);
        Path launcher = home.resolve("peft4j");
        if (!Files.isExecutable(launcher))
            throw new ConfigException("bench ttft runs " + launcher + ", which is missing or not executable; run it from a peft4j checkout (peft4j.home=" + home + ")");
        if (model != null && !Files.isDirectory(model))
            throw new ConfigException("--smollm2 " + model + " is not a model folder; write one with `peft4j init-random --config smollm2-135m --out DIR` and copy a tokenizer.json into it");
        List<Result> out = new ArrayList<>();
        out.add(one("bundled", launcher, null, runs));
        if (model != null) out.add(one(model.toString(), launcher, model, runs));
        return out;
    }

    private static Result one(String what, Path launcher, Path model, int runs) {
        List<String> cmd = new ArrayList<>(List.of(launcher.toString(), "generate", "--prompt", "Once upon a time", "--max-new-tokens", "1"));
        if (model != null) cmd.addAll(List.of("--model", model.toString()));
        wall(cmd, null);   // builds when needed, fills the page cache
        double[] t = new double[runs];
        for (int i = 0; i < runs; i++) t[i] = wall(cmd, null);
        Path log;
        try { log = Files.createTempFile("peft4j-ttft", ".log"); } catch (IOException e) { throw new java.io.UncheckedIOException(e); }
        try {
            double total = wall(cmd, "-Xlog:class+load:file=" + log + ":uptime");
            return new Result(what, GenerateBench.median(t), java.util.Arrays.stream(t).min().orElseThrow(), phases(Files.readAllLines(log), total));
        } catch (IOException e) {
            throw new java.io.UncheckedIOException(e);
        } finally {
            try { Files.deleteIfExists(log); } catch (IOException ignored) { }
        }
    }

    private static final Pattern LINE = Pattern.compile("^\\[([0-9.]+)s\\].*? ([\\w.$]+) source:");

    /// Seconds per phase from a class-load log with uptime stamps; a phase whose marker never loaded is left out
    /// (its time goes to the next one); "exit" is the wall time after the last marker.
    static Map<String, Double> phases(List<String> log, double wallSeconds) {
        Map<String, Double> first = new LinkedHashMap<>();
        for (String line : log) {
            Matcher m = LINE.matcher(line);
            if (m.find()) first.putIfAbsent(m.group(2), Double.parseDouble(m.group(1)));
        }
        Map<String, Double> phases = new LinkedHashMap<>();
        double prev = 0;
        for (String[] mark : MARKS) {
            Double at = first.get(mark[1]);
            if (at == null) continue;
            phases.put(mark[0], at - prev);
            prev = at;
        }
        phases.put("exit (and process start)", Math.max(0, wallSeconds - prev));
        return phases;
    }

    /// Wall seconds of one run of `cmd` (output discarded; a failure throws with its output's end).
    private static double wall(List<String> cmd, String extraJavaOpts) {
        ProcessBuilder pb = new ProcessBuilder(cmd).redirectErrorStream(true);
        if (extraJavaOpts != null) {
            String opts = pb.environment().getOrDefault("PEFT4J_JAVA_OPTS", "");
            pb.environment().put("PEFT4J_JAVA_OPTS", (opts + " " + extraJavaOpts).trim());
        }
        try {
            long t0 = System.nanoTime();
            Process p = pb.start();
            byte[] output = p.getInputStream().readAllBytes();
            int rc = p.waitFor();
            double s = (System.nanoTime() - t0) * 1e-9;
            if (rc != 0) {
                String o = new String(output, java.nio.charset.StandardCharsets.UTF_8);
                throw new IllegalStateException(String.join(" ", cmd) + " exited with " + rc + ": " + o.substring(Math.max(0, o.length() - 2000)));
            }
            return s;
        } catch (IOException e) {
            throw new java.io.UncheckedIOException(e);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IllegalStateException("interrupted", e);
        }
    }

    /// The report: per model, median and best wall time, then the phase split of the logged run.
    public static String report(List<Result> results, int runs) {
        StringBuilder sb = new StringBuilder();
        for (Result r : results) {
            sb.append(String.format("%s: time to first token from the shell, %d runs: median %.3f s, best %.3f s%n", r.what(), runs, r.medianSeconds(), r.bestSeconds()));
            sb.append("  phases (one run with -Xlog:class+load):");
            r.phases().forEach((k, v) -> sb.append(String.format(" %s %.3f s;", k, v)));
            sb.setLength(sb.length() - 1);
            sb.append(System.lineSeparator());
        }
        sb.append(String.format("load average now: %.2f on %d cores%n", java.lang.management.ManagementFactory.getOperatingSystemMXBean().getSystemLoadAverage(),
                Runtime.getRuntime().availableProcessors()));
        return sb.toString();
    }
}
