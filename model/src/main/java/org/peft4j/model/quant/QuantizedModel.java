package org.peft4j.model.quant;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import org.peft4j.core.DType;
import org.peft4j.core.Gemm;
import org.peft4j.core.Parallel;
import org.peft4j.core.Peft4jException;
import org.peft4j.core.Peft4jException.ConfigException;
import org.peft4j.core.Peft4jException.FormatException;
import org.peft4j.core.Peft4jException.UnsupportedModelException;
import org.peft4j.formats.safetensors.SafeTensors;
import org.peft4j.formats.safetensors.ShardedSafeTensors;
import org.peft4j.formats.safetensors.TensorInfo;
import org.peft4j.model.LlamaConfig;
import org.peft4j.model.llama.LayerTensor;
import org.peft4j.model.llama.Projection;
import org.peft4j.model.llama.LlamaWeights;
import org.peft4j.model.adapter.lora.LoraLinear;
import org.peft4j.model.adapter.lora.LoraWeights;
import org.peft4j.model.adapter.lora.PeftAdapter;
import org.peft4j.model.llama.TensorSource;
import org.peft4j.model.weights.DenseHalf;
import org.peft4j.quant.Nf4Tensor;
import org.peft4j.quant.Nf4Tensor.Absmax;
import org.peft4j.quant.QuantType;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.SplittableRandom;

/// A Llama-family model whose seven decoder linear weights are bitsandbytes 4-bit tensors (QLoRA's frozen base);
/// norms and biases stay float32 in `weights`, whose linear weight slots are null. The embeddings and lm_head are
/// float32 there too, or kept in 16 bits ([#embed16], [#head16], with the float slots null): a checkpoint that stores
/// them as BF16/F16 is read so, never widened (at Llama-2-7B the pair is 0.5 GB instead of 1 GB); the embedding is
/// then a row gather and lm_head a tiled converting product, forward and dX alike ([DenseHalf]).
/// Owns the Hugging Face layout of such a checkpoint (`quantization_config`, the `weight.absmax` … `quant_state`
/// keys of a `Linear4bit`, specs.md §1.5); the 4-bit numerics are `Nf4Tensor`'s, the matmul `QuantLinear`'s.
/// Reference: transformers `BitsAndBytesConfig`, bitsandbytes `Linear4bit._save_to_state_dict`, `QuantState.from_dict`.
public final class QuantizedModel {
    private static final System.Logger LOG = System.getLogger(QuantizedModel.class.getName());

    /// The quantized weights in module order (q, k, v, o, gate, up, down), the order of `linears[l]`.
    public static final List<LayerTensor> LINEARS = Projection.ALL.stream().map(p -> p.weight).toList();
    /// safetensors key suffixes of a Linear4bit weight, after `<prefix>weight`.
    static final String ABSMAX = ".absmax", QUANT_MAP = ".quant_map", NESTED_ABSMAX = ".nested_absmax",
            NESTED_QUANT_MAP = ".nested_quant_map", QUANT_STATE = ".quant_state.bitsandbytes__";

    public final LlamaConfig config;
    public final LlamaWeights weights;     // float tensors; the seven linear weights of each layer are null
    public final DenseHalf embed16;        // (V, C) embed_tokens kept in 16 bits, or null (float32 weights.embedTokens)
    public final DenseHalf head16;         // (V, C) lm_head kept in 16 bits (embed16 itself when tied), or null
    public final Nf4Tensor[][] linears;    // (L)(7), in LINEARS order
    public final QuantType type;           // bnb_4bit_quant_type
    public final boolean doubleQuant;      // bnb_4bit_use_double_quant

    public QuantizedModel(LlamaWeights weights, Nf4Tensor[][] linears, QuantType type, boolean doubleQuant) {
        this(weights, null, null, linears, type, doubleQuant);
    }

    /// With the embeddings and/or lm_head in 16 bits: `embed16` (`head16`) non-null exactly when
    /// `weights.embedTokens` (`weights.lmHead`) is null.
    public QuantizedModel(LlamaWeights weights, DenseHalf embed16, DenseHalf head16, Nf4Tensor[][] linears, QuantType type, boolean doubleQuant) {
        this.config = weights.config; this.weights = weights; this.linears = linears; this.type = type; this.doubleQuant = doubleQuant;
        this.embed16 = embed16; this.head16 = head16;
        LlamaConfig c = config;
        if ((embed16 == null) == (weights.embedTokens == null) || (head16 == null) == (weights.lmHead == null))
            throw new IllegalArgumentException("the embeddings and lm_head are each held once: in 16 bits or as float32 weights");
        if (c.tieWordEmbeddings() && head16 != embed16) throw new IllegalArgumentException("tied embeddings: head16 must be embed16");
        for (DenseHalf h : new DenseHalf[]{embed16, head16})
            if (h != null && (h.out() != c.vocabSize() || h.in() != c.hiddenSize()))
                throw new IllegalArgumentException(h + ", expected (" + c.vocabSize() + ", " + c.hiddenSize() + ")");
        if (linears.length != c.numHiddenLayers()) throw new IllegalArgumentException(linears.length + " layers of quantized weights for " + c.numHiddenLayers() + " layers");
        for (int l = 0; l < linears.length; l++)
            for (int i = 0; i < LINEARS.size(); i++) {
                LayerTensor t = LINEARS.get(i);
                if (!Arrays.equals(linears[l][i].shape(), t.shape(c)))
                    throw new IllegalArgumentException(t.name(l) + " has shape " + Arrays.toString(linears[l][i].shape()) + ", expected " + Arrays.toString(t.shape(c)));
                if (weights.layers.get(l).get(t) != null) throw new IllegalArgumentException(t.name(l) + " is quantized and must be null in the float weights");
            }
    }

    /// The quantized weight of layer `l` for a linear table entry (one of [#LINEARS]).
    public Nf4Tensor linear(int l, LayerTensor t) {
        int i = LINEARS.indexOf(t);
        if (i < 0) throw new IllegalArgumentException(t + " is not a quantized linear weight");
        return linears[l][i];
    }

    /// Stored bytes of all quantized linears (packed codes, absmax, nested absmax, both code maps, quant_state JSON)
    /// times 8, over their parameter count. 4 + 8/64 + 32/(64·256) ≈ 4.127 with double quantization at block 64.
    public double bitsPerParameter() {
        long bytes = 0, params = 0;
        for (Nf4Tensor[] layer : linears)
            for (Nf4Tensor w : layer) {
                for (SafeTensors.Entry e : linear4bitEntries("w", w, "float32")) bytes += e.bytes().byteSize();
                params += w.numel();
            }
        return 8.0 * bytes / params;
    }

    /// Bytes held outside the Java heap: the 4-bit codes, native (quantized in memory) or mapped (loaded in place).
    public long offHeapBytes() {
        long b = 0;
        for (Nf4Tensor[] layer : linears) for (Nf4Tensor w : layer) b += w.offHeapBytes();
        return b;
    }

    /// The embeddings as float32: `weights.embedTokens`, or a converted copy of [#embed16].
    public float[] embedFloats() { return weights.embedTokens != null ? weights.embedTokens : widen(embed16); }

    /// lm_head as float32 (the embeddings' array when tied): `weights.lmHead`, or a converted copy of [#head16].
    public float[] headFloats() {
        if (weights.lmHead != null) return weights.lmHead;
        return config.tieWordEmbeddings() ? embedFloats() : widen(head16);
    }

    private static float[] widen(DenseHalf h) {
        float[] f = new float[Math.multiplyExact(h.out(), h.in())];
        h.dequantize(f);
        return f;
    }

    /// A float copy with every linear dequantized (float32, specs.md §1.3): for tests, export and small models only.
    public LlamaWeights dequantizedWeights() {
        List<LlamaWeights.Layer> layers = new ArrayList<>();
        for (int l = 0; l < linears.length; l++) {
            LlamaWeights.Layer fl = weights.layers.get(l);
            int layer = l;
            layers.add(LlamaWeights.Layer.of(t -> {
                int i = LINEARS.indexOf(t);
                if (i < 0) return fl.get(t);
                float[] w = new float[Math.toIntExact(linears[layer][i].numel())];
                linears[layer][i].dequantize(w);
                return w;
            }));
        }
        float[] embed = embedFloats();
        return new LlamaWeights(config, embed, weights.norm, config.tieWordEmbeddings() ? embed : headFloats(), layers);
    }

    // ---------------------------------------------------------------- create

    /// Quantizes every linear weight of `w` (bitsandbytes `quantize_4bit`); the other tensors are shared, not copied.
    public static QuantizedModel quantize(LlamaWeights w, QuantType type, int blockSize, boolean doubleQuant) {
        LlamaConfig c = w.config;
        Nf4Tensor[][] q = new Nf4Tensor[c.numHiddenLayers()][LINEARS.size()];
        List<LlamaWeights.Layer> layers = new ArrayList<>();
        for (int l = 0; l < q.length; l++) {
            LlamaWeights.Layer fl = w.layers.get(l);
            int layer = l;
            Parallel.range(LINEARS.size(), i -> q[layer][i] = Nf4Tensor.quantize(type, fl.get(LINEARS.get(i)), LINEARS.get(i).shape(c), blockSize, doubleQuant));
            layers.add(LlamaWeights.Layer.of(t -> LINEARS.contains(t) ? null : fl.get(t)));
        }
        return new QuantizedModel(new LlamaWeights(c, w.embedTokens, w.norm, w.lmHead, layers), q, type, doubleQuant);
    }

    /// `quantize(RandomModels.create(c, seed), …)` with the same random streams, but generating one linear weight at a
    /// time and quantizing it at once: a Llama-2-7B-shaped model never holds its 27 GB of float weights.
    public static QuantizedModel createRandom(LlamaConfig c, long seed, QuantType type, int blockSize, boolean doubleQuant) {
        return createRandom(c, seed, type, blockSize, doubleQuant, DType.F32);
    }

    /// As above; `embedDtype` BF16 or F16 keeps the embeddings and lm_head as those values rounded to 16 bits
    /// ([#embed16], [#head16]), drawn straight into 16 bits. Each linear weight is drawn in chunks into the quantizer
    /// ([Nf4Tensor#quantize(QuantType, long[], int, boolean, Nf4Tensor.Source)]), so creation holds no float32 copy
    /// of any large tensor: a 4 MiB buffer per thread beside the model itself.
    public static QuantizedModel createRandom(LlamaConfig c, long seed, QuantType type, int blockSize, boolean doubleQuant, DType embedDtype) {
        if (embedDtype != DType.F32 && embedDtype != DType.BF16 && embedDtype != DType.F16)
            throw new ConfigException("embeddings are kept as F32, BF16 or F16, not " + embedDtype);
        boolean half = embedDtype != DType.F32;
        SplittableRandom root = new SplittableRandom(seed);
        float std = (float) c.initializerRange();
        int V = c.vocabSize(), C = c.hiddenSize();
        float[] embed = half ? null : normal(Math.multiplyExact(V, C), root.split(), std);
        DenseHalf embed16 = half ? new DenseHalf(embedDtype, normalHalf(Math.multiplyExact(V, C), root.split(), std, embedDtype), V, C) : null;
        Nf4Tensor[][] q = new Nf4Tensor[c.numHiddenLayers()][LINEARS.size()];
        List<LlamaWeights.Layer> layers = new ArrayList<>();
        for (int l = 0; l < q.length; l++) {
            SplittableRandom layerRng = root.split();
            SplittableRandom[] streams = new SplittableRandom[LayerTensor.values().length];
            for (int i = 0; i < streams.length; i++) streams[i] = layerRng.split();
            float[][] t = new float[streams.length][];
            int layer = l;
            Parallel.range(streams.length, i -> {   // one float weight alive per worker thread
                LayerTensor lt = LayerTensor.values()[i];
                if (!lt.present(c)) return;
                long[] shape = lt.shape(c);
                int n = Math.toIntExact(Arrays.stream(shape).reduce(1, Math::multiplyExact));
                switch (lt) {
                    case INPUT_LAYERNORM, POST_ATTENTION_LAYERNORM -> { t[i] = new float[n]; Arrays.fill(t[i], 1f); }
                    case Q_BIAS, K_BIAS, V_BIAS, O_BIAS, GATE_BIAS, UP_BIAS, DOWN_BIAS -> t[i] = new float[n];
                    default -> {
                        SplittableRandom rng = streams[i];   // drawn in order, chunk after chunk: the stream of normal(n, …)
                        q[layer][LINEARS.indexOf(lt)] = Nf4Tensor.quantize(type, shape, blockSize, doubleQuant, (from, dst, count) -> {
                            for (int k = 0; k < count; k++) dst[k] = (float) rng.nextGaussian() * std;
                        });
                    }
                }
            });
            layers.add(LlamaWeights.Layer.of(lt -> t[lt.ordinal()]));
        }
        float[] head = c.tieWordEmbeddings() || half ? embed : normal(Math.multiplyExact(V, C), root.split(), std);
        DenseHalf head16 = !half ? null : c.tieWordEmbeddings() ? embed16
                : new DenseHalf(embedDtype, normalHalf(Math.multiplyExact(V, C), root.split(), std, embedDtype), V, C);
        float[] norm = new float[c.hiddenSize()];
        Arrays.fill(norm, 1f);
        return new QuantizedModel(new LlamaWeights(c, embed, norm, head, layers), embed16, head16, q, type, doubleQuant);
    }

    /// normal(n, rng, std) rounded to 16 bits (round to nearest even), without the float32 array.
    private static short[] normalHalf(int n, SplittableRandom rng, float std, DType dtype) {
        short[] a = new short[n];
        for (int i = 0; i < n; i++) {
            float v = (float) rng.nextGaussian() * std;
            a[i] = dtype == DType.BF16 ? DType.floatToBf16(v) : Float.floatToFloat16(v);
        }
        return a;
    }

    private static float[] normal(int n, SplittableRandom rng, float std) {   // as RandomModels, stream for stream
        float[] a = new float[n];
        for (int i = 0; i < n; i++) a[i] = (float) rng.nextGaussian() * std;
        return a;
    }

    // ---------------------------------------------------------------- merge

    /// A merged model and the error requantization added to the merged weights: `max|deq(q(W')) − W'|` and its RMS over
    /// every element of the requantized weights, W' = deq(W) + s·B·A.
    public record Merged(QuantizedModel model, double maxError, double rmsError, long mergedParameters) {}

    /// Merges a LoRA adapter into the quantized base: per targeted weight, dequantize, add s·B·A
    /// ([LoraLinear#merge]), requantize with the same type, block size and double quantization. Untargeted weights
    /// keep their bytes. DoRA adapters are not supported here (merge them into a float export instead).
    public Merged mergeAdapter(PeftAdapter adapter, Gemm gemm) {
        if (adapter.config().useDora())
            throw new UnsupportedModelException("merging a DoRA adapter into a 4-bit base is not supported; export the merged model in float16/bfloat16/float32 instead");
        Nf4Tensor[][] q = new Nf4Tensor[linears.length][];
        for (int l = 0; l < q.length; l++) q[l] = linears[l].clone();
        double max = 0, sumSq = 0;
        long count = 0;
        for (var e : adapter.weights().entrySet()) {
            PeftAdapter.Target target = e.getKey();
            LoraWeights lw = e.getValue();
            int i = -1;
            for (int j = 0; j < LINEARS.size(); j++) if (LINEARS.get(j).suffix.endsWith("." + target.module() + ".weight")) i = j;
            if (target.layer() >= q.length || i < 0)
                throw new ConfigException("adapter module " + target.path() + " is not a decoder linear of this " + q.length + "-layer model");
            Nf4Tensor w = linears[target.layer()][i];
            long[] shape = w.shape();
            int M = (int) shape[0], K = (int) shape[1];
            if (lw.out() != M || lw.in() != K)
                throw new ConfigException("adapter " + target.path() + " is (" + lw.out() + ", " + lw.in() + "), the base weight " + Arrays.toString(shape));
            float[] merged = new float[M * K];
            w.dequantize(merged);
            LoraLinear.merge(gemm, merged, lw.a(), lw.b(), (float) adapter.config().scaling(target.path()), M, K, lw.r());
            Nf4Tensor rq = Nf4Tensor.quantize(w.type(), merged, shape, w.blockSize(), w.absmax() instanceof Absmax.Nested);
            float[] back = new float[M * K];
            rq.dequantize(back);
            for (int k = 0; k < back.length; k++) {
                double d = Math.abs((double) back[k] - merged[k]);
                max = Math.max(max, d);
                sumSq += d * d;
            }
            count += back.length;
            q[target.layer()][i] = rq;
        }
        QuantizedModel m = new QuantizedModel(weights, embed16, head16, q, type, doubleQuant);
        return new Merged(m, max, count == 0 ? 0 : Math.sqrt(sumSq / count), count);
    }

    // ---------------------------------------------------------------- save

    /// Writes `dir/config.json` (with `quantization_config`) and `model.safetensors` (or shards of 5 GB and an index,
    /// as save_pretrained) in the layout transformers + bitsandbytes write: float tensors as `dtype` (F32, BF16, F16),
    /// which is also the quant_state `dtype` and `bnb_4bit_compute_dtype`. Tokenizer files are the caller's to copy.
    public void save(Path dir, DType dtype) {
        String torchName = torchName(dtype);
        try {
            Files.createDirectories(dir);
            Files.writeString(dir.resolve("config.json"), configJson(torchName));
        } catch (IOException e) {
            throw new UncheckedIOException("cannot write " + dir.resolve("config.json") + ": " + e.getMessage(), e);
        }
        List<SafeTensors.Entry> entries = new ArrayList<>();
        Map<String, long[]> shapes = LlamaWeights.expectedShapes(config);
        for (var e : shapes.entrySet()) {
            LayerTensor lt = layerTensor(e.getKey());
            int l = lt == null ? -1 : layerOf(e.getKey());
            if (lt != null && LINEARS.contains(lt)) entries.addAll(linear4bitEntries(e.getKey(), linear(l, lt), torchName));
            else if (half(e.getKey()) != null) entries.add(halfEntry(e.getKey(), half(e.getKey()), dtype));
            else entries.add(SafeTensors.Entry.ofFloats(e.getKey(), e.getValue(), floatTensor(e.getKey(), lt, l), dtype));
        }
        ShardedSafeTensors.write(dir, entries, 5_000_000_000L, Map.of("format", "pt"));
    }

    // ---------------------------------------------------------------- streamed quantization

    /// Quantizes the float checkpoint in `src` (F32/BF16/F16, sharded or not) into `out` as [#quantize] then [#save]
    /// would, byte for byte, with memory bounded by the largest tensor rather than the model: each linear weight is
    /// read in chunks through positional file reads ([ShardedSafeTensors#readFloatsUnmapped], so no page of the source
    /// stays resident) into the quantizer and written at its place ([ShardedSafeTensors.Streamed]). Two passes: the
    /// first quantizes every weight to learn its quant_state (whose JSON length the file header needs) and keeps only
    /// the scales; the second quantizes it again, identically, and writes it. Tokenizer files are the caller's to copy.
    /// Returns [#bitsPerParameter] of the written model.
    public static double quantizeStreamed(Path src, Path out, QuantType type, int blockSize, boolean doubleQuant, DType dtype) {
        LlamaConfig c = LlamaConfig.read(src);
        String torchName = torchName(dtype);
        Map<String, long[]> shapes = LlamaWeights.expectedShapes(c);
        try (ShardedSafeTensors st = ShardedSafeTensors.open(src)) {
            Map<String, TensorInfo> infos = st.tensors();
            String embedName = c.tieWordEmbeddings() && !infos.containsKey(LlamaWeights.EMBED_TOKENS) && infos.containsKey(LlamaWeights.LM_HEAD)
                    ? LlamaWeights.LM_HEAD : LlamaWeights.EMBED_TOKENS;   // tied checkpoints may store only lm_head
            for (var e : shapes.entrySet()) {
                String from = e.getKey().equals(LlamaWeights.EMBED_TOKENS) ? embedName : e.getKey();
                TensorInfo info = infos.get(from);
                if (info == null) throw new FormatException(src + ": tensor '" + from + "' " + Arrays.toString(e.getValue()) + " is missing; the checkpoint does not match config.json");
                if (!Arrays.equals(info.shape(), e.getValue()))
                    throw new FormatException(src + ": tensor '" + from + "' has shape " + info.shapeString() + ", expected " + Arrays.toString(e.getValue()) + " from config.json");
                if (info.dtype() != DType.F32 && info.dtype() != DType.BF16 && info.dtype() != DType.F16)
                    throw new FormatException(src + ": tensor '" + from + "' has dtype " + info.dtype() + "; quantize reads F32, BF16 or F16 checkpoints");
            }
            // pass 1: every linear's scales (the packed codes are dropped with their arena)
            Map<String, Nf4Tensor> scales = new java.util.LinkedHashMap<>();
            List<ShardedSafeTensors.Spec> specs = new ArrayList<>();
            long bytes4 = 0, params4 = 0;
            for (var e : shapes.entrySet()) {
                LayerTensor lt = layerTensor(e.getKey());
                if (lt != null && LINEARS.contains(lt)) {
                    try (Arena arena = Arena.ofConfined()) {
                        Nf4Tensor w = quantizeFrom(st, e.getKey(), e.getValue(), type, blockSize, doubleQuant, arena);
                        scales.put(e.getKey(), w);
                        for (SafeTensors.Entry en : linear4bitEntries(e.getKey(), w, "float32")) bytes4 += en.bytes().byteSize();
                        params4 += w.numel();
                        for (SafeTensors.Entry en : linear4bitEntries(e.getKey(), w, torchName))
                            specs.add(new ShardedSafeTensors.Spec(en.name(), en.dtype(), en.shape()));
                    }
                } else specs.add(new ShardedSafeTensors.Spec(e.getKey(), dtype, e.getValue()));
            }
            Files.createDirectories(out);
            Files.writeString(out.resolve("config.json"), configJson(c, type, doubleQuant, torchName));
            // pass 2: quantize again and write each tensor at its place
            try (ShardedSafeTensors.Streamed w = ShardedSafeTensors.Streamed.open(out, specs, 5_000_000_000L, Map.of("format", "pt"))) {
                for (var e : shapes.entrySet()) {
                    String name = e.getKey();
                    Nf4Tensor first = scales.get(name);
                    if (first != null) {
                        try (Arena arena = Arena.ofConfined()) {
                            Nf4Tensor q = quantizeFrom(st, name, e.getValue(), type, blockSize, doubleQuant, arena);
                            if (!Arrays.equals(q.absmaxValues(), first.absmaxValues()))
                                throw new IllegalStateException(name + ": the second pass read other values than the first; was " + src + " changed meanwhile?");
                            for (SafeTensors.Entry en : linear4bitEntries(name, q, torchName)) w.put(en.name(), en.bytes());
                        }
                        scales.remove(name);
                    } else {
                        String from = name.equals(LlamaWeights.EMBED_TOKENS) ? embedName : name;
                        w.put(name, floatBytes(st, from, Arrays.stream(e.getValue()).reduce(1, Math::multiplyExact), dtype));
                    }
                }
            }
            return 8.0 * bytes4 / params4;
        } catch (IOException e) {
            throw new UncheckedIOException("cannot write " + out + ": " + e.getMessage(), e);
        }
    }

    /// One linear weight of a float checkpoint quantized chunk by chunk from the file, its codes in `arena`.
    private static Nf4Tensor quantizeFrom(ShardedSafeTensors st, String name, long[] shape, QuantType type, int blockSize, boolean dq, Arena arena) {
        return Nf4Tensor.quantize(type, shape, blockSize, dq, arena, (from, dst, count) -> st.readFloatsUnmapped(name, from, dst, count));
    }

    /// A float tensor of n elements as `dtype` bytes (little-endian), converted chunk by chunk.
    private static MemorySegment floatBytes(ShardedSafeTensors st, String name, long n, DType dtype) {
        MemorySegment s = MemorySegment.ofArray(new byte[Math.toIntExact(Math.multiplyExact(n, dtype.bytes))]);
        float[] buf = new float[(int) Math.min(n, 1 << 20)];
        for (long i = 0; i < n; i += buf.length) {
            int k = (int) Math.min(buf.length, n - i);
            st.readFloatsUnmapped(name, i, buf, k);
            MemorySegment part = SafeTensors.Entry.ofFloats(name, new long[]{k}, k == buf.length ? buf : Arrays.copyOf(buf, k), dtype).bytes();
            MemorySegment.copy(part, 0, s, i * dtype.bytes, (long) k * dtype.bytes);
        }
        return s;
    }

    /// The safetensors entries `Linear4bit` saves for one weight named `weight` (…`.weight`), specs.md §1.5:
    /// packed U8 `[(n+1)/2, 1]`, absmax (U8 codes or F32), quant_map, nested_absmax, nested_quant_map, quant_state JSON.
    public static List<SafeTensors.Entry> linear4bitEntries(String weight, Nf4Tensor w, String dtype) {
        List<SafeTensors.Entry> out = new ArrayList<>();
        out.add(new SafeTensors.Entry(weight, DType.U8, new long[]{w.packed().byteSize(), 1}, w.packed()));
        long blocks = w.blocks();
        switch (w.absmax()) {
            case Absmax.Plain p -> out.add(SafeTensors.Entry.ofFloats(weight + ABSMAX, new long[]{blocks}, p.values(), DType.F32));
            case Absmax.Nested n -> {
                out.add(new SafeTensors.Entry(weight + ABSMAX, DType.U8, new long[]{blocks}, n.codes()));
                out.add(SafeTensors.Entry.ofFloats(weight + NESTED_ABSMAX, new long[]{n.nestedAbsmax().length}, n.nestedAbsmax(), DType.F32));
                out.add(SafeTensors.Entry.ofFloats(weight + NESTED_QUANT_MAP, new long[]{256}, n.nestedQuantMap(), DType.F32));
            }
        }
        out.add(SafeTensors.Entry.ofFloats(weight + QUANT_MAP, new long[]{16}, w.type().code(), DType.F32));
        byte[] json = w.quantStateJson(dtype).getBytes(StandardCharsets.UTF_8);
        out.add(SafeTensors.Entry.ofBytes(weight + QUANT_STATE + w.type().jsonName(), DType.U8, new long[]{json.length}, json));
        return out;
    }

    /// config.json: the model's own fields plus `quantization_config` as `BitsAndBytesConfig.to_dict` writes it.
    String configJson(String computeDtype) { return configJson(config, type, doubleQuant, computeDtype); }

    static String configJson(LlamaConfig config, QuantType type, boolean doubleQuant, String computeDtype) {
        try {
            ObjectMapper m = new ObjectMapper();
            ObjectNode o = (ObjectNode) m.readTree(config.toJson());
            ObjectNode q = o.putObject("quantization_config");
            q.put("_load_in_4bit", true);
            q.put("_load_in_8bit", false);
            q.put("bnb_4bit_compute_dtype", computeDtype);
            q.put("bnb_4bit_quant_storage", "uint8");
            q.put("bnb_4bit_quant_type", type.jsonName());
            q.put("bnb_4bit_use_double_quant", doubleQuant);
            q.put("llm_int8_enable_fp32_cpu_offload", false);
            q.put("llm_int8_has_fp16_weight", false);
            q.putNull("llm_int8_skip_modules");
            q.put("llm_int8_threshold", 6.0);
            q.put("load_in_4bit", true);
            q.put("load_in_8bit", false);
            q.put("quant_method", "bitsandbytes");
            return m.writerWithDefaultPrettyPrinter().writeValueAsString(o);
        } catch (IOException e) {
            throw new IllegalStateException(e);
        }
    }

    /// The 16-bit tensor held for `name` (embeddings or lm_head), or null.
    private DenseHalf half(String name) {
        return switch (name) {
            case LlamaWeights.EMBED_TOKENS -> embed16;
            case LlamaWeights.LM_HEAD -> head16;
            default -> null;
        };
    }

    /// A 16-bit tensor stored as `dtype`: its own little-endian bytes when the dtypes agree (a view), else converted
    /// through float32.
    private static SafeTensors.Entry halfEntry(String name, DenseHalf h, DType dtype) {
        long[] shape = {h.out(), h.in()};
        if (h.type() == dtype) return new SafeTensors.Entry(name, dtype, shape, h.data());
        return SafeTensors.Entry.ofFloats(name, shape, widen(h), dtype);
    }

    private float[] floatTensor(String name, LayerTensor lt, int l) {
        if (lt != null) return weights.layers.get(l).get(lt);
        return switch (name) {
            case LlamaWeights.EMBED_TOKENS -> weights.embedTokens;
            case LlamaWeights.NORM -> weights.norm;
            case LlamaWeights.LM_HEAD -> weights.lmHead;
            default -> throw new IllegalArgumentException(name);
        };
    }

    static String torchName(DType d) {
        return switch (d) {
            case F32 -> "float32";
            case BF16 -> "bfloat16";
            case F16 -> "float16";
            default -> throw new ConfigException("cannot store a model's float tensors as " + d + "; use F32, BF16 or F16");
        };
    }

    private static LayerTensor layerTensor(String name) {
        if (!name.startsWith("model.layers.")) return null;
        for (LayerTensor t : LayerTensor.values()) if (name.endsWith("." + t.suffix)) return t;
        return null;
    }

    private static int layerOf(String name) {
        int from = "model.layers.".length();
        return Integer.parseInt(name.substring(from, name.indexOf('.', from)));
    }

    // ---------------------------------------------------------------- load

    /// Loads a folder saved with bitsandbytes 4-bit quantization (as published pre-quantized models are): config.json
    /// with `quantization_config.quant_method = "bitsandbytes"` and `load_in_4bit`, every decoder linear as the
    /// Linear4bit keys of specs.md §1.5, the other tensors as F32/BF16/F16. Sizes and the quant_state are validated
    /// against config.json with errors naming the tensor.
    /// Whether a model folder holds a quantized checkpoint (its config.json has a `quantization_config`).
    public static boolean isQuantized(Path dir) {
        Path c = dir.resolve("config.json");
        try {
            return Files.isRegularFile(c) && Files.readString(c).contains("\"quantization_config\"");
        } catch (IOException e) {
            return false;
        }
    }

    public static QuantizedModel load(Path dir) {
        if (!Files.isDirectory(dir))
            throw new ConfigException(dir + " is not a directory; pass a model folder saved with bitsandbytes 4-bit quantization");
        LlamaConfig c = LlamaConfig.read(dir);
        Path cfgFile = dir.resolve("config.json");
        JsonNode q;
        try {
            q = new ObjectMapper().readTree(Files.readString(cfgFile)).get("quantization_config");
        } catch (IOException e) {
            throw new ConfigException(cfgFile + ": cannot read: " + e.getMessage(), e);
        }
        if (q == null || !"bitsandbytes".equals(q.path("quant_method").asText()))
            throw new UnsupportedModelException(cfgFile + " has no quantization_config with quant_method \"bitsandbytes\""
                    + (q == null ? "" : " (found \"" + q.path("quant_method").asText() + "\")") + "; use it as an ordinary model folder (no 4-bit base), or quantize it with `peft4j quantize` (or quantization_bit: 4 in training)");
        if (!q.path("load_in_4bit").asBoolean(false))
            throw new UnsupportedModelException(cfgFile + ": quantization_config.load_in_4bit is not true; only bitsandbytes 4-bit (nf4/fp4) checkpoints are supported, not 8-bit");
        QuantType type;
        try {
            type = QuantType.of(q.path("bnb_4bit_quant_type").asText("fp4"));
        } catch (UnsupportedModelException e) {
            throw new UnsupportedModelException(cfgFile + ": quantization_config.bnb_4bit_quant_type: " + e.getMessage());
        }
        boolean dq = q.path("bnb_4bit_use_double_quant").asBoolean(false);

        // Two mappings of the same files: the 4-bit codes are used in place from `inPlace` (an automatic arena, alive
        // while any tensor is reachable); the float tensors are copied out of `st`, which is unmapped on return, so
        // that the pages read for them do not stay resident beside their copies.
        try (ShardedSafeTensors st = ShardedSafeTensors.open(dir); ShardedSafeTensors inPlace = ShardedSafeTensors.open(dir, Arena.ofAuto())) {
            Map<String, TensorInfo> infos = st.tensors();
            Set<String> used = new HashSet<>();
            Nf4Tensor[][] lin = new Nf4Tensor[c.numHiddenLayers()][LINEARS.size()];
            List<LlamaWeights.Layer> layers = new ArrayList<>();
            for (int l = 0; l < lin.length; l++) {
                int layer = l;
                for (int i = 0; i < LINEARS.size(); i++)
                    lin[l][i] = readLinear4bit(inPlace, LINEARS.get(i).name(l), LINEARS.get(i).shape(c), used);
                layers.add(LlamaWeights.Layer.of(t -> !t.present(c) || LINEARS.contains(t) ? null : readFloat(st, t.name(layer), t.shape(c), used)));
            }
            long[] vc = {c.vocabSize(), c.hiddenSize()};
            String embedName = !c.tieWordEmbeddings() || infos.containsKey(LlamaWeights.EMBED_TOKENS) || !infos.containsKey(LlamaWeights.LM_HEAD)
                    ? LlamaWeights.EMBED_TOKENS : LlamaWeights.LM_HEAD;
            DenseHalf embed16 = readHalf(st, inPlace, embedName, vc, used), head16;
            float[] embed = embed16 != null ? null : readFloat(st, embedName, vc, used), head;
            if (c.tieWordEmbeddings()) {
                head16 = embed16;
                head = embed;
                used.add(LlamaWeights.LM_HEAD);
            } else {
                head16 = readHalf(st, inPlace, LlamaWeights.LM_HEAD, vc, used);
                head = head16 != null ? null : readFloat(st, LlamaWeights.LM_HEAD, vc, used);
            }
            float[] norm = readFloat(st, LlamaWeights.NORM, new long[]{c.hiddenSize()}, used);
            for (String name : infos.keySet())
                if (!used.contains(name))
                    LOG.log(System.Logger.Level.WARNING, "{0}: ignoring unexpected tensor ''{1}'' {2}", dir, name, infos.get(name).shapeString());
            return new QuantizedModel(new LlamaWeights(c, embed, norm, head, layers), embed16, head16, lin, type, dq);
        }
    }

    /// Reads the Linear4bit keys of `weight` (e.g. `model.layers.0.mlp.down_proj.weight`) and checks them against each
    /// other and against `shape` (from config.json). `used` collects the keys read. The packed codes and the 8-bit
    /// absmax codes are slices of `st`'s mapping, not copies: they live as long as its arena
    /// ([ShardedSafeTensors#open(Path, java.lang.foreign.Arena)]).
    public static Nf4Tensor readLinear4bit(ShardedSafeTensors st, String weight, long[] shape, Set<String> used) {
        Map<String, TensorInfo> infos = st.tensors();
        String stateKey = null;
        for (String k : infos.keySet())
            if (k.startsWith(weight + ".quant_state.")) {
                if (stateKey != null) throw new FormatException("tensor '" + weight + "' has two quant states, '" + stateKey + "' and '" + k + "'");
                stateKey = k;
            }
        TensorInfo wi = infos.get(weight);
        if (wi == null) throw new FormatException("tensor '" + weight + "' " + Arrays.toString(shape) + " is missing; the checkpoint does not match config.json");
        if (stateKey == null)
            throw new FormatException("tensor '" + weight + "' (" + wi.dtype() + " " + wi.shapeString() + ") has no '" + weight
                    + ".quant_state.bitsandbytes__nf4|fp4'; it is not a bitsandbytes 4-bit weight although config.json says the model is");
        String typeName = stateKey.substring((weight + ".quant_state.").length());
        if (!typeName.startsWith("bitsandbytes__"))
            throw new UnsupportedModelException("tensor '" + stateKey + "': unknown quant state format '" + typeName + "'; expected bitsandbytes__nf4 or bitsandbytes__fp4");
        QuantType type = quantType(typeName.substring("bitsandbytes__".length()), stateKey);

        JsonNode js;
        try {
            js = new ObjectMapper().readTree(new String(bytes(st, stateKey, DType.U8, null, used).toArray(ValueLayout.JAVA_BYTE), StandardCharsets.UTF_8));
            if (js == null || !js.isObject()) throw new IOException("not a JSON object");
        } catch (IOException e) {
            throw new FormatException("tensor '" + stateKey + "': the quant_state is not valid JSON (" + e.getMessage().lines().findFirst().orElse("") + ")", e);
        }
        if (!js.path("quant_type").isTextual() || quantType(js.get("quant_type").asText(), stateKey) != type)
            throw new FormatException("tensor '" + stateKey + "': quant_state quant_type is " + js.get("quant_type") + ", but the key says " + type.jsonName());
        JsonNode sh = js.path("shape");
        long[] stateShape = new long[sh.size()];
        for (int i = 0; i < stateShape.length; i++) stateShape[i] = sh.get(i).asLong(-1);
        if (!sh.isArray() || !Arrays.equals(stateShape, shape))
            throw new FormatException("tensor '" + stateKey + "': quant_state shape " + (sh.isArray() ? Arrays.toString(stateShape) : sh) + " differs from " + Arrays.toString(shape)
                    + " that config.json gives '" + weight + "'; the checkpoint and config.json disagree");
        int blockSize = js.path("blocksize").asInt(-1);
        if (Arrays.stream(Nf4Tensor.BLOCK_SIZES).noneMatch(b -> b == blockSize))
            throw new FormatException("tensor '" + stateKey + "': quant_state blocksize " + js.get("blocksize") + " is not one bitsandbytes uses " + Arrays.toString(Nf4Tensor.BLOCK_SIZES));
        long n = Arrays.stream(shape).reduce(1, Math::multiplyExact), blocks = (n + blockSize - 1) / blockSize;

        MemorySegment packed = bytes(st, weight, DType.U8, new long[]{(n + 1) / 2, 1}, used);
        float[] code = floats(st, weight + QUANT_MAP, new long[]{16}, used);
        if (!Arrays.equals(code, type.code()))
            throw new UnsupportedModelException("tensor '" + weight + QUANT_MAP + "' is not the bitsandbytes " + type.jsonName()
                    + " code book " + Arrays.toString(type.code()) + "; custom 4-bit code maps are not supported");
        Absmax absmax;
        if (js.has("nested_offset")) {
            int nb = js.path("nested_blocksize").asInt(-1);
            if (nb <= 0) throw new FormatException("tensor '" + stateKey + "': nested_blocksize " + js.get("nested_blocksize") + " must be a positive integer");
            if (!js.path("nested_offset").isNumber()) throw new FormatException("tensor '" + stateKey + "': nested_offset " + js.get("nested_offset") + " is not a number");
            MemorySegment codes = bytes(st, weight + ABSMAX, DType.U8, new long[]{blocks}, used);
            float[] nested = floats(st, weight + NESTED_ABSMAX, new long[]{(blocks + nb - 1) / nb}, used);
            float[] map = floats(st, weight + NESTED_QUANT_MAP, new long[]{256}, used);
            absmax = new Absmax.Nested(codes, nested, map, (float) js.get("nested_offset").asDouble(), nb);
        } else {
            if (infos.containsKey(weight + NESTED_ABSMAX))
                throw new FormatException("tensor '" + weight + NESTED_ABSMAX + "' exists but quant_state '" + stateKey + "' has no nested_offset; the quant state is incomplete");
            absmax = new Absmax.Plain(floats(st, weight + ABSMAX, new long[]{blocks}, used));
        }
        try {
            return new Nf4Tensor(type, shape, blockSize, packed, absmax);
        } catch (Peft4jException e) {
            throw new FormatException("tensor '" + weight + "': " + e.getMessage(), e);
        }
    }

    private static QuantType quantType(String name, String tensor) {
        try {
            return QuantType.of(name);
        } catch (UnsupportedModelException e) {
            throw new UnsupportedModelException("tensor '" + tensor + "': " + e.getMessage());
        }
    }

    /// The raw bytes of a tensor of `dtype` (a slice of the mapping); `shape` null accepts any 1-D shape.
    private static MemorySegment bytes(ShardedSafeTensors st, String name, DType dtype, long[] shape, Set<String> used) {
        TensorInfo info = check(st, name, shape, used);
        if (info.dtype() != dtype) throw new FormatException("tensor '" + name + "' has dtype " + info.dtype() + ", expected " + dtype + " for a bitsandbytes 4-bit checkpoint");
        if (shape == null && info.shape().length != 1) throw new FormatException("tensor '" + name + "' has shape " + info.shapeString() + ", expected 1-D");
        return st.bytes(name);
    }

    private static float[] floats(ShardedSafeTensors st, String name, long[] shape, Set<String> used) {
        TensorInfo info = check(st, name, shape, used);
        if (info.dtype() != DType.F32) throw new FormatException("tensor '" + name + "' has dtype " + info.dtype() + ", expected F32 for a bitsandbytes quant state");
        return st.readFloats(name);
    }

    private static float[] readFloat(ShardedSafeTensors st, String name, long[] shape, Set<String> used) {
        TensorInfo info = check(st, name, shape, used);
        if (!(info.dtype() == DType.F32 || info.dtype() == DType.BF16 || info.dtype() == DType.F16))
            throw new FormatException("tensor '" + name + "' has dtype " + info.dtype() + ", which is not supported; only the decoder linears may be 4-bit, the rest F32/BF16/F16");
        return st.readFloats(name);
    }

    /// A (V, C) tensor stored as BF16/F16, kept in its 16 bits in the mapping `inPlace` (used in place); null when it
    /// is stored otherwise.
    private static DenseHalf readHalf(ShardedSafeTensors st, ShardedSafeTensors inPlace, String name, long[] shape, Set<String> used) {
        TensorInfo info = check(st, name, shape, used);
        if (info.dtype() != DType.BF16 && info.dtype() != DType.F16) return null;
        MemorySegment h = TensorSource.inPlace(st::tensors, st::readFloats, inPlace::bytes).halfBytes(name);
        return new DenseHalf(info.dtype(), h, (int) shape[0], (int) shape[1]);
    }

    private static TensorInfo check(ShardedSafeTensors st, String name, long[] shape, Set<String> used) {
        TensorInfo info = st.tensors().get(name);
        if (info == null) throw new FormatException("tensor '" + name + "'" + (shape == null ? "" : " " + Arrays.toString(shape)) + " is missing from the checkpoint");
        if (shape != null && !Arrays.equals(info.shape(), shape))
            throw new FormatException("tensor '" + name + "' has shape " + info.shapeString() + ", expected " + Arrays.toString(shape)
                    + " from config.json and the quant_state; the tensors of this 4-bit weight do not belong together");
        used.add(name);
        return info;
    }
}
