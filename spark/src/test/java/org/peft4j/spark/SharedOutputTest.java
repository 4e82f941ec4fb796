package org.peft4j.spark;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.peft4j.core.Peft4jException.ConfigException;
import org.peft4j.train.Checkpoint;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.stream.Stream;

import static org.junit.jupiter.api.Assertions.*;

/// output_dir as a Hadoop FileSystem URI (here file://, the local FileSystem behind the same API as hdfs:// and
/// s3a://): uploads land whole under their names, a resume pulls the last complete checkpoint, rotation follows the
/// local folder, and a scheme without its FileSystem is refused with what to add.
class SharedOutputTest {
    static void checkpoint(Path out, int step, boolean complete) throws Exception {
        Path d = Files.createDirectories(out.resolve(Checkpoint.PREFIX + step));
        Files.writeString(d.resolve("trainable.safetensors"), "weights of step " + step);
        if (complete) Files.writeString(d.resolve(Checkpoint.STATE_FILE), "{\"globalStep\":" + step + "}");
    }

    static List<String> names(Path dir) throws Exception {
        try (Stream<Path> s = Files.list(dir)) { return s.map(p -> p.getFileName().toString()).sorted().toList(); }
    }

    @Test
    void uploadsWholeAndResumesFromTheLastCompleteCheckpoint(@TempDir Path tmp) throws Exception {
        Path remote = tmp.resolve("remote"), local = tmp.resolve("local");
        String uri = remote.toUri().toString();   // file:///..., the local FileSystem through Hadoop's API
        SharedOutput shared = SharedOutput.open(uri, Map.of());
        assertNull(shared.pullLastCheckpoint(local), "nothing to resume from yet");
        assertEquals(List.of(), names(local));

        checkpoint(local, 2, true);
        Files.writeString(local.resolve("trainer_log.jsonl"), "{\"current_steps\":2}\n");
        shared.pushCheckpoint(local, local.resolve("checkpoint-2"));
        checkpoint(local, 4, true);
        shared.pushCheckpoint(local, local.resolve("checkpoint-4"));
        assertEquals(List.of("checkpoint-2", "checkpoint-4", "trainer_log.jsonl"), names(remote), "no .tmp- names, no .crc files left");
        // what a killed upload or writer leaves is never resumed from
        checkpoint(remote, 6, false);
        Files.createDirectories(remote.resolve(".tmp-checkpoint-8-x"));
        assertEquals("checkpoint-4", shared.lastCheckpoint());

        Path other = tmp.resolve("rank1");
        Files.createDirectories(other.resolve("stale"));
        assertEquals("checkpoint-4", shared.pullLastCheckpoint(other));
        assertEquals(List.of("checkpoint-4"), names(other), "the staging folder emptied first");
        assertEquals("weights of step 4", Files.readString(other.resolve("checkpoint-4/trainable.safetensors")));

        // save_total_limit rotated checkpoint-2 away locally: the shared folder follows
        SharedOutput.deleteTree(local.resolve("checkpoint-2"));
        checkpoint(local, 6, true);
        shared.pushCheckpoint(local, local.resolve("checkpoint-6"));
        assertFalse(Files.exists(remote.resolve("checkpoint-2")));
        assertEquals("{\"globalStep\":6}", Files.readString(remote.resolve("checkpoint-6").resolve(Checkpoint.STATE_FILE)), "the incomplete one replaced");

        Files.writeString(local.resolve("adapter_model.safetensors"), "adapter");
        Files.writeString(local.resolve(".adapter_config.json.tmp"), "half");
        Files.writeString(local.resolve("training_args.json"), "{\"output_dir\": \"" + local + "\", \"seed\": 42}");
        shared.pushAll(local);
        assertEquals(List.of(".tmp-checkpoint-8-x", "adapter_model.safetensors", "checkpoint-4", "checkpoint-6", "trainer_log.jsonl", "training_args.json"), names(remote));
        var args = new com.fasterxml.jackson.databind.ObjectMapper().readTree(remote.resolve("training_args.json").toFile());
        assertEquals(uri, args.get("output_dir").asText(), "the shared folder, not the rank's staging folder");
        assertEquals(42, args.get("seed").asInt());

        // overwrite_output_dir: the old run is moved aside, nothing deleted
        assertEquals("previous-run-1", shared.setAsidePreviousRun());
        assertEquals(List.of(".tmp-checkpoint-8-x", "adapter_model.safetensors", "previous-run-1", "training_args.json"), names(remote));
        assertEquals(List.of("checkpoint-4", "checkpoint-6", "trainer_log.jsonl"), names(remote.resolve("previous-run-1")));
        assertNull(shared.lastCheckpoint());
        assertNull(shared.setAsidePreviousRun(), "nothing left to move");
    }

    @Test
    void aSchemeWithoutItsFileSystemIsRefused() {
        assertTrue(SharedOutput.isUri("hdfs://nn:8020/runs/a") && SharedOutput.isUri("s3a://bucket/runs/a") && SharedOutput.isUri("file:///tmp/a"));
        assertFalse(SharedOutput.isUri("/tmp/a") || SharedOutput.isUri("runs/a") || SharedOutput.isUri("C:\\runs"));
        var e = assertThrows(ConfigException.class, () -> SharedOutput.open("s3a://bucket/runs/a", Map.of()));
        assertTrue(e.getMessage().contains("no FileSystem for scheme 's3a'") && e.getMessage().contains("org.apache.hadoop:hadoop-aws:"), e.getMessage());
    }
}
