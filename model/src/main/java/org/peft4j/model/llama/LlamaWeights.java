package org.peft4j.model.llama;

import org.peft4j.core.Peft4jException.FormatException;
import org.peft4j.formats.safetensors.TensorInfo;
import org.peft4j.model.LlamaConfig;

import java.util.Arrays;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.function.Function;

/// All weights of a Llama-family decoder as float32 arrays (F32/BF16/F16 converted at load), in Hugging Face
/// layout: nn.Linear weights (out, in) row-major. When embeddings are tied, `lmHead == embedTokens` (the same array).
/// Owns the name table (with `LayerTensor`); the forward pass is `LlamaModel`.
public final class LlamaWeights {
    private static final System.Logger LOG = System.getLogger(LlamaWeights.class.getName());

    public static final String EMBED_TOKENS = "model.embed_tokens.weight";
    public static final String NORM = "model.norm.weight";
    public static final String LM_HEAD = "lm_head.weight";

    /// One decoder layer; biases are null when the architecture/config has none.
    public record Layer(float[] inputLayernorm,                         // (C)
                        float[] wq, float[] bq,                         // (NH·HS, C), (NH·HS)
                        float[] wk, float[] bk,                         // (KVH·HS, C), (KVH·HS)
                        float[] wv, float[] bv,                         // (KVH·HS, C), (KVH·HS)
                        float[] wo, float[] bo,                         // (C, NH·HS), (C)
                        float[] postAttentionLayernorm,                 // (C)
                        float[] wGate, float[] bGate,                   // (F, C), (F)
                        float[] wUp, float[] bUp,                       // (F, C), (F)
                        float[] wDown, float[] bDown) {                 // (C, F), (C)

        public float[] get(LayerTensor t) {
            return switch (t) {
                case INPUT_LAYERNORM -> inputLayernorm;
                case Q_PROJ -> wq; case Q_BIAS -> bq;
                case K_PROJ -> wk; case K_BIAS -> bk;
                case V_PROJ -> wv; case V_BIAS -> bv;
                case O_PROJ -> wo; case O_BIAS -> bo;
                case POST_ATTENTION_LAYERNORM -> postAttentionLayernorm;
                case GATE_PROJ -> wGate; case GATE_BIAS -> bGate;
                case UP_PROJ -> wUp; case UP_BIAS -> bUp;
                case DOWN_PROJ -> wDown; case DOWN_BIAS -> bDown;
            };
        }

        /// A layer from a lookup by table entry (null for absent biases).
        public static Layer of(Function<LayerTensor, float[]> f) {
            return new Layer(f.apply(LayerTensor.INPUT_LAYERNORM),
                    f.apply(LayerTensor.Q_PROJ), f.apply(LayerTensor.Q_BIAS),
                    f.apply(LayerTensor.K_PROJ), f.apply(LayerTensor.K_BIAS),
                    f.apply(LayerTensor.V_PROJ), f.apply(LayerTensor.V_BIAS),
                    f.apply(LayerTensor.O_PROJ), f.apply(LayerTensor.O_BIAS),
                    f.apply(LayerTensor.POST_ATTENTION_LAYERNORM),
                    f.apply(LayerTensor.GATE_PROJ), f.apply(LayerTensor.GATE_BIAS),
                    f.apply(LayerTensor.UP_PROJ), f.apply(LayerTensor.UP_BIAS),
                    f.apply(LayerTensor.DOWN_PROJ), f.apply(LayerTensor.DOWN_BIAS));
        }
    }

    public final LlamaConfig config;
    public final float[] embedTokens;   // (V, C)
    public final float[] norm;          // (C)
    public final float[] lmHead;        // (V, C); the same array as embedTokens when tied
    public final List<Layer> layers;    // (L)

    public LlamaWeights(LlamaConfig config, float[] embedTokens, float[] norm, float[] lmHead, List<Layer> layers) {
        this.config = config; this.embedTokens = embedTokens; this.norm = norm; this.lmHead = lmHead;
        this.layers = List.copyOf(layers);
        if (config.tieWordEmbeddings() && lmHead != embedTokens)
            throw new IllegalArgumentException("tie_word_embeddings is true but lmHead is not the embedTokens array");
    }

    /// Every tensor a checkpoint of this config holds, name → shape, in transformers' order. With tied embeddings
    /// only `model.embed_tokens.weight` is listed (what save_pretrained writes).
    public static Map<String, long[]> expectedShapes(LlamaConfig c) {
        Map<String, long[]> m = new LinkedHashMap<>();
        long V = c.vocabSize(), C = c.hiddenSize();
        m.put(EMBED_TOKENS, new long[]{V, C});
        for (int l = 0; l < c.numHiddenLayers(); l++)
            for (LayerTensor t : LayerTensor.values())
                if (t.present(c)) m.put(t.name(l), t.shape(c));
        m.put(NORM, new long[]{C});
        if (!c.tieWordEmbeddings()) m.put(LM_HEAD, new long[]{V, C});
        return m;
    }

    /// The tensors to save, name → data, in `expectedShapes` order.
    public Map<String, float[]> tensors() {
        Map<String, float[]> m = new LinkedHashMap<>();
        m.put(EMBED_TOKENS, embedTokens);
        for (int l = 0; l < layers.size(); l++)
            for (LayerTensor t : LayerTensor.values())
                if (t.present(config)) m.put(t.name(l), layers.get(l).get(t));
        m.put(NORM, norm);
        if (!config.tieWordEmbeddings()) m.put(LM_HEAD, lmHead);
        return m;
    }

    /// Loads and validates: each expected tensor must exist with its shape and a float dtype; extras are logged.
    /// Tied checkpoints may store the shared matrix under either name (tinystories-656k stores only `lm_head.weight`).
    public static LlamaWeights load(LlamaConfig c, TensorSource src, String where) {
        return load(c, src, where, t -> false);
    }

    /// As [#load], leaving the tensors for which `elsewhere` is true null (marked used, not read): the caller holds
    /// them in another form (16-bit or 4-bit [org.peft4j.model.weights.BaseWeight]s, a 16-bit embedding table) and
    /// checks their shapes when it reads them. Layer tensors, `embed_tokens` and `lm_head` (tied: the one matrix
    /// stored) may be left out; the norms are always read.
    public static LlamaWeights load(LlamaConfig c, TensorSource src, String where, java.util.function.Predicate<String> elsewhere) {
        Map<String, TensorInfo> infos = src.tensors();
        Set<String> used = new HashSet<>();
        Function<String, float[]> read = name -> {
            TensorInfo info = infos.get(name);
            long[] shape = shapeOf(c, name);
            if (info == null)
                throw new FormatException(where + ": tensor '" + name + "' (shape " + Arrays.toString(shape) + ") is missing; the checkpoint does not match config.json ("
                        + c.architecture().modelType() + ", " + c.numHiddenLayers() + " layers, hidden " + c.hiddenSize() + ")");
            if (!Arrays.equals(info.shape(), shape))
                throw new FormatException(where + ": tensor '" + name + "' has shape " + info.shapeString() + ", expected "
                        + Arrays.toString(shape) + " from config.json; the checkpoint and config.json disagree");
            switch (info.dtype()) {
                case F32, BF16, F16 -> { }
                default -> throw new FormatException(where + ": tensor '" + name + "' has dtype " + info.dtype()
                        + ", which is not supported; convert the checkpoint to F32/BF16/F16");
            }
            used.add(name);
            return src.readFloats(name);
        };
        Function<String, float[]> readHere = name -> {
            if (!elsewhere.test(name)) return read.apply(name);
            used.add(name);
            return null;
        };
        boolean hasEmbed = infos.containsKey(EMBED_TOKENS), hasHead = infos.containsKey(LM_HEAD);
        float[] embed, head;
        if (c.tieWordEmbeddings()) {
            embed = readHere.apply(embeddingsName(c, infos.keySet()));
            head = embed;
            if (hasEmbed && hasHead) used.add(LM_HEAD);   // a redundant copy of the tied matrix
        } else {
            embed = readHere.apply(EMBED_TOKENS);
            head = readHere.apply(LM_HEAD);
        }
        Layer[] layers = new Layer[c.numHiddenLayers()];
        for (int l = 0; l < layers.length; l++) {
            int layer = l;
            layers[l] = Layer.of(t -> {
                if (!t.present(c)) return null;
                return readHere.apply(t.name(layer));
            });
        }
        float[] norm = read.apply(NORM);
        for (String name : infos.keySet())
            if (!used.contains(name))
                LOG.log(System.Logger.Level.WARNING, "{0}: ignoring unexpected tensor ''{1}'' {2}", where, name, infos.get(name).shapeString());
        return new LlamaWeights(c, embed, norm, head, Arrays.asList(layers));
    }

    /// The tensor holding the embedding table: `embed_tokens`, or for tied embeddings stored as `lm_head` only, that.
    public static String embeddingsName(LlamaConfig c, java.util.Set<String> stored) {
        return c.tieWordEmbeddings() && !stored.contains(EMBED_TOKENS) && stored.contains(LM_HEAD) ? LM_HEAD : EMBED_TOKENS;
    }

    private static long[] shapeOf(LlamaConfig c, String name) {
        if (name.equals(EMBED_TOKENS) || name.equals(LM_HEAD)) return new long[]{c.vocabSize(), c.hiddenSize()};
        if (name.equals(NORM)) return new long[]{c.hiddenSize()};
        for (LayerTensor t : LayerTensor.values())
            if (name.endsWith("." + t.suffix)) return t.shape(c);
        throw new IllegalArgumentException(name);
    }

    /// Number of distinct parameters held here as float32 (a tied matrix counted once; tensors left to another form
    /// by [#load(LlamaConfig, TensorSource, String, java.util.function.Predicate)] not counted).
    public long parameterCount() {
        long n = (embedTokens == null ? 0 : embedTokens.length) + norm.length + (lmHead == embedTokens || lmHead == null ? 0 : lmHead.length);
        for (Layer layer : layers)
            for (LayerTensor t : LayerTensor.values()) if (layer.get(t) != null) n += layer.get(t).length;
        return n;
    }
}
