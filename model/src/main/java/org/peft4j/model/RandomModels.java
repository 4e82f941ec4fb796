package org.peft4j.model;

import org.peft4j.core.DType;
import org.peft4j.core.Parallel;
import org.peft4j.core.Peft4jException.ConfigException;
import org.peft4j.formats.safetensors.SafeTensors;
import org.peft4j.formats.safetensors.ShardedSafeTensors;
import org.peft4j.model.llama.LayerTensor;
import org.peft4j.model.llama.LlamaWeights;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;

/// Random-weight models for benchmarks and round-trip tests, initialized as transformers' `_init_weights`:
/// Linear and Embedding weights ~ normal(0, initializer_range), biases 0, RMSNorm weights 1.
/// Each tensor draws from its own stream split from the seed in name-table order, so results do not depend on threads.
public final class RandomModels {
    private RandomModels() {}

    public static LlamaWeights create(LlamaConfig c, long seed) {
        // counted per layer (one layer's shapes times the layer count), not through expectedShapes: a config with 10^6
        // layers would allocate a map of millions of shapes before being refused
        double perLayer = 0;
        for (org.peft4j.model.llama.LayerTensor t : org.peft4j.model.llama.LayerTensor.values())
            if (t.present(c)) perLayer += Arrays.stream(t.shape(c)).asDoubleStream().reduce(1, (a, b) -> a * b);
        double total = (double) c.vocabSize() * c.hiddenSize() * (c.tieWordEmbeddings() ? 1 : 2) + c.hiddenSize() + perLayer * c.numHiddenLayers();
        if (total * 4 > Runtime.getRuntime().maxMemory())
            throw new ConfigException(String.format(java.util.Locale.ROOT, "a random %s with %.0f parameters (%d layers) needs %.0f MiB as float32, "
                    + "more than the heap's %d MiB; raise -Xmx", c.architecture().modelType(), total, c.numHiddenLayers(), total * 4 / (1L << 20),
                    Runtime.getRuntime().maxMemory() / (1L << 20)));
        SplittableRandom root = new SplittableRandom(seed);
        float std = (float) c.initializerRange();
        float[] embed = normal(c.vocabSize() * c.hiddenSize(), root.split(), std);
        List<LlamaWeights.Layer> layers = new ArrayList<>();
        for (int l = 0; l < c.numHiddenLayers(); l++) {
            SplittableRandom layerRng = root.split();
            SplittableRandom[] streams = new SplittableRandom[LayerTensor.values().length];
            for (int i = 0; i < streams.length; i++) streams[i] = layerRng.split();
            float[][] t = new float[streams.length][];
            Parallel.range(streams.length, i -> {
                LayerTensor lt = LayerTensor.values()[i];
                if (!lt.present(c)) return;
                int n = Math.toIntExact(Arrays.stream(lt.shape(c)).reduce(1, Math::multiplyExact));
                t[i] = switch (lt) {
                    case INPUT_LAYERNORM, POST_ATTENTION_LAYERNORM -> ones(n);
                    case Q_BIAS, K_BIAS, V_BIAS, O_BIAS, GATE_BIAS, UP_BIAS, DOWN_BIAS -> new float[n];
                    default -> normal(n, streams[i], std);
                };
            });
            layers.add(LlamaWeights.Layer.of(lt -> t[lt.ordinal()]));
        }
        float[] head = c.tieWordEmbeddings() ? embed : normal(c.vocabSize() * c.hiddenSize(), root.split(), std);
        return new LlamaWeights(c, embed, ones(c.hiddenSize()), head, layers);
    }

    /// Writes `dir/config.json` and `dir/model.safetensors` (dtype F32, BF16 or F16), loadable by `Models.load` and
    /// by transformers' from_pretrained.
    public static void save(Path dir, LlamaWeights w, DType dtype) {
        try {
            Files.createDirectories(dir);
            Files.writeString(dir.resolve("config.json"), w.config.toJson());
        } catch (IOException e) {
            throw new UncheckedIOException("cannot write " + dir.resolve("config.json") + ": " + e.getMessage(), e);
        }
        Map<String, long[]> shapes = LlamaWeights.expectedShapes(w.config);
        List<SafeTensors.Entry> entries = new ArrayList<>();
        for (var e : w.tensors().entrySet())
            entries.add(SafeTensors.Entry.ofFloats(e.getKey(), shapes.get(e.getKey()), e.getValue(), dtype));
        SafeTensors.write(dir.resolve("model.safetensors"), entries, Map.of("format", "pt"));
    }

    /// `save(dir, create(c, seed), dtype)`'s tensors (the same values, rounded to `dtype`), generated and written one
    /// at a time into shards of at most `maxShardBytes` (`save_pretrained`'s 5 GB: `model.safetensors` when it fits
    /// one, else `model-0000i-of-0000n.safetensors` and an index): a Llama-2-7B-shaped checkpoint is written with
    /// memory for its largest tensor, never the model. Same bytes as [#save] when a single file results.
    public static void saveStreamed(Path dir, LlamaConfig c, long seed, DType dtype, long maxShardBytes) {
        if (dtype != DType.F32 && dtype != DType.BF16 && dtype != DType.F16) throw new ConfigException("--dtype must be F32, BF16 or F16, got " + dtype);
        try {
            Files.createDirectories(dir);
            Files.writeString(dir.resolve("config.json"), c.toJson());
        } catch (IOException e) {
            throw new UncheckedIOException("cannot write " + dir.resolve("config.json") + ": " + e.getMessage(), e);
        }
        Map<String, long[]> shapes = LlamaWeights.expectedShapes(c);
        List<ShardedSafeTensors.Spec> specs = new ArrayList<>();
        for (var e : shapes.entrySet()) specs.add(new ShardedSafeTensors.Spec(e.getKey(), dtype, e.getValue()));
        SplittableRandom root = new SplittableRandom(seed);   // split in create's order: embeddings, layers, lm_head
        float std = (float) c.initializerRange();
        int VC = Math.multiplyExact(c.vocabSize(), c.hiddenSize());
        try (ShardedSafeTensors.Streamed out = ShardedSafeTensors.Streamed.open(dir, specs, maxShardBytes, Map.of("format", "pt"))) {
            out.put(LlamaWeights.EMBED_TOKENS, bytes(normal(VC, root.split(), std), dtype));
            for (int l = 0; l < c.numHiddenLayers(); l++) {
                SplittableRandom layerRng = root.split();
                SplittableRandom[] streams = new SplittableRandom[LayerTensor.values().length];
                for (int i = 0; i < streams.length; i++) streams[i] = layerRng.split();
                for (LayerTensor lt : LayerTensor.values()) {   // one tensor alive at a time
                    if (!lt.present(c)) continue;
                    int n = Math.toIntExact(Arrays.stream(lt.shape(c)).reduce(1, Math::multiplyExact));
                    float[] t = switch (lt) {
                        case INPUT_LAYERNORM, POST_ATTENTION_LAYERNORM -> ones(n);
                        case Q_BIAS, K_BIAS, V_BIAS, O_BIAS, GATE_BIAS, UP_BIAS, DOWN_BIAS -> new float[n];
                        default -> normal(n, streams[lt.ordinal()], std);
                    };
                    out.put(lt.name(l), bytes(t, dtype));
                }
            }
            out.put(LlamaWeights.NORM, bytes(ones(c.hiddenSize()), dtype));
            if (!c.tieWordEmbeddings()) out.put(LlamaWeights.LM_HEAD, bytes(normal(VC, root.split(), std), dtype));
        }
    }

    private static java.lang.foreign.MemorySegment bytes(float[] t, DType dtype) {
        return SafeTensors.Entry.ofFloats("t", new long[]{t.length}, t, dtype).bytes();
    }

    private static float[] normal(int n, SplittableRandom rng, float std) {
        float[] a = new float[n];
        for (int i = 0; i < n; i++) a[i] = (float) rng.nextGaussian() * std;
        return a;
    }

    private static float[] ones(int n) {
        float[] a = new float[n];
        Arrays.fill(a, 1f);
        return a;
    }
}
