package org.peft4j.spark;

import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.FileStatus;
import org.apache.hadoop.fs.FileSystem;
import org.apache.hadoop.fs.UnsupportedFileSystemException;
import org.apache.hadoop.util.VersionInfo;
import org.peft4j.core.Peft4jException.ConfigException;
import org.peft4j.train.Checkpoint;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.net.URI;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Comparator;
import java.util.Map;
import java.util.UUID;
import java.util.stream.Stream;

/// An output_dir given as a URI (`hdfs://nn/runs/x`, `s3a://bucket/runs/x`, `file:///mnt/shared/x`) reached through
/// Hadoop's FileSystem: every rank trains into a local staging folder of its own; rank 0 uploads each checkpoint as
/// soon as it is written and, at the end, the files of output_dir (adapter, log, results, ...). Each upload goes to
/// a `.tmp-` name first and is renamed into place, so the shared folder never holds half a checkpoint (on HDFS the
/// rename is atomic; S3 has no rename, and s3a copies: a `.tmp-` folder left by a killed upload is ignored and
/// replaced). A rank starting (or a stage retried) first copies the last complete `checkpoint-N` (one holding
/// trainer_state.json) back into its staging folder, from which the recipe resumes as from a local output_dir.
/// Checkpoints that save_total_limit rotated away locally are deleted from the shared folder too; with
/// overwrite_output_dir the old run's checkpoints and log are moved into `previous-run-N/` (as for a local folder).
final class SharedOutput {
    private final URI uri;
    private final FileSystem fs;
    private final org.apache.hadoop.fs.Path root;

    private SharedOutput(URI uri, FileSystem fs) {
        this.uri = uri; this.fs = fs; this.root = new org.apache.hadoop.fs.Path(uri);
    }

    /// Whether output_dir names a Hadoop FileSystem (a URI with a scheme) rather than a local folder.
    static boolean isUri(String outputDir) { return outputDir.matches("[A-Za-z][A-Za-z0-9+.-]*:/.*"); }

    /// Opens `outputDir`'s FileSystem with the Hadoop settings `conf` (Spark's `hadoopConfiguration`, with its
    /// `spark.hadoop.*` keys); a scheme without a FileSystem on the class path (s3a without hadoop-aws) is refused
    /// with what to add.
    static SharedOutput open(String outputDir, Map<String, String> conf) {
        URI uri = URI.create(outputDir);
        Configuration c = new Configuration(false);
        conf.forEach(c::set);
        try {
            FileSystem fs = FileSystem.get(uri, c);
            fs.setWriteChecksum(false);   // no .crc files beside the adapter on file:// (LocalFileSystem)
            return new SharedOutput(uri, fs);
        } catch (UnsupportedFileSystemException e) {
            String scheme = uri.getScheme();
            String what = scheme.startsWith("s3") ? "hadoop-aws (and its AWS SDK bundle)"
                    : scheme.equals("gs") ? "the GCS connector (gcs-connector)" : scheme.startsWith("abfs") || scheme.startsWith("wasb") ? "hadoop-azure" : "the FileSystem of " + scheme;
            String pkg = scheme.startsWith("s3") ? " (spark-submit --packages org.apache.hadoop:hadoop-aws:" + VersionInfo.getVersion() + ")" : "";
            throw new ConfigException("output_dir " + outputDir + ": Hadoop has no FileSystem for scheme '" + scheme + "' on the class path; add "
                    + what + " matching Hadoop " + VersionInfo.getVersion() + pkg + ", or give a local or hdfs:// output_dir", e);
        } catch (IOException e) {
            throw new UncheckedIOException("cannot open output_dir " + outputDir + ": " + e.getMessage(), e);
        }
    }

    URI uri() { return uri; }

    /// The last complete checkpoint-N of the shared folder, or null.
    String lastCheckpoint() throws IOException {
        if (!fs.exists(root)) return null;
        String best = null;
        long bestStep = -1;
        for (FileStatus s : fs.listStatus(root)) {
            String n = s.getPath().getName();
            if (!s.isDirectory() || !n.matches(Checkpoint.PREFIX + "\\d+") || !fs.exists(new org.apache.hadoop.fs.Path(s.getPath(), Checkpoint.STATE_FILE))) continue;
            long step = Long.parseLong(n.substring(Checkpoint.PREFIX.length()));
            if (step > bestStep) { bestStep = step; best = n; }
        }
        return best;
    }

    /// Empties `local` and copies the last complete checkpoint into it; returns its name, or null when there is none.
    String pullLastCheckpoint(Path local) {
        try {
            deleteTree(local);
            Files.createDirectories(local);
            String last = lastCheckpoint();
            if (last != null) fs.copyToLocalFile(false, new org.apache.hadoop.fs.Path(root, last), new org.apache.hadoop.fs.Path(local.resolve(last).toUri()), true);
            return last;
        } catch (IOException e) {
            throw new UncheckedIOException("cannot read the checkpoints of output_dir " + uri + ": " + e.getMessage(), e);
        }
    }

    /// overwrite_output_dir: as a local output_dir, the run starts over and the old run's checkpoints and log are
    /// moved into `previous-run-N/` of the shared folder, not deleted; returns that folder's name, or null when there
    /// was nothing to move.
    String setAsidePreviousRun() {
        try {
            if (!fs.exists(root)) return null;
            org.apache.hadoop.fs.Path previous = null;
            for (FileStatus s : fs.listStatus(root)) {
                String n = s.getPath().getName();
                if (!n.startsWith(Checkpoint.PREFIX) && !n.equals("trainer_log.jsonl")) continue;
                if (previous == null) {
                    int i = 1;
                    while (fs.exists(new org.apache.hadoop.fs.Path(root, "previous-run-" + i))) i++;
                    previous = new org.apache.hadoop.fs.Path(root, "previous-run-" + i);
                    fs.mkdirs(previous);
                }
                if (!fs.rename(s.getPath(), new org.apache.hadoop.fs.Path(previous, n))) throw new IOException("rename " + s.getPath() + " into " + previous + " failed");
            }
            return previous == null ? null : previous.getName();
        } catch (IOException e) {
            throw new UncheckedIOException("cannot move the previous run of output_dir " + uri + " aside: " + e.getMessage(), e);
        }
    }

    /// Uploads `local`'s file or folder as `name` of the shared folder: to `.tmp-name-<random>`, then renamed into
    /// place (an older `name` is replaced).
    void push(Path local, String name) {
        org.apache.hadoop.fs.Path target = new org.apache.hadoop.fs.Path(root, name);
        org.apache.hadoop.fs.Path tmp = new org.apache.hadoop.fs.Path(root, ".tmp-" + name + "-" + UUID.randomUUID());
        try {
            fs.mkdirs(root);
            fs.copyFromLocalFile(false, true, new org.apache.hadoop.fs.Path(local.toUri()), tmp);
            if (fs.exists(target)) fs.delete(target, true);
            if (!fs.rename(tmp, target)) throw new IOException("rename " + tmp + " -> " + target + " failed");
        } catch (IOException e) {
            throw new UncheckedIOException("cannot upload " + local + " to " + target + ": " + e.getMessage(), e);
        }
    }

    /// After checkpoint `dir` was written locally: uploads it (and the log, for who watches the run), then deletes
    /// the shared checkpoints the local folder no longer has (save_total_limit's rotation).
    void pushCheckpoint(Path localOut, Path dir) {
        push(dir, dir.getFileName().toString());
        Path log = localOut.resolve("trainer_log.jsonl");
        if (Files.isRegularFile(log)) push(log, log.getFileName().toString());
        try {
            for (FileStatus s : fs.listStatus(root)) {
                String n = s.getPath().getName();
                if (n.matches(Checkpoint.PREFIX + "\\d+") && !Files.isDirectory(localOut.resolve(n))) fs.delete(s.getPath(), true);
            }
        } catch (IOException e) {
            throw new UncheckedIOException("cannot rotate the checkpoints of " + uri + ": " + e.getMessage(), e);
        }
    }

    /// At the end of the run: every file and checkpoint of `localOut` the shared folder lacks or holds older;
    /// training_args.json names the shared folder as output_dir, not the local one.
    void pushAll(Path localOut) {
        Path args = localOut.resolve("training_args.json");
        try {
            if (Files.isRegularFile(args)) {
                var om = new com.fasterxml.jackson.databind.ObjectMapper().enable(com.fasterxml.jackson.databind.SerializationFeature.INDENT_OUTPUT);
                var json = om.readTree(args.toFile());
                if (json instanceof com.fasterxml.jackson.databind.node.ObjectNode o && o.has("output_dir")) {
                    o.put("output_dir", uri.toString());
                    Files.writeString(args, om.writeValueAsString(o));
                }
            }
        } catch (IOException e) {
            throw new UncheckedIOException("cannot rewrite " + args + ": " + e.getMessage(), e);
        }
        try (Stream<Path> s = Files.list(localOut)) {
            for (Path p : s.sorted().toList()) {
                String n = p.getFileName().toString();
                if (n.startsWith(".tmp-") || n.endsWith(".tmp")) continue;
                if (Files.isDirectory(p) && n.matches(Checkpoint.PREFIX + "\\d+") && fs.exists(new org.apache.hadoop.fs.Path(root, n))) continue;
                push(p, n);
            }
        } catch (IOException e) {
            throw new UncheckedIOException("cannot list " + localOut + ": " + e.getMessage(), e);
        }
    }

    static void deleteTree(Path p) throws IOException {
        if (!Files.exists(p)) return;
        try (Stream<Path> s = Files.walk(p)) {
            for (Path x : s.sorted(Comparator.reverseOrder()).toList()) Files.delete(x);
        }
    }
}
