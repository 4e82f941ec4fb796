package org.peft4j.model;

import org.peft4j.core.DType;
import org.peft4j.formats.safetensors.ShardedSafeTensors;
import org.peft4j.formats.safetensors.TensorInfo;
import org.peft4j.model.llama.LlamaWeights;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;

/// What `peft4j inspect` prints: the config, the tensor table and the parameter count, read from headers only
/// (no weights are converted).
public record ModelInfo(LlamaConfig config, List<Row> tensors) {

    public record Row(String name, DType dtype, long[] shape) {
        public long numel() { return Arrays.stream(shape).reduce(1, Math::multiplyExact); }
    }

    public ModelInfo { tensors = List.copyOf(tensors); }

    /// From a model folder's config.json and safetensors headers.
    public static ModelInfo read(Path dir) {
        LlamaConfig c = LlamaConfig.read(dir);
        List<Row> rows = new ArrayList<>();
        try (ShardedSafeTensors st = ShardedSafeTensors.open(dir)) {
            for (TensorInfo t : st.tensors().values()) rows.add(new Row(t.name(), t.dtype(), t.shape()));
        }
        return new ModelInfo(c, rows);
    }

    /// The tensors a checkpoint of `c` would hold, in `dtype` (for presets).
    public static ModelInfo of(LlamaConfig c, DType dtype) {
        List<Row> rows = new ArrayList<>();
        for (Map.Entry<String, long[]> e : LlamaWeights.expectedShapes(c).entrySet()) rows.add(new Row(e.getKey(), dtype, e.getValue()));
        return new ModelInfo(c, rows);
    }

    /// Parameters stored (a tied embedding is stored, and counted, once).
    public long parameterCount() {
        long n = 0;
        for (Row r : tensors) n += r.numel();
        return n;
    }

    public long bytes() {
        long n = 0;
        for (Row r : tensors) n += r.numel() * r.dtype().bytes;
        return n;
    }

    /// A printable report: one line of architecture, the main hyper-parameters, the tensor table, totals.
    public String summary() {
        LlamaConfig c = config;
        StringBuilder sb = new StringBuilder();
        sb.append(String.format("architecture   %s (%s)%n", c.architecture().modelType(), c.architecture().hfClassName()));
        sb.append(String.format("layers %d | hidden %d | ffn %d | heads %d | kv heads %d | head dim %d | vocab %d%n",
                c.numHiddenLayers(), c.hiddenSize(), c.intermediateSize(), c.numAttentionHeads(), c.numKeyValueHeads(),
                c.headDim(), c.vocabSize()));
        sb.append(String.format("context %d | rope theta %s | rope scaling %s | rms eps %s | tied embeddings %s%s%n",
                c.maxPositionEmbeddings(), c.ropeTheta(), c.ropeScaling(), c.rmsNormEps(), c.tieWordEmbeddings(),
                c.slidingWindow() > 0 ? " | sliding window " + c.slidingWindow() : ""));
        int w = 4;
        for (Row r : tensors) w = Math.max(w, r.name().length());
        sb.append(String.format("%-" + w + "s  %-5s  %s%n", "name", "dtype", "shape"));
        for (Row r : tensors) sb.append(String.format("%-" + w + "s  %-5s  %s%n", r.name(), r.dtype(), Arrays.toString(r.shape())));
        long p = parameterCount();
        sb.append(String.format("parameters %,d (%.1f M) | %d tensors | %.1f MiB%n", p, p / 1e6, tensors.size(), bytes() / 1048576.0));
        return sb.toString();
    }
}
