package org.peft4j.formats.fuzz;

import com.code_intelligence.jazzer.junit.FuzzTest;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.peft4j.testkit.Fuzz;
import org.peft4j.formats.gguf.GgufFile;
import org.peft4j.core.DType;
import org.peft4j.formats.safetensors.SafeTensors;
import org.peft4j.formats.safetensors.ShardedSafeTensors;

import java.lang.foreign.MemorySegment;
import java.util.List;
import java.util.Map;

import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;

import static org.junit.jupiter.api.Assertions.assertNotNull;

/// Fuzz targets for the file parsers a user downloads from strangers (issue 17). The contract ([Fuzz#contract]): a
/// parsed file, or our own Peft4jException with a message; no other exception, no hang, allocation bounded by the
/// input size. The suite runs each target's seeds in `FormatsFuzzTestInputs/<target>/` (and the crashing inputs kept
/// there) and a fixed number of inputs mutated from them ([Fuzz#run]); `scripts/fuzz.sh formats safetensors` fuzzes
/// the Jazzer twin coverage-guided.
class FormatsFuzzTest {

    @Tag("jazzer")
    @FuzzTest(maxDuration = "60s")
    void safetensors(byte[] data) {
        Fuzz.contract(data, 1_000, d -> {
            Path f = Files.createTempFile("fuzz", ".safetensors");
            try {
                Files.write(f, d);
                try (SafeTensors st = SafeTensors.open(f)) {
                    for (String name : st.tensors().keySet()) assertNotNull(st.bytes(name));
                }
            } finally {
                Files.deleteIfExists(f);
            }
        });
    }

    @Tag("jazzer")
    @FuzzTest(maxDuration = "60s")
    void gguf(byte[] data) {
        Fuzz.contract(data, 1_000, d -> {
            Path f = Files.createTempFile("fuzz", ".gguf");
            try {
                Files.write(f, d);
                try (GgufFile g = GgufFile.open(f)) {
                    assertNotNull(g.tensors());
                }
            } finally {
                Files.deleteIfExists(f);
            }
        });
    }

    /// The sharded index: `model.safetensors.index.json` is the input, beside two fixed shards (tensors "a" in the
    /// first, "b" in the second, written once per JVM); every tensor it maps is read.
    @Tag("jazzer")
    @FuzzTest(maxDuration = "60s")
    void shardedIndex(byte[] data) {
        Path dir = shards();
        Fuzz.contract(data, 1_000, d -> {
            Files.write(dir.resolve(ShardedSafeTensors.INDEX), d);
            try (ShardedSafeTensors st = ShardedSafeTensors.open(dir)) {
                for (String name : st.tensors().keySet()) assertNotNull(st.readFloats(name));
            }
        });
    }

    private static Path shardDir;

    private static synchronized Path shards() {
        if (shardDir == null) {
            try {
                Path dir = Files.createTempDirectory("fuzz-sharded");
                MemorySegment a = MemorySegment.ofArray(new float[] {1, 2, 3, 4}), b = MemorySegment.ofArray(new float[] {5, 6});
                ShardedSafeTensors.write(dir, List.of(new SafeTensors.Entry("a", DType.F32, new long[] {2, 2}, a),
                        new SafeTensors.Entry("b", DType.F32, new long[] {2}, b)), 16, Map.of("format", "pt"));
                if (!Files.isRegularFile(dir.resolve("model-00002-of-00002.safetensors"))) throw new AssertionError("expected two shards in " + dir);
                shardDir = dir;
            } catch (java.io.IOException e) {
                throw new java.io.UncheckedIOException(e);
            }
        }
        return shardDir;
    }

    static final Path INPUTS = Path.of("src/test/resources/org/peft4j/formats/fuzz/FormatsFuzzTestInputs");

    @Test
    void safetensorsMutated() { Fuzz.run("safetensors", Fuzz.seeds(INPUTS.resolve("safetensors")), 600, Duration.ofSeconds(5), this::safetensors); }

    @Test
    void shardedIndexMutated() { Fuzz.run("shardedIndex", Fuzz.seeds(INPUTS.resolve("shardedIndex")), 600, Duration.ofSeconds(5), this::shardedIndex); }

    @Test
    void ggufMutated() { Fuzz.run("gguf", Fuzz.seeds(INPUTS.resolve("gguf")), 600, Duration.ofSeconds(5), this::gguf); }
}
