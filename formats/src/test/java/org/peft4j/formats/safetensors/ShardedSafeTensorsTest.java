package org.peft4j.formats.safetensors;

import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.peft4j.core.DType;
import org.peft4j.core.Peft4jException.FormatException;
import org.peft4j.formats.safetensors.SafeTensors.Entry;
import org.peft4j.testkit.Shared;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.*;

/// Sharded checkpoints: the split rule, the index file's exact text, one view across shards, and broken indexes.
class ShardedSafeTensorsTest {
    @TempDir Path tmp;

    private static Entry floats(String name, int n, float base) {
        float[] x = new float[n];
        for (int i = 0; i < n; i++) x[i] = base + i;
        return Entry.ofFloats(name, new long[]{n}, x, DType.F32);
    }

    /// 40-byte limit, tensors a, b, big, c, d of 16, 16, 100, 16, 8 bytes: huggingface_hub's
    /// `split_state_dict_into_shards_factory` emits [big] at once (larger than the limit), then [a, b] when c does not
    /// fit, then [c, d] — shards are numbered in emission order.
    @Test
    void splitsLikeHuggingFaceAndReadsBackAsOneView() throws IOException {
        List<Entry> entries = List.of(floats("a", 4, 0), floats("b", 4, 10), floats("big", 25, 100), floats("c", 4, 20), floats("d", 2, 30));
        List<Path> files = ShardedSafeTensors.write(tmp, entries, 40, Map.of("format", "pt"));
        assertEquals(List.of("model-00001-of-00003.safetensors", "model-00002-of-00003.safetensors",
                "model-00003-of-00003.safetensors", "model.safetensors.index.json"), files.stream().map(p -> p.getFileName().toString()).toList());
        String expectedIndex = """
                {
                  "metadata": {
                    "total_size": 156
                  },
                  "weight_map": {
                    "a": "model-00002-of-00003.safetensors",
                    "b": "model-00002-of-00003.safetensors",
                    "big": "model-00001-of-00003.safetensors",
                    "c": "model-00003-of-00003.safetensors",
                    "d": "model-00003-of-00003.safetensors"
                  }
                }
                """;
        assertEquals(expectedIndex, Files.readString(tmp.resolve("model.safetensors.index.json")));
        try (ShardedSafeTensors st = ShardedSafeTensors.open(tmp)) {
            assertEquals(3, st.shards().size());
            assertEquals(5, st.tensors().size());
            assertEquals(Map.of("format", "pt"), st.metadata());
            for (Entry e : entries) {
                float[] got = st.readFloats(e.name());
                for (int i = 0; i < got.length; i++) assertEquals(e.bytes().getAtIndex(SafeTensors.F32_LE, i), got[i], e.name() + "[" + i + "]");
                assertArrayEquals(e.shape(), st.info(e.name()).shape());
            }
            float[] dst = new float[6];
            st.readFloats("d", dst, 4);
            assertArrayEquals(new float[]{0, 0, 0, 0, 30, 31}, dst);
            assertTrue(st.contains("big") && !st.contains("e"));
            assertThrows(FormatException.class, () -> st.info("e"));
        }
        // a re-export that fits one file replaces the shards and the index
        ShardedSafeTensors.write(tmp, entries, 1 << 20, null);
        try (var list = Files.list(tmp)) { assertEquals(List.of(tmp.resolve("model.safetensors")), list.toList()); }
        try (ShardedSafeTensors st = ShardedSafeTensors.open(tmp)) {
            assertEquals(1, st.shards().size());
            assertArrayEquals(new float[]{100, 101, 102}, java.util.Arrays.copyOf(st.readFloats("big"), 3));
        }
    }

    @Test
    void missingShardAndMisplacedTensorAreReported() throws IOException {
        ShardedSafeTensors.write(tmp, List.of(floats("a", 4, 0), floats("b", 4, 0)), 16, null);
        Path index = tmp.resolve("model.safetensors.index.json");
        String text = Files.readString(index);
        Files.writeString(index, text.replace("\"b\": \"model-00002-of-00002", "\"b\": \"model-00001-of-00002"));
        var e = assertThrows(FormatException.class, () -> ShardedSafeTensors.open(tmp));
        assertTrue(e.getMessage().contains("'b'") && e.getMessage().contains("model-00001-of-00002") && e.getMessage().contains("does not contain"), e.getMessage());
        Files.writeString(index, text);
        Files.delete(tmp.resolve("model-00002-of-00002.safetensors"));
        e = assertThrows(FormatException.class, () -> ShardedSafeTensors.open(tmp));
        assertTrue(e.getMessage().contains("model-00002-of-00002.safetensors") && e.getMessage().contains("missing"), e.getMessage());
        Files.writeString(index, "{\"weight_map\": {\"a\": \"../escape.safetensors\"}}");
        assertThrows(FormatException.class, () -> ShardedSafeTensors.open(tmp));
        Files.writeString(index, "{\"weight_map\": [");
        assertThrows(FormatException.class, () -> ShardedSafeTensors.open(tmp));
        e = assertThrows(FormatException.class, () -> ShardedSafeTensors.open(tmp.resolve("nothing-here")));
        assertTrue(e.getMessage().contains("model.safetensors"), e.getMessage());
    }

    @Tag("slow")
    @Test
    void realModelThroughTheShardedView() {
        Path dir = Shared.require("models/tinystories-656k");
        try (ShardedSafeTensors st = ShardedSafeTensors.open(dir); SafeTensors one = SafeTensors.open(dir.resolve("model.safetensors"))) {
            assertEquals(one.tensors().keySet(), st.tensors().keySet());
            assertArrayEquals(one.readFloats("model.norm.weight"), st.readFloats("model.norm.weight"));
            List<Entry> entries = new ArrayList<>();
            for (TensorInfo t : one.tensors().values()) entries.add(new Entry(t.name(), t.dtype(), t.shape(), one.bytes(t.name())));
            ShardedSafeTensors.write(tmp, entries, 600_000, one.metadata());
            try (ShardedSafeTensors back = ShardedSafeTensors.open(tmp)) {
                assertTrue(back.shards().size() > 1);
                for (String name : one.tensors().keySet()) assertArrayEquals(one.readFloats(name), back.readFloats(name), name);
            }
        }
    }
}
