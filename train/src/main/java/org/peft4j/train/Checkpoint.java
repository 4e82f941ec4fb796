package org.peft4j.train;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import org.peft4j.core.DType;
import org.peft4j.core.Peft4jException.FormatException;
import org.peft4j.formats.safetensors.SafeTensors;
import org.peft4j.train.data.Batcher;
import org.peft4j.train.engine.Param;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.channels.FileChannel;
import java.nio.file.AtomicMoveNotSupportedException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.stream.Stream;

/// A training checkpoint `checkpoint-N/`: the trainable tensors bit-exact (`trainable.safetensors`), the optimizer
/// moments (`optimizer.safetensors`), and `trainer_state.json` (step, data position, logging accumulators, log history).
/// Together with the config they determine the rest of the run exactly, so resuming reproduces an uninterrupted run.
/// Written into a temporary sibling directory, every file fsynced, then renamed into place: a kill at any moment leaves
/// either the complete previous set of checkpoints or the complete new one.
public final class Checkpoint {
    public static final String PREFIX = "checkpoint-";
    public static final String STATE_FILE = "trainer_state.json";
    static final String TRAINABLE_FILE = "trainable.safetensors", OPTIMIZER_FILE = "optimizer.safetensors";
    private static final ObjectMapper JSON = new ObjectMapper().enable(SerializationFeature.INDENT_OUTPUT);

    /// The loop's state besides tensors.
    public record State(long globalStep, int epoch, int index, double lossWindowSum, int lossWindowSteps,
                        long tokensSeen, List<Map<String, Object>> logHistory) {
        public Batcher.Position position() { return new Batcher.Position(epoch, index); }
    }

    private Checkpoint() {}

    /// Writes checkpoint-N atomically. `extra` writes user-facing files (the PEFT adapter) into the temporary folder.
    public static Path save(Path outputDir, State state, List<Param> params, List<SafeTensors.Entry> optimizer,
                            java.util.function.Consumer<Path> extra) {
        Path finalDir = outputDir.resolve(PREFIX + state.globalStep());
        Path tmp = outputDir.resolve(".tmp-" + PREFIX + state.globalStep());
        try {
            deleteRecursively(tmp);
            Files.createDirectories(tmp);
            List<SafeTensors.Entry> tensors = new ArrayList<>();
            for (Param p : params) tensors.add(SafeTensors.Entry.ofFloats(p.name(), p.shape(), p.data(), DType.F32));
            SafeTensors.write(tmp.resolve(TRAINABLE_FILE), tensors, Map.of("format", "pt"));
            SafeTensors.write(tmp.resolve(OPTIMIZER_FILE), optimizer, Map.of("step", String.valueOf(state.globalStep())));
            if (extra != null) extra.accept(tmp);
            Files.writeString(tmp.resolve(STATE_FILE), JSON.writeValueAsString(state));
            try (Stream<Path> files = Files.list(tmp)) {
                for (Path f : files.toList()) fsync(f);
            }
            fsync(tmp);
            deleteRecursively(finalDir);
            try {
                Files.move(tmp, finalDir, StandardCopyOption.ATOMIC_MOVE);
            } catch (AtomicMoveNotSupportedException e) {
                Files.move(tmp, finalDir);
            }
            fsync(outputDir);
            return finalDir;
        } catch (IOException e) {
            throw new UncheckedIOException("cannot write checkpoint " + finalDir + ": " + e.getMessage(), e);
        }
    }

    /// Reads a checkpoint back into the given parameter arrays (same order and sizes as when saved) and hands the
    /// optimizer file to `optimizer`.
    public static State load(Path dir, List<Param> params, java.util.function.Consumer<SafeTensors> optimizer) {
        Path stateFile = dir.resolve(STATE_FILE);
        if (!Files.exists(stateFile))
            throw new FormatException(dir + " is not a complete checkpoint (no " + STATE_FILE + "); pick another checkpoint or start over");
        try (SafeTensors t = SafeTensors.open(dir.resolve(TRAINABLE_FILE));
             SafeTensors o = SafeTensors.open(dir.resolve(OPTIMIZER_FILE))) {
            for (Param p : params) {
                if (!t.contains(p.name()))
                    throw new FormatException(dir + ": checkpoint has no tensor '" + p.name() + "'; it was written by a run with another finetuning_type or lora_target");
                if (t.info(p.name()).numel() != p.data().length)
                    throw new FormatException(dir + ": tensor '" + p.name() + "' has " + t.info(p.name()).numel() + " values, this run expects " + p.data().length + "; the settings changed since the checkpoint");
                t.readFloats(p.name(), p.data(), 0);
            }
            optimizer.accept(o);
            return JSON.readValue(stateFile.toFile(), State.class);
        } catch (IOException e) {
            throw new FormatException(dir + ": cannot read checkpoint: " + e.getMessage(), e);
        }
    }

    /// The checkpoint with the highest step in `outputDir`, or null.
    public static Path last(Path outputDir) {
        if (!Files.isDirectory(outputDir)) return null;
        try (Stream<Path> s = Files.list(outputDir)) {
            return s.filter(p -> p.getFileName().toString().matches(PREFIX + "\\d+") && Files.exists(p.resolve(STATE_FILE)))
                    .max(Comparator.comparingLong(Checkpoint::stepOf)).orElse(null);
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    /// Deletes the oldest checkpoints beyond `limit`.
    public static void rotate(Path outputDir, int limit) {
        try (Stream<Path> s = Files.list(outputDir)) {
            List<Path> all = s.filter(p -> p.getFileName().toString().matches(PREFIX + "\\d+"))
                    .sorted(Comparator.comparingLong(Checkpoint::stepOf)).toList();
            for (int i = 0; i < all.size() - limit; i++) deleteRecursively(all.get(i));
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    static long stepOf(Path p) { return Long.parseLong(p.getFileName().toString().substring(PREFIX.length())); }

    static void fsync(Path p) throws IOException {
        try (FileChannel ch = FileChannel.open(p, Files.isDirectory(p) ? StandardOpenOption.READ : StandardOpenOption.WRITE)) {
            ch.force(true);
        } catch (IOException e) {
            if (!Files.isDirectory(p)) throw e;   // some file systems refuse to open directories for sync
        }
    }

    static void deleteRecursively(Path p) throws IOException {
        if (!Files.exists(p)) return;
        try (Stream<Path> s = Files.walk(p)) {
            for (Path x : s.sorted(Comparator.reverseOrder()).toList()) Files.delete(x);
        }
    }

    /// Writes a text file atomically (temp + fsync + rename).
    public static void writeAtomically(Path file, String text) {
        try {
            Path tmp = file.resolveSibling("." + file.getFileName() + ".tmp");
            Files.writeString(tmp, text);
            fsync(tmp);
            Files.move(tmp, file, StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
        } catch (IOException e) {
            throw new UncheckedIOException("cannot write " + file + ": " + e.getMessage(), e);
        }
    }

    static Map<String, Object> map(Object... kv) {
        Map<String, Object> m = new LinkedHashMap<>();
        for (int i = 0; i < kv.length; i += 2) m.put((String) kv[i], kv[i + 1]);
        return m;
    }
}
