package org.peft4j.model.gguf;

import org.peft4j.core.DType;
import org.peft4j.core.Gemm;
import org.peft4j.core.Peft4jException.ConfigException;
import org.peft4j.core.Peft4jException.FormatException;
import org.peft4j.core.Peft4jException.UnsupportedModelException;
import org.peft4j.formats.gguf.GgmlType;
import org.peft4j.formats.gguf.GgufFile;
import org.peft4j.formats.gguf.GgufTensor;
import org.peft4j.formats.gguf.GgufValue;
import org.peft4j.formats.gguf.GgufWriter;
import org.peft4j.formats.safetensors.TensorInfo;
import org.peft4j.model.Architecture;
import org.peft4j.model.LlamaConfig;
import org.peft4j.model.RopeScaling;
import org.peft4j.model.llama.Decoder;
import org.peft4j.model.llama.LlamaModel;
import org.peft4j.model.llama.LlamaWeights;
import org.peft4j.model.llama.Projection;
import org.peft4j.model.llama.TensorSource;
import org.peft4j.model.weights.BaseWeight;
import org.peft4j.model.weights.GgmlWeight;
import org.peft4j.quant.GgmlBlocks;
import org.peft4j.quant.GgmlTensor;

import java.lang.foreign.MemorySegment;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/// A Llama / Qwen2 model as a GGUF file, both ways. Reading: the hyper-parameters from `{arch}.*` metadata
/// ([#config]), the tensors under their Hugging Face names with the Q/K permutation undone ([#source]), linear
/// weights kept in their stored type (F32, F16/BF16 as 16-bit, Q8_0/Q4_0/Q4_K/Q5_K/Q6_K as blocks; [#load]) or
/// all float32 ([#loadWeights]). Writing: what convert_hf_to_gguf.py writes ([#writer]); the tokenizer keys are
/// added by the tokenizer module. Reference: llama.cpp convert_hf_to_gguf.py, gguf-py constants; specs.md §4.3.
public final class GgufModel {
    private GgufModel() {}

    /// Whether `path` names a GGUF file (a regular file starting with the magic "GGUF").
    public static boolean isGguf(Path path) {
        if (!Files.isRegularFile(path)) return false;
        try (var in = Files.newInputStream(path)) {
            byte[] m = in.readNBytes(4);
            return m.length == 4 && m[0] == 'G' && m[1] == 'G' && m[2] == 'U' && m[3] == 'F';
        } catch (java.io.IOException e) {
            return false;
        }
    }

    // ---- reading ---------------------------------------------------------------------------------------------

    /// The decoder's hyper-parameters from the file's metadata.
    public static LlamaConfig config(GgufFile f) {
        String arch = f.require("general.architecture").asString("general.architecture");
        Architecture a = switch (arch) {
            case "llama" -> new Architecture.Llama();
            case "qwen2" -> new Architecture.Qwen2();
            default -> throw new UnsupportedModelException(f.path() + ": GGUF architecture '" + arch
                    + "' is not supported; peft4j runs 'llama' (Llama, Mistral, SmolLM, TinyLlama) and 'qwen2'");
        };
        if ("adapter".equals(str(f, "general.type")))
            throw new ConfigException(f.path() + " is a LoRA adapter (general.type = adapter), not a model; pass it as --adapter"
                    + " and the base model as --model");
        int hidden = u(f, arch + ".embedding_length"), heads = u(f, arch + ".attention.head_count");
        int kv = f.get(arch + ".attention.head_count_kv") != null ? u(f, arch + ".attention.head_count_kv") : heads;
        int headDim = f.get(arch + ".attention.key_length") != null ? u(f, arch + ".attention.key_length") : hidden / heads;
        GgufTensor embd = f.info(GgufNames.TOKEN_EMBD);
        int vocab = f.get(arch + ".vocab_size") != null ? u(f, arch + ".vocab_size") : (int) embd.ne()[1];
        double theta = f.get(arch + ".rope.freq_base") != null ? f.get(arch + ".rope.freq_base").asDouble(arch + ".rope.freq_base") : 10000;
        RopeScaling scaling = new RopeScaling.None();
        String st = str(f, arch + ".rope.scaling.type");
        if (st != null && !st.equals("none")) {
            if (!st.equals("linear")) throw new UnsupportedModelException(f.path() + ": rope scaling '" + st + "' is not supported; only linear is");
            scaling = new RopeScaling.Linear(f.require(arch + ".rope.scaling.factor").asDouble(arch + ".rope.scaling.factor"));
        }
        if (f.tensors().containsKey("rope_freqs.weight"))
            throw new UnsupportedModelException(f.path() + ": per-frequency RoPE factors (rope_freqs.weight, Llama 3.1 scaling) are"
                    + " not supported yet; convert the Hugging Face folder instead");
        boolean bias = f.tensors().containsKey("blk.0.attn_q.bias");
        int bos = f.get("tokenizer.ggml.bos_token_id") != null ? u(f, "tokenizer.ggml.bos_token_id") : -1;
        List<Integer> eos = f.get("tokenizer.ggml.eos_token_id") != null ? List.of(u(f, "tokenizer.ggml.eos_token_id")) : List.of();
        return new LlamaConfig(a, hidden, u(f, arch + ".feed_forward_length"), u(f, arch + ".block_count"), heads, kv, headDim,
                vocab, u(f, arch + ".context_length"), f.require(arch + ".attention.layer_norm_rms_epsilon").asDouble("eps"), theta,
                scaling, !f.tensors().containsKey(GgufNames.OUTPUT), bias && a instanceof Architecture.Llama, false,
                bos, eos, 0, 0.02, null);
    }

    /// The config of a GGUF file or of a Hugging Face folder's config.json, without reading any weights.
    public static LlamaConfig config(Path model) {
        if (!isGguf(model)) return LlamaConfig.read(model);
        try (GgufFile f = GgufFile.open(model)) { return config(f); }
    }

    private static int u(GgufFile f, String key) { return f.require(key).asInt(key); }
    private static String str(GgufFile f, String key) { GgufValue v = f.get(key); return v == null ? null : v.asString(key); }

    /// The file's tensors under their Hugging Face names and shapes, Q/K rows back in HF order. Float tensors
    /// report their dtype; block-quantized ones report F32 (what [TensorSource#readFloats] yields after dequantizing)
    /// and are read as blocks with [#blocks]. Views are valid while `f` is open.
    public static TensorSource source(GgufFile f, LlamaConfig c) {
        boolean llama = c.architecture() instanceof Architecture.Llama;
        Map<String, TensorInfo> infos = new LinkedHashMap<>();
        Map<String, String> toGguf = new LinkedHashMap<>();
        for (String hf : LlamaWeights.expectedShapes(c).keySet()) add(f, hf, infos, toGguf);
        if (c.tieWordEmbeddings()) add(f, LlamaWeights.LM_HEAD, infos, toGguf);
        return new TensorSource() {
            public Map<String, TensorInfo> tensors() { return infos; }

            public float[] readFloats(String name) {
                GgufTensor t = f.info(ggufName(name));
                float[] x;
                GgmlBlocks b = GgmlBlocks.byName(t.type().name());
                if (b != null) {
                    x = new float[Math.toIntExact(t.numel())];
                    b.dequantize(GgmlBlocks.copy(f.bytes(t.name())), 0, x, 0, Math.toIntExact(t.numel() / b.blockSize));
                } else {
                    x = f.readFloats(t.name());
                }
                int heads = GgufNames.permutedHeads(name, c, llama);
                return heads == 0 ? x : GgufNames.permuteRows(x, heads, t.ne().length == 1 ? 1 : (int) t.ne()[0], false);   // a bias: rows of 1
            }

            @Override public MemorySegment bytes(String name) { return MemorySegment.ofArray(raw(name)); }

            private byte[] raw(String name) {
                GgufTensor t = f.info(ggufName(name));
                byte[] b = GgmlBlocks.copy(f.bytes(t.name()));
                int heads = GgufNames.permutedHeads(name, c, llama);
                long rows = t.ne().length == 1 ? t.ne()[0] : t.ne()[1];
                return heads == 0 ? b : GgufNames.permuteRows(b, heads, (int) (t.bytes() / rows), false);
            }

            private String ggufName(String name) {
                String g = toGguf.get(name);
                if (g == null) throw new FormatException(f.path() + ": no tensor for '" + name + "'");
                return g;
            }
        };
    }

    private static void add(GgufFile f, String hf, Map<String, TensorInfo> infos, Map<String, String> toGguf) {
        String g = GgufNames.gguf(hf);
        GgufTensor t = f.tensors().get(g);
        if (t == null) return;   // LlamaWeights.load reports what is missing, under the HF name
        DType dt = switch (t.type()) {
            case F16 -> DType.F16;
            case BF16 -> DType.BF16;
            case F32 -> DType.F32;
            default -> {
                if (GgmlBlocks.byName(t.type().name()) == null)
                    throw new UnsupportedModelException(f.path() + ": tensor '" + g + "' has ggml type " + t.type() + ", which peft4j"
                            + " cannot read; supported: F32, F16, BF16, Q8_0, Q4_0, Q4_K, Q5_K, Q6_K (re-quantize the model to one of them)");
                yield DType.F32;
            }
        };
        infos.put(hf, new TensorInfo(hf, dt, t.shape(), 0, t.bytes()));
        toGguf.put(hf, g);
    }

    /// The block type of HF tensor `name` in `f`, or null when it is stored as floats.
    static GgmlBlocks blocks(GgufFile f, String name) { return GgmlBlocks.byName(f.info(GgufNames.gguf(name)).type().name()); }

    /// Config and float32 weights of a GGUF model (training, merging, export).
    public static LlamaWeights loadWeights(Path file) {
        try (GgufFile f = GgufFile.open(file)) {
            LlamaConfig c = config(f);
            return LlamaWeights.load(c, source(f, c), file.toString());
        }
    }

    /// A runnable model with linear weights in their stored type (see [#source]); embeddings, norms and lm_head
    /// are float32.
    public static LlamaModel load(Path file, Gemm gemm) {
        Base b = loadBase(file, false);
        return new LlamaModel(new Decoder(b.weights(), b.linears(), b.head(), gemm));
    }

    /// A GGUF model as a frozen base: `weights` holds the float32 tensors (embeddings, norms, biases, lm_head, and
    /// linear weights stored as F32), its other linear slots null; `linears` (L)(7) in [Projection] order holds every
    /// linear weight in its stored type. `training`: block-quantized weights take float activations
    /// ([GgmlWeight#training]) instead of llama.cpp's Q8_0 rounding.
    /// `head`: for inference, the lm_head (the token embedding when tied) as stored when that is blocks or 16-bit,
    /// as llama.cpp computes the output layer (a decode step reads it whole: a Q8_0 head reads 34/128 of the float
    /// bytes); null for training (whose backward reads `weights.lmHead`) or a float32 head.
    public record Base(LlamaWeights weights, BaseWeight[][] linears, BaseWeight head) {
        /// Whether any linear weight is held in a type other than float32 (a LoRA-only base).
        public boolean quantized() {
            for (BaseWeight[] layer : linears) for (BaseWeight w : layer) if (!(w instanceof org.peft4j.model.weights.DenseF32)) return true;
            return false;
        }

        /// Bytes held: the float32 tensors of `weights` plus every non-float32 linear weight as stored.
        public long bytes() {
            long n = 0;
            for (float[] t : weights.tensors().values()) if (t != null) n += 4L * t.length;
            for (BaseWeight[] layer : linears)
                for (BaseWeight w : layer) if (!(w instanceof org.peft4j.model.weights.DenseF32)) n += w.bytes();
            return n;
        }
    }

    /// The bytes [#loadBase] holds for `file` (= `Base.bytes()`), from the tensor table alone: linear weights in
    /// their stored type (float32 ones as float32), every other tensor as float32.
    public static long baseBytes(Path file) {
        try (GgufFile f = GgufFile.open(file)) {
            LlamaConfig c = config(f);
            long n = 0;
            for (var e : source(f, c).tensors().entrySet()) {
                TensorInfo t = e.getValue();
                long numel = 1;
                for (long d : t.shape()) numel *= d;
                boolean stored = isLinear(e.getKey()) && (blocks(f, e.getKey()) != null || t.dtype() != DType.F32);
                n += stored ? f.info(GgufNames.gguf(e.getKey())).bytes() : 4 * numel;
            }
            return n;
        }
    }

    /// The model of `file` as a [Base] (see there).
    public static Base loadBase(Path file, boolean training) {
        try (GgufFile f = GgufFile.open(file)) {
            LlamaConfig c = config(f);
            TensorSource src = source(f, c);
            LlamaWeights w = LlamaWeights.load(c, src, file.toString(), name -> isLinear(name) && (blocks(f, name) != null
                    || src.tensors().get(name).dtype() != DType.F32));
            BaseWeight[][] lin = new BaseWeight[c.numHiddenLayers()][Projection.values().length];
            for (int l = 0; l < lin.length; l++)
                for (Projection p : Projection.values()) {
                    String name = p.weightName(l);
                    float[] dense = p.weight(w.layers.get(l));
                    GgmlBlocks b = blocks(f, name);
                    GgmlTensor t = dense != null || b == null ? null
                            : new GgmlTensor(b, p.out(c), p.in(c), src.bytes(name).toArray(java.lang.foreign.ValueLayout.JAVA_BYTE));
                    lin[l][p.ordinal()] = dense != null ? BaseWeight.of(dense, p.out(c), p.in(c))
                            : t != null ? (training ? GgmlWeight.training(t) : new GgmlWeight(t))
                            : BaseWeight.read(src, name, p.out(c), p.in(c));
                }
            BaseWeight head = null;
            if (!training) {
                String hn = c.tieWordEmbeddings() ? GgufNames.TOKEN_EMBD : GgufNames.OUTPUT;
                GgufTensor ht = f.info(hn);
                GgmlBlocks hb = GgmlBlocks.byName(ht.type().name());
                if (hb != null) head = new GgmlWeight(new GgmlTensor(hb, c.vocabSize(), c.hiddenSize(), GgmlBlocks.copy(f.bytes(hn))));
                else if (ht.type() == GgmlType.F16 || ht.type() == GgmlType.BF16)
                    head = BaseWeight.read(src, c.tieWordEmbeddings() ? LlamaWeights.EMBED_TOKENS : LlamaWeights.LM_HEAD, c.vocabSize(), c.hiddenSize());
            }
            return new Base(w, lin, head);
        }
    }

    private static boolean isLinear(String name) {
        for (Projection p : Projection.values()) if (name.endsWith("." + p.path() + ".weight")) return true;
        return false;
    }

    // ---- writing ---------------------------------------------------------------------------------------------

    /// `--export_quant` values → (ggml type of the linear weights, llama_ftype).
    public enum Quant {
        F32(GgmlType.F32, 0), F16(GgmlType.F16, 1), BF16(GgmlType.BF16, 32), Q8_0(GgmlType.Q8_0, 7), Q4_0(GgmlType.Q4_0, 2),
        /// llama_ftype MOSTLY_Q4_K_S; a weight whose rows are not whole 256-blocks falls back to Q4_0 (llama.cpp's
        /// quantize falls back to Q5_0, which peft4j does not read)
        Q4_K(GgmlType.Q4_K, 14);

        public final GgmlType type;
        public final int fileType;

        Quant(GgmlType type, int fileType) { this.type = type; this.fileType = fileType; }

        public static Quant of(String s) {
            for (Quant q : values()) if (q.name().equalsIgnoreCase(s)) return q;
            throw new ConfigException("export_quant '" + s + "' must be one of f32, f16, bf16, q8_0, q4_0, q4_k");
        }
    }

    /// A writer holding the model's hyper-parameters and tensors as convert_hf_to_gguf.py writes them: 1-D tensors
    /// F32; the seven projections in `quant`'s type; token_embd/output F32/F16/BF16 as `quant`, Q8_0 for q8_0, q4_0
    /// and q4_k; a Q4_K weight whose rows are not whole 256-blocks falls back to Q4_0, any other 2-D tensor whose rows
    /// are not whole blocks to F16 (as the converter does). Q/K rows are
    /// permuted for the llama architecture. Add the tokenizer keys, then [GgufWriter#write].
    public static GgufWriter writer(LlamaWeights w, Quant quant, String name) {
        LlamaConfig c = w.config;
        String arch = switch (c.architecture()) {
            case Architecture.Llama _, Architecture.Mistral _ -> "llama";
            case Architecture.Qwen2 _ -> "qwen2";
        };
        boolean llama = arch.equals("llama");
        if (!(c.ropeScaling() instanceof RopeScaling.None) && !(c.ropeScaling() instanceof RopeScaling.Linear))
            throw new UnsupportedModelException("rope_scaling " + c.ropeScaling() + " cannot be exported to GGUF yet (llama.cpp needs a"
                    + " rope_freqs tensor); export a Hugging Face folder instead");
        if (c.slidingWindow() > 0)
            throw new UnsupportedModelException("sliding_window " + c.slidingWindow() + " has no GGUF llama-architecture key; export a"
                    + " Hugging Face folder instead");
        GgufWriter g = new GgufWriter();
        g.put("general.architecture", GgufValue.string(arch));
        g.put("general.type", GgufValue.string("model"));
        if (name != null) g.put("general.name", GgufValue.string(name));
        g.put(arch + ".block_count", GgufValue.u32(c.numHiddenLayers()));
        g.put(arch + ".context_length", GgufValue.u32(c.maxPositionEmbeddings()));
        g.put(arch + ".embedding_length", GgufValue.u32(c.hiddenSize()));
        g.put(arch + ".feed_forward_length", GgufValue.u32(c.intermediateSize()));
        g.put(arch + ".attention.head_count", GgufValue.u32(c.numAttentionHeads()));
        g.put(arch + ".attention.head_count_kv", GgufValue.u32(c.numKeyValueHeads()));
        g.put(arch + ".rope.freq_base", GgufValue.f32((float) c.ropeTheta()));
        g.put(arch + ".attention.layer_norm_rms_epsilon", GgufValue.f32((float) c.rmsNormEps()));
        if (c.headDim() != c.hiddenSize() / c.numAttentionHeads()) {
            g.put(arch + ".attention.key_length", GgufValue.u32(c.headDim()));
            g.put(arch + ".attention.value_length", GgufValue.u32(c.headDim()));
        }
        g.put(arch + ".rope.dimension_count", GgufValue.u32(c.headDim()));
        if (c.ropeScaling() instanceof RopeScaling.Linear(double factor)) {
            g.put(arch + ".rope.scaling.type", GgufValue.string("linear"));
            g.put(arch + ".rope.scaling.factor", GgufValue.f32((float) factor));
        }
        g.put(arch + ".vocab_size", GgufValue.u32(c.vocabSize()));
        g.put("general.file_type", GgufValue.u32(quant.fileType));
        if (quant.type.quantized()) g.put("general.quantization_version", GgufValue.u32(2));
        Map<String, long[]> shapes = LlamaWeights.expectedShapes(c);
        List<String> order = new ArrayList<>(shapes.keySet());
        // llama.cpp's converter order: token_embd first, then blocks, output_norm, output (ours: expectedShapes order)
        for (String hf : order) {
            float[] x = w.tensors().get(hf);
            long[] shape = shapes.get(hf);
            int heads = GgufNames.permutedHeads(hf, c, llama);
            if (heads != 0) x = GgufNames.permuteRows(x, heads, shape.length == 2 ? (int) shape[1] : 1, true);
            GgmlType type = shape.length == 1 ? GgmlType.F32
                    : isLinear(hf) ? quant.type
                    : quant.type.quantized() ? GgmlType.Q8_0 : quant.type;
            if (type == GgmlType.Q4_K && shape[1] % type.blockSize != 0) type = GgmlType.Q4_0;
            if (type.quantized() && shape[1] % type.blockSize != 0) type = GgmlType.F16;
            String gn = GgufNames.gguf(hf);
            if (type.quantized()) {
                GgmlBlocks b = GgmlBlocks.byName(type.name());
                g.add(gn, type, GgufWriter.reverse(shape), MemorySegment.ofArray(b.quantize(x, 0, x.length)));
            } else {
                g.addFloats(gn, shape, x, type);
            }
        }
        return g;
    }
}
