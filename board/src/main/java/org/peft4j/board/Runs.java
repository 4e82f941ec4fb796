package org.peft4j.board;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import org.peft4j.train.Checkpoint;
import org.peft4j.train.TrainConfig;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Objects;
import java.util.stream.Stream;

/// The runs under the saves folder: every folder holding a training_args.json (written by `peft4j train` or the
/// board), with its status, its resolved config (the keys that differ from their defaults) and its loss curves from
/// trainer_log.jsonl. Status: the job's while it is queued or running; else the board's `board_run.json`
/// (finished, aborted, failed with its error; a run the board left "running" when it stopped counts as aborted); else,
/// for runs of the command line, finished when all_results.json exists and aborted otherwise.
public final class Runs {
    private static final ObjectMapper JSON = new ObjectMapper();

    private final Roots roots;
    private final Jobs jobs;

    Runs(Roots roots, Jobs jobs) {
        this.roots = roots;
        this.jobs = jobs;
    }

    /// Every run, newest first.
    public ArrayNode list() {
        ArrayNode out = JSON.createArrayNode();
        List<Path> dirs;
        try (Stream<Path> s = Files.walk(roots.saves(), 6)) {
            dirs = s.filter(d -> Files.isRegularFile(d.resolve("training_args.json")) && !d.getFileName().toString().startsWith(Checkpoint.PREFIX))
                    .sorted((a, b) -> Long.compare(modified(b), modified(a))).toList();
        } catch (IOException e) {
            throw new UncheckedIOException("cannot list the saves folder " + roots.saves() + ": " + e.getMessage(), e);
        }
        // queued jobs whose output_dir the recipe has not prepared yet, first
        for (Jobs.Job j : jobs.jobs())
            if (!dirs.contains(j.outputDir)) {
                ObjectNode o = out.addObject().put("run", j.run()).put("updated", System.currentTimeMillis()).put("status", j.status()).put("error", j.error)
                        .put("has_adapter", false).put("has_checkpoint", false);
                o.set("config", JSON.valueToTree(j.config.changed()));
                o.putArray("losses");
                o.putArray("evals");
            }
        for (Path d : dirs) out.add(describe(d));
        return out;
    }

    /// One run's status, changed keys and curves.
    public ObjectNode describe(Path dir) {
        ObjectNode o = JSON.createObjectNode().put("run", roots.show(dir)).put("updated", modified(dir));
        String[] status = status(dir);
        o.put("status", status[0]).put("error", status[1]);
        o.put("has_adapter", Files.isRegularFile(dir.resolve("adapter_config.json")));
        o.put("has_checkpoint", Checkpoint.last(dir) != null);
        ObjectNode cfg = o.putObject("config");
        JsonNode args = read(dir.resolve("training_args.json"));
        if (args != null)
            args.properties().forEach(e -> {
                TrainConfig.Key k = TrainConfig.KEYS.get(e.getKey());
                Object v = e.getValue().isNull() ? null : e.getValue().isNumber() ? e.getValue().numberValue()
                        : e.getValue().isBoolean() ? e.getValue().booleanValue() : e.getValue().asText();
                if (k != null && !sameValue(v, k.defaultValue())) cfg.set(e.getKey(), e.getValue());
            });
        Curves c = curves(dir);
        o.set("losses", series(c.losses()));
        o.set("evals", series(c.evals()));
        if (c.error() != null) o.put("log_error", c.error());
        return o;
    }

    /// The logged training and evaluation losses of a run, (step, loss) each, from its trainer_log.jsonl.
    record Curves(List<double[]> losses, List<double[]> evals, String error) {}

    static Curves curves(Path dir) {
        List<double[]> losses = new ArrayList<>(), evals = new ArrayList<>();
        Path log = dir.resolve("trainer_log.jsonl");
        if (!Files.isRegularFile(log)) return new Curves(losses, evals, null);
        try (Stream<String> lines = Files.lines(log)) {
            lines.forEach(line -> {
                JsonNode n;
                try { n = JSON.readTree(line); } catch (IOException e) { return; }   // a line being written
                if (n == null || !n.has("current_steps")) return;
                if (n.has("loss")) losses.add(new double[] {n.get("current_steps").asLong(), n.get("loss").asDouble()});
                if (n.has("eval_loss")) evals.add(new double[] {n.get("current_steps").asLong(), n.get("eval_loss").asDouble()});
            });
        } catch (IOException | UncheckedIOException e) {
            return new Curves(losses, evals, "cannot read " + log + ": " + e.getMessage());
        }
        return new Curves(losses, evals, null);
    }

    static ArrayNode series(List<double[]> points) {
        ArrayNode a = JSON.createArrayNode();
        for (double[] p : points) a.addArray().add((long) p[0]).add(p[1]);
        return a;
    }

    /// {status, error or null}.
    private String[] status(Path dir) {
        Jobs.Job j = jobs.find(dir);
        if (j != null) return new String[] {j.status(), j.error};
        JsonNode s = read(dir.resolve(Jobs.STATUS_FILE));
        if (s != null && s.hasNonNull("status")) {
            String st = s.get("status").asText();
            if (st.equals("running") || st.equals("queued")) return new String[] {"aborted", "the board stopped while this run was " + st + "; Resume continues from its last checkpoint"};
            return new String[] {st, s.hasNonNull("error") ? s.get("error").asText() : null};
        }
        return new String[] {Files.isRegularFile(dir.resolve("all_results.json")) ? "finished" : "aborted", null};
    }

    private static boolean sameValue(Object v, Object def) {
        if (v instanceof Number a && def instanceof Number b) return a.doubleValue() == b.doubleValue();
        return Objects.equals(v, def);
    }

    private static JsonNode read(Path file) {
        if (!Files.isRegularFile(file)) return null;
        try {
            return JSON.readTree(file.toFile());
        } catch (IOException e) {
            return null;
        }
    }

    private static long modified(Path p) {
        try {
            return Files.getLastModifiedTime(p.resolve("training_args.json")).toMillis();
        } catch (IOException e) {
            return 0;
        }
    }
}
