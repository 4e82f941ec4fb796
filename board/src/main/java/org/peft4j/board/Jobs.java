package org.peft4j.board;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import org.peft4j.train.Checkpoint;
import org.peft4j.train.TrainConfig;
import org.peft4j.train.Trainer;
import org.peft4j.train.recipe.FinetuneRecipe;
import org.peft4j.train.recipe.TrainEvent;

import java.nio.file.Path;
import java.time.Instant;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Deque;
import java.util.List;
import java.util.Set;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.LinkedBlockingDeque;
import java.util.concurrent.LinkedBlockingQueue;

/// The board's training jobs: one runs at a time on the board's own thread through [FinetuneRecipe], further ones
/// wait in a queue. The server owns them, so a page reload or a second tab sees the job as it is ([#snapshot]), and
/// every change goes to the subscribed pages as an event (server-sent events, [#subscribe]). Each run's state is also
/// kept in its output_dir as `board_run.json` (status, error), which the runs list reads after a restart.
public final class Jobs implements AutoCloseable {
    private static final System.Logger LOG = System.getLogger(Jobs.class.getName());
    private static final ObjectMapper JSON = new ObjectMapper();
    /// The status file in each output_dir the board ran.
    public static final String STATUS_FILE = "board_run.json";
    private static final int LOG_LINES = 200;

    /// One training run: its resolved config, its status and what the page draws while it runs.
    public final class Job {
        final String id;
        final TrainConfig config;
        final Path outputDir;
        final FinetuneRecipe recipe = new FinetuneRecipe();
        volatile String status = "queued";
        volatile String error;
        volatile boolean prepared;   // output_dir is this run's: its status file may be written
        long step, total, startStep;
        double loss = Double.NaN, lr, tokensPerSecond, etaSeconds = Double.NaN, epoch;
        final List<double[]> losses = new ArrayList<>(), evals = new ArrayList<>();   // (step, loss)
        final Deque<String> log = new ArrayDeque<>();

        Job(String id, TrainConfig config) {
            this.id = id;
            this.config = config;
            this.outputDir = Path.of(config.str("output_dir"));
        }

        public String run() { return roots.show(outputDir); }

        public String status() { return status; }

        synchronized ObjectNode toJson(boolean withSeries) {
            ObjectNode o = JSON.createObjectNode().put("id", id).put("run", run()).put("status", status).put("error", error)
                    .put("step", step).put("total", total).put("start_step", startStep).put("lr", lr).put("epoch", epoch)
                    .put("tokens_per_second", tokensPerSecond);
            if (!Double.isNaN(loss)) o.put("loss", loss);
            if (!Double.isNaN(etaSeconds)) o.put("eta_seconds", etaSeconds);
            if (withSeries) {
                o.set("losses", Runs.series(losses));
                o.set("evals", Runs.series(evals));
                ArrayNode l = o.putArray("log");
                log.forEach(l::add);
            }
            return o;
        }

        synchronized void line(String text) {
            log.addLast(text);
            while (log.size() > LOG_LINES) log.removeFirst();
            publish(JSON.createObjectNode().put("type", "log").put("run", run()).put("line", text));
        }
    }

    private final Roots roots;
    private final LinkedBlockingDeque<Job> queue = new LinkedBlockingDeque<>();
    private final Set<BlockingQueue<String>> subscribers = ConcurrentHashMap.newKeySet();
    private final Thread worker;
    private volatile Job current;
    private volatile boolean closed;
    private long nextId = 1;

    Jobs(Roots roots) {
        this.roots = roots;
        this.worker = Thread.ofPlatform().name("peft4j-board-train").daemon(true).start(this::loop);
    }

    /// Queues a run of `config`; it starts when the running one (if any) ends. A run of the same output_dir that is
    /// already running or queued is refused.
    public synchronized Job submit(TrainConfig config) {
        Path out = Path.of(config.str("output_dir"));
        for (Job j : jobs())
            if (j.outputDir.equals(out)) throw new BoardException(409, "output_dir", "run " + j.run() + " is already " + j.status + "; abort it first or choose another output_dir");
        Job j = new Job("job-" + nextId++, config);
        queue.add(j);
        publishJob(j);
        return j;
    }

    /// Stops the run of `run` (a folder relative to the saves folder): the running one before its next step (its last
    /// checkpoint stays valid), a queued one at once. False when no such job is running or queued.
    public synchronized boolean abort(String run) {
        for (Job j : queue)
            if (j.run().equals(run) && queue.remove(j)) {
                j.status = "aborted";
                publishJob(j);
                return true;
            }
        Job c = current;
        if (c != null && c.run().equals(run)) {
            c.recipe.cancel();
            c.line("abort requested: stopping before the next step");
            return true;
        }
        return false;
    }

    /// The running job, or null.
    public Job current() { return current; }

    /// The running job and the queue.
    public List<Job> jobs() {
        List<Job> all = new ArrayList<>();
        Job c = current;
        if (c != null) all.add(c);
        all.addAll(queue);
        return all;
    }

    /// The job of `outputDir` when it is running or queued, else null.
    Job find(Path outputDir) {
        for (Job j : jobs()) if (j.outputDir.equals(outputDir)) return j;
        return null;
    }

    /// What a page shows on (re)load: the running job with its loss series and log tail, and the queue.
    public ObjectNode snapshot() {
        ObjectNode o = JSON.createObjectNode().put("type", "snapshot");
        Job c = current;
        if (c != null) o.set("current", c.toJson(true));
        else o.putNull("current");
        ArrayNode q = o.putArray("queue");
        for (Job j : queue) q.add(j.toJson(false));
        return o;
    }

    /// A page's event stream: the snapshot first, then every change, as JSON texts. Call [#unsubscribe] when it goes.
    public BlockingQueue<String> subscribe() {
        BlockingQueue<String> q = new LinkedBlockingQueue<>();
        q.add(snapshot().toString());
        subscribers.add(q);
        return q;
    }

    public void unsubscribe(BlockingQueue<String> q) { subscribers.remove(q); }

    private void publish(ObjectNode event) {
        String text = event.toString();
        for (BlockingQueue<String> q : subscribers) q.add(text);
    }

    private void publishJob(Job j) {
        ObjectNode e = JSON.createObjectNode().put("type", "job");
        e.set("job", j.toJson(false));
        publish(e);
    }

    private void loop() {
        while (!closed) {
            Job j;
            try {
                j = queue.take();
            } catch (InterruptedException e) {
                return;
            }
            current = j;
            j.status = "running";
            publishJob(j);
            try {
                j.recipe.run(j.config, e -> on(j, e));
            } catch (RuntimeException | Error e) {
                LOG.log(System.Logger.Level.DEBUG, "run " + j.run() + " failed", e);   // reported by the Failed event
            } finally {
                current = null;
                publishJob(j);
            }
        }
    }

    private void on(Job j, TrainEvent event) {
        switch (event) {
            case TrainEvent.Preparing p -> {
                j.line("output_dir " + j.run() + (p.resumeFrom() != null ? ": resuming from " + p.resumeFrom().getFileName() : ""));
                p.config().changed().forEach((k, v) -> j.line("  " + k + ": " + v));
                for (String n : p.config().notes()) j.line("  note: " + n);
                j.prepared = true;
                writeStatus(j, "running", null);
            }
            case TrainEvent.Started s -> {
                TrainEvent.Setup u = s.setup();
                synchronized (j) { j.total = s.totalSteps(); j.startStep = s.startStep(); j.step = s.startStep(); }
                j.line(String.format("data: %d training and %d validation examples (longest %d tokens), template %s, %d threads",
                        u.trainExamples(), u.evalExamples(), u.longestExample(), u.template(), u.threads()));
                j.line(String.format("model: %s, %,d trainable parameters", u.finetuningType(), u.trainableParameters()));
                if (s.startStep() > 0) {
                    // the curve before the resume, as logged, so that the chart shows the whole run
                    Runs.Curves before = Runs.curves(j.outputDir);
                    ObjectNode e = JSON.createObjectNode().put("type", "series").put("run", j.run()).put("until", s.startStep());
                    synchronized (j) {
                        before.losses().removeIf(p -> p[0] > s.startStep());
                        before.evals().removeIf(p -> p[0] > s.startStep());
                        j.losses.addAll(0, before.losses());
                        j.evals.addAll(0, before.evals());
                        e.set("losses", Runs.series(before.losses()));
                        e.set("evals", Runs.series(before.evals()));
                    }
                    publish(e);
                    j.line("resumed at step " + s.startStep() + " of " + s.totalSteps());
                }
                publishJob(j);
            }
            case TrainEvent.Step m -> {
                synchronized (j) {
                    j.step = m.step(); j.total = m.totalSteps(); j.loss = m.loss(); j.lr = m.lr(); j.tokensPerSecond = m.tokensPerSecond();
                    j.etaSeconds = m.etaSeconds(); j.epoch = m.epoch();
                    j.losses.add(new double[] {m.step(), m.loss()});
                }
                ObjectNode e = JSON.createObjectNode().put("type", "step").put("run", j.run()).put("step", m.step()).put("total", m.totalSteps())
                        .put("loss", m.loss()).put("lr", m.lr()).put("tokens_per_second", m.tokensPerSecond()).put("epoch", m.epoch());
                if (!Double.isNaN(m.etaSeconds())) e.put("eta_seconds", m.etaSeconds());
                publish(e);
                if (m.loggedLoss() != null)
                    j.line(String.format("step %d/%d: loss %.4f, lr %.2e, grad_norm %.3f, %,.0f tok/s", m.step(), m.totalSteps(), m.loggedLoss(), m.lr(),
                            m.gradNorm(), m.tokensPerSecond()));
            }
            case TrainEvent.Eval v -> {
                synchronized (j) { j.evals.add(new double[] {v.step(), v.evalLoss()}); }
                publish(JSON.createObjectNode().put("type", "eval").put("run", j.run()).put("step", v.step()).put("eval_loss", v.evalLoss()));
                j.line(String.format("step %d: eval_loss %.4f", v.step(), v.evalLoss()));
            }
            case TrainEvent.CheckpointSaved c -> j.line("saved " + c.dir().getFileName());
            case TrainEvent.Finished f -> {
                Trainer.Result r = f.result().train();
                j.status = r.cancelled() ? "aborted" : "finished";
                j.line(r.cancelled() ? "aborted at step " + j.step + "; the last checkpoint stays valid: Resume continues from it"
                        : String.format("done: %d steps in %.1f s, train loss %.4f", r.steps(), r.seconds(), r.trainLoss()));
                writeStatus(j, j.status, null);
            }
            case TrainEvent.Failed f -> {
                j.status = "failed";
                j.error = f.message();
                j.line("error: " + f.message());
                if (j.prepared) writeStatus(j, "failed", f.message());
            }
        }
    }

    private void writeStatus(Job j, String status, String error) {
        ObjectNode o = JSON.createObjectNode().put("status", status).put("error", error).put("updated", Instant.now().toString());
        try {
            Checkpoint.writeAtomically(j.outputDir.resolve(STATUS_FILE), o.toPrettyString() + "\n");
        } catch (RuntimeException e) {
            LOG.log(System.Logger.Level.WARNING, "cannot write " + j.outputDir.resolve(STATUS_FILE) + ": " + e.getMessage());
        }
    }

    /// Cancels the running job and stops the worker.
    @Override
    public void close() {
        closed = true;
        Job c = current;
        if (c != null) c.recipe.cancel();
        queue.clear();
        worker.interrupt();
        try {
            worker.join(30_000);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }
}
