package org.peft4j.formats.safetensors;

import com.fasterxml.jackson.core.JacksonException;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import org.peft4j.core.Peft4jException.FormatException;
import org.peft4j.formats.json.PyJson;
import org.peft4j.formats.safetensors.SafeTensors.Entry;

import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.regex.Pattern;
import java.util.stream.Stream;

/// A Hugging Face checkpoint directory seen as one name → tensor map: either `model.safetensors` or the shards listed
/// by `model.safetensors.index.json` (`{"metadata": {"total_size": …}, "weight_map": {name: shard file}}`).
/// The read API mirrors [SafeTensors]; [#write] splits tensors into shards as transformers' `save_pretrained` does.
/// Reference: transformers `modeling_utils.py` (`save_pretrained`, sharded loading), huggingface_hub
/// `split_torch_state_dict_into_shards`; specs.md §6.1.
public final class ShardedSafeTensors implements AutoCloseable {
    public static final String SINGLE = "model.safetensors";
    public static final String INDEX = "model.safetensors.index.json";
    private static final Pattern OURS = Pattern.compile("model(-\\d{5}-of-\\d{5})?\\.safetensors|model\\.safetensors\\.index\\.json");

    private final Path dir;
    private final List<SafeTensors> shards;          // in file-name order
    private final Map<String, SafeTensors> byName;   // tensor name → its shard
    private final Map<String, TensorInfo> tensors;   // offsets relative to the tensor's own shard

    private ShardedSafeTensors(Path dir, List<SafeTensors> shards, Map<String, SafeTensors> byName) {
        this.dir = dir; this.shards = shards; this.byName = byName;
        Map<String, TensorInfo> t = new LinkedHashMap<>();
        byName.forEach((name, shard) -> t.put(name, shard.info(name)));
        this.tensors = Collections.unmodifiableMap(t);
    }

    /// Opens `dir/model.safetensors.index.json` if present, else `dir/model.safetensors`. `dir` may also name a
    /// `.safetensors` file or an index file directly. A missing shard, or a weight_map entry absent from its shard,
    /// is a [FormatException] naming both files.
    public static ShardedSafeTensors open(Path dir) { return open(dir, null); }

    /// As [#open], mapping every shard into the caller's `arena` ([SafeTensors#open(Path, Arena)]): tensor bytes stay
    /// valid after [#close] (which closes the files) for as long as the arena lives (null: each shard owns its mapping,
    /// closed by [#close]).
    public static ShardedSafeTensors open(Path dir, Arena arena) {
        if (Files.isRegularFile(dir)) {
            if (dir.getFileName().toString().endsWith(".json")) return openIndex(dir.toAbsolutePath().getParent(), dir, arena);
            return single(dir.toAbsolutePath().getParent(), dir, arena);
        }
        if (Files.isRegularFile(dir.resolve(INDEX))) return openIndex(dir, dir.resolve(INDEX), arena);
        if (Files.isRegularFile(dir.resolve(SINGLE))) return single(dir, dir.resolve(SINGLE), arena);
        throw new FormatException(dir + ": neither " + INDEX + " nor " + SINGLE + " found; point to a Hugging Face model "
                + "directory saved with safetensors (PyTorch .bin checkpoints must be converted first)");
    }

    private static SafeTensors openShard(Path file, Arena arena) {
        return arena == null ? SafeTensors.open(file) : SafeTensors.open(file, arena);
    }

    private static ShardedSafeTensors single(Path dir, Path file, Arena arena) {
        SafeTensors st = openShard(file, arena);
        Map<String, SafeTensors> byName = new LinkedHashMap<>();
        for (String name : st.tensors().keySet()) byName.put(name, st);
        return new ShardedSafeTensors(dir, List.of(st), byName);
    }

    private static ShardedSafeTensors openIndex(Path dir, Path index, Arena arena) {
        JsonNode map;
        try {
            map = new ObjectMapper().readTree(index.toFile()).get("weight_map");
        } catch (JacksonException e) {
            throw new FormatException(index + ": not valid JSON (" + e.getOriginalMessage() + ")", e);
        } catch (IOException e) {
            throw new FormatException(index + ": cannot read: " + e, e);
        }
        if (map == null || !map.isObject()) throw new FormatException(index + ": no \"weight_map\" object; "
                + "a sharded checkpoint index maps every tensor name to its shard file");
        Map<String, SafeTensors> files = new TreeMap<>();
        Map<String, SafeTensors> byName = new LinkedHashMap<>();
        try {
            for (Map.Entry<String, JsonNode> e : map.properties()) {
                String shard = e.getValue().isTextual() ? e.getValue().textValue() : null;
                Path p = shard == null ? null : dir.resolve(shard).normalize();
                if (p == null || !p.startsWith(dir.normalize()) || shard.isEmpty())
                    throw new FormatException(index + ": weight_map entry '" + e.getKey() + "' names shard " + e.getValue()
                            + ", expected a file name inside " + dir);
                SafeTensors st = files.get(shard);
                if (st == null) {
                    if (!Files.isRegularFile(p)) throw new FormatException(index + ": shard " + shard + " (holding '"
                            + e.getKey() + "') is missing from " + dir + "; download the complete checkpoint");
                    st = openShard(p, arena);
                    files.put(shard, st);
                }
                if (!st.contains(e.getKey())) throw new FormatException(index + ": tensor '" + e.getKey() + "' is mapped to "
                        + p + ", which does not contain it; the index and the shards come from different saves");
                byName.put(e.getKey(), st);
            }
        } catch (RuntimeException e) {
            files.values().forEach(SafeTensors::close);
            throw e;
        }
        return new ShardedSafeTensors(dir, List.copyOf(files.values()), byName);
    }

    public Path dir() { return dir; }
    /// All tensors across shards; each [TensorInfo]'s offsets are relative to its own shard ([#shardOf]).
    public Map<String, TensorInfo> tensors() { return tensors; }
    public boolean contains(String name) { return tensors.containsKey(name); }
    /// The open shard files, in file-name order.
    public List<SafeTensors> shards() { return shards; }
    /// `__metadata__` of the first shard (transformers writes the same `{"format": "pt"}` into each).
    public Map<String, String> metadata() { return shards.isEmpty() ? Map.of() : shards.getFirst().metadata(); }

    public SafeTensors shardOf(String name) {
        SafeTensors s = byName.get(name);
        if (s == null) throw new FormatException(dir + ": no tensor named '" + name + "' in this checkpoint ("
                + tensors.size() + " tensors); check the checkpoint matches the model");
        return s;
    }

    public TensorInfo info(String name) { return shardOf(name).info(name); }
    public MemorySegment bytes(String name) { return shardOf(name).bytes(name); }
    public float[] readFloats(String name) { return shardOf(name).readFloats(name); }
    public void readFloats(String name, float[] dst, int dstOff) { shardOf(name).readFloats(name, dst, dstOff); }
    /// [SafeTensors#readShorts] in the tensor's shard.
    public void readShorts(String name, short[] dst) { shardOf(name).readShorts(name, dst); }
    /// [SafeTensors#readFloatsUnmapped] in the tensor's shard.
    public void readFloatsUnmapped(String name, long from, float[] dst, int count) { shardOf(name).readFloatsUnmapped(name, from, dst, count); }

    @Override
    public void close() { for (SafeTensors s : shards) s.close(); }

    /// Writes `entries` into `dir` (created if needed) in shards of at most `maxShardBytes` tensor bytes (headers not
    /// counted; a tensor larger than the limit gets a shard of its own), filling shards in the given order as
    /// huggingface_hub's `split_torch_state_dict_into_shards` does. One shard → `model.safetensors`; otherwise
    /// `model-00001-of-0000N.safetensors` … and `model.safetensors.index.json` (`json.dumps(indent=2,
    /// sort_keys=True)` + newline, `metadata.total_size` = all tensor bytes). Each shard carries `metadata`.
    /// Checkpoint files of an earlier save in `dir` that this save did not write are deleted (as transformers does),
    /// so a re-export with fewer shards leaves no stale shard behind. `--export_size 5` means 5·10⁹ bytes.
    public static List<Path> write(Path dir, List<Entry> entries, long maxShardBytes, Map<String, String> metadata) {
        if (maxShardBytes <= 0) throw new IllegalArgumentException("maxShardBytes must be positive, got " + maxShardBytes);
        java.util.Set<String> seen = new java.util.HashSet<>();
        for (Entry e : entries) if (!seen.add(e.name()))
            throw new IllegalArgumentException(dir + ": tensor '" + e.name() + "' is given twice; tensor names must be unique");
        List<List<Entry>> groups = groups(entries, e -> e.bytes().byteSize(), maxShardBytes);
        long total = entries.stream().mapToLong(e -> e.bytes().byteSize()).sum();
        createDir(dir);
        List<Path> written = new ArrayList<>();
        Map<String, String> weightMap = new TreeMap<>();
        for (int i = 0; i < groups.size(); i++) {
            Path file = dir.resolve(shardName(i, groups.size()));
            SafeTensors.write(file, groups.get(i), metadata);
            for (Entry e : groups.get(i)) weightMap.put(e.name(), file.getFileName().toString());
            written.add(file);
        }
        finish(dir, groups.size(), total, weightMap, written);
        return written;
    }

    /// Tensors into shards of at most `max` bytes, in the given order (huggingface_hub's split).
    private static <T> List<List<T>> groups(List<T> items, java.util.function.ToLongFunction<T> size, long max) {
        List<List<T>> groups = new ArrayList<>();
        List<T> current = new ArrayList<>();
        long currentSize = 0;
        for (T e : items) {
            long s = size.applyAsLong(e);
            if (s > max) { groups.add(List.of(e)); continue; }
            if (currentSize + s > max && !current.isEmpty()) {
                groups.add(current);
                current = new ArrayList<>();
                currentSize = 0;
            }
            current.add(e);
            currentSize += s;
        }
        if (!current.isEmpty() || groups.isEmpty()) groups.add(current);
        return groups;
    }

    private static String shardName(int i, int n) { return n == 1 ? SINGLE : String.format("model-%05d-of-%05d.safetensors", i + 1, n); }

    private static void createDir(Path dir) {
        try {
            Files.createDirectories(dir);
        } catch (IOException e) {
            throw new FormatException(dir + ": cannot create the output directory: " + e, e);
        }
    }

    /// The index (sharded saves) and the removal of an earlier save's files.
    private static void finish(Path dir, int shards, long total, Map<String, String> weightMap, List<Path> written) {
        if (shards > 1) {
            byte[] json = indexJson(total, weightMap).getBytes(StandardCharsets.UTF_8);
            Writer.atomically(dir.resolve(INDEX), ch -> ch.write(java.nio.ByteBuffer.wrap(json)));
            written.add(dir.resolve(INDEX));
        }
        removeStale(dir, written);
    }

    /// A tensor of a checkpoint written by [Streamed]: name, dtype and shape, before its bytes exist.
    public record Spec(String name, org.peft4j.core.DType dtype, long[] shape) {
        public Spec { shape = shape.clone(); }
        @Override public long[] shape() { return shape.clone(); }
        long bytes() { return TensorInfo.numel(shape, name) * dtype.bytes; }
    }

    /// A checkpoint written one tensor at a time, in any order, for checkpoints larger than memory: the files
    /// (shards, index, headers, layout) are those [#write] writes for the same tensors in the same `specs` order,
    /// byte for byte, but a tensor's bytes need to exist only while it is [#put]. Shards go to temp files;
    /// [#close] checks that every tensor was put and renames them into place (on a failure they are removed).
    public static final class Streamed implements AutoCloseable {
        private final Path dir;
        private final List<Writer.Positional> shards = new ArrayList<>();
        private final List<Path> files = new ArrayList<>();
        private final Map<String, String> weightMap = new TreeMap<>();
        private final long total;
        private boolean failed;

        private Streamed(Path dir, List<Spec> specs, long maxShardBytes, Map<String, String> metadata) {
            this.dir = dir;
            java.util.Set<String> seen = new java.util.HashSet<>();
            for (Spec s : specs) if (!seen.add(s.name()))
                throw new IllegalArgumentException(dir + ": tensor '" + s.name() + "' is given twice; tensor names must be unique");
            List<List<Spec>> groups = groups(specs, Spec::bytes, maxShardBytes);
            total = specs.stream().mapToLong(Spec::bytes).sum();
            createDir(dir);
            try {
                for (int i = 0; i < groups.size(); i++) {
                    Path file = dir.resolve(shardName(i, groups.size()));
                    shards.add(new Writer.Positional(file, groups.get(i).stream()
                            .map(s -> new Writer.Layout(s.name(), s.dtype(), s.shape(), s.bytes())).toList(), metadata));
                    files.add(file);
                    for (Spec s : groups.get(i)) weightMap.put(s.name(), file.getFileName().toString());
                }
            } catch (RuntimeException e) {
                shards.forEach(Writer.Positional::abort);
                throw e;
            }
        }

        /// Starts writing `specs` into `dir` in shards of at most `maxShardBytes` (as [#write]).
        public static Streamed open(Path dir, List<Spec> specs, long maxShardBytes, Map<String, String> metadata) {
            if (maxShardBytes <= 0) throw new IllegalArgumentException("maxShardBytes must be positive, got " + maxShardBytes);
            return new Streamed(dir, specs, maxShardBytes, metadata);
        }

        /// Writes tensor `name`'s little-endian bytes at its place; `bytes` may be dropped once this returns.
        public void put(String name, MemorySegment bytes) {
            try {
                for (Writer.Positional s : shards) if (s.holds(name)) { s.put(name, bytes); return; }
                throw new IllegalArgumentException(dir + ": tensor '" + name + "' is not one of the checkpoint's tensors");
            } catch (RuntimeException e) {
                failed = true;
                throw e;
            }
        }

        @Override
        public void close() {
            if (failed) { shards.forEach(Writer.Positional::abort); return; }
            try {
                for (Writer.Positional s : shards) s.commit();
            } catch (RuntimeException e) {
                shards.forEach(Writer.Positional::abort);
                throw e;
            }
            finish(dir, shards.size(), total, weightMap, new ArrayList<>(files));
        }
    }

    /// Python `json.dumps({"metadata": {"total_size": t}, "weight_map": m}, indent=2, sort_keys=True) + "\n"`.
    static String indexJson(long totalSize, Map<String, String> weightMap) {
        return PyJson.dumps(Map.of("metadata", Map.of("total_size", totalSize), "weight_map", weightMap), true, 2, null, null, true) + "\n";
    }

    private static void removeStale(Path dir, List<Path> written) {
        try (Stream<Path> files = Files.list(dir)) {
            for (Path p : files.toList()) {
                if (OURS.matcher(p.getFileName().toString()).matches() && !written.contains(p)) Files.delete(p);
            }
        } catch (IOException e) {
            throw new FormatException(dir + ": wrote the new checkpoint but could not remove an older one's files: " + e, e);
        }
    }
}
