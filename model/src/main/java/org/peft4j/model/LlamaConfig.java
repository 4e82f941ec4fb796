package org.peft4j.model;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import org.peft4j.core.Peft4jException.ConfigException;
import org.peft4j.core.Peft4jException.UnsupportedModelException;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

/// A decoder's hyper-parameters with Hugging Face meanings in camelCase; `fromJson` is the one mapping from
/// config.json and `toJson` its inverse. Reference: transformers `LlamaConfig`, `Qwen2Config`, `MistralConfig`.
///
/// @param headDim        explicit `head_dim`, else hidden_size / num_attention_heads
/// @param bosTokenId     -1 when absent
/// @param eosTokenIds    `eos_token_id` as a list (config.json may hold an int or a list); empty when absent
/// @param slidingWindow  the attention window in effect, 0 for none (Mistral's `sliding_window`; Qwen2's only with
///                       `use_sliding_window: true`). peft4j attends fully and refuses sequences longer than it.
/// @param torchDtype     `torch_dtype` / `dtype` as written ("bfloat16"), or null
public record LlamaConfig(
        Architecture architecture,
        int hiddenSize, int intermediateSize, int numHiddenLayers,
        int numAttentionHeads, int numKeyValueHeads, int headDim,
        int vocabSize, int maxPositionEmbeddings,
        double rmsNormEps, double ropeTheta, RopeScaling ropeScaling,
        boolean tieWordEmbeddings, boolean attentionBias, boolean mlpBias,
        int bosTokenId, List<Integer> eosTokenIds,
        int slidingWindow, double initializerRange, String torchDtype) {

    public LlamaConfig {
        if (architecture == null) throw new ConfigException("architecture is null");
        if (ropeScaling == null) ropeScaling = new RopeScaling.None();
        eosTokenIds = List.copyOf(eosTokenIds == null ? List.of() : eosTokenIds);
        positive("hidden_size", hiddenSize); positive("intermediate_size", intermediateSize);
        positive("num_hidden_layers", numHiddenLayers); positive("num_attention_heads", numAttentionHeads);
        positive("num_key_value_heads", numKeyValueHeads); positive("head_dim", headDim);
        positive("vocab_size", vocabSize); positive("max_position_embeddings", maxPositionEmbeddings);
        if (numAttentionHeads % numKeyValueHeads != 0)
            throw new ConfigException("num_attention_heads " + numAttentionHeads + " is not a multiple of num_key_value_heads "
                    + numKeyValueHeads + "; grouped-query attention needs whole groups");
        if (headDim % 2 != 0) throw new ConfigException("head_dim " + headDim + " is odd; rotary embeddings pair i with i + head_dim/2");
        if (!(rmsNormEps > 0)) throw new ConfigException("rms_norm_eps must be > 0, got " + rmsNormEps);
        if (!(ropeTheta > 0)) throw new ConfigException("rope_theta must be > 0, got " + ropeTheta);
        if (slidingWindow < 0) throw new ConfigException("sliding_window must be >= 0, got " + slidingWindow);
        for (int id : eosTokenIds)
            if (id < 0 || id >= vocabSize) throw new ConfigException("eos_token_id " + id + " is outside the vocabulary [0, " + vocabSize + ")");
        // absurd sizes (hidden_size 10^9) are refused here, before anything is allocated from them: every weight is one
        // Java array, so each matrix must have fewer than 2^31 values
        fits("model.embed_tokens.weight", "vocab_size", vocabSize, "hidden_size", hiddenSize);
        fits("mlp.gate_proj.weight", "intermediate_size", intermediateSize, "hidden_size", hiddenSize);
        fits("self_attn.q_proj.weight", "num_attention_heads x head_dim", (long) numAttentionHeads * headDim, "hidden_size", hiddenSize);
    }

    /// The most values one weight (one Java array) may hold.
    public static final long MAX_TENSOR_VALUES = Integer.MAX_VALUE - 8;

    private static void fits(String tensor, String rowsName, long rows, String colsName, long cols) {
        double n = (double) rows * cols;
        if (n > MAX_TENSOR_VALUES)
            throw new ConfigException(String.format(java.util.Locale.ROOT, "%s %d x %s %d = %.3g values in %s, more than the %d one "
                    + "tensor may hold; the config.json is corrupt or the model far too large", rowsName, rows, colsName, cols, n, tensor, MAX_TENSOR_VALUES));
    }


    private static void positive(String field, int v) {
        if (v <= 0) throw new ConfigException("config field '" + field + "' must be > 0, got " + v);
    }

    /// Width of the query projection output, NH·HS (equals hidden_size unless head_dim is explicit).
    public int qDim() { return numAttentionHeads * headDim; }

    /// Width of the key and value projection outputs, KVH·HS.
    public int kvDim() { return numKeyValueHeads * headDim; }

    public boolean qkvBias() { return architecture.qkvBias(attentionBias); }
    public boolean outputBias() { return architecture.outputBias(attentionBias); }
    public boolean hasMlpBias() { return architecture.mlpBias(mlpBias); }

    /// Reads `dir/config.json` (or the file itself).
    public static LlamaConfig read(Path path) {
        Path file = Files.isDirectory(path) ? path.resolve("config.json") : path;
        try {
            return fromJson(Files.readString(file), file.toString());
        } catch (NoSuchFileException e) {
            throw new ConfigException(file + " does not exist; a model folder needs the config.json written by transformers' save_pretrained");
        } catch (IOException e) {
            throw new ConfigException(file + ": cannot read: " + e.getMessage(), e);
        }
    }

    /// The mapping from config.json. `where` names the source in error messages.
    public static LlamaConfig fromJson(String json, String where) {
        JsonNode c;
        try {
            c = new ObjectMapper().readTree(json);
        } catch (JsonProcessingException e) {
            throw new ConfigException(where + ": malformed JSON (" + e.getOriginalMessage() + " at line "
                    + e.getLocation().getLineNr() + ", column " + e.getLocation().getColumnNr() + "); fix or re-download config.json", e);
        }
        if (c == null || !c.isObject()) throw new ConfigException(where + ": expected a JSON object at the top level");
        Json j = new Json(c, where);
        Architecture arch = Architecture.of(j.string("model_type", null));
        String act = j.string("hidden_act", j.string("hidden_activation", "silu"));
        if (!act.equals("silu"))
            throw new UnsupportedModelException(where + ": hidden_act '" + act + "' is not supported; Llama-family MLPs use 'silu' (SwiGLU)");
        int hidden = j.integer("hidden_size");
        int heads = j.integer("num_attention_heads");
        int kvHeads = j.integer("num_key_value_heads", heads);
        if (heads <= 0) throw new ConfigException(where + ": config field 'num_attention_heads' must be > 0, got " + heads);
        if (hidden % heads != 0 && !c.hasNonNull("head_dim"))
            throw new ConfigException(where + ": hidden_size " + hidden + " is not divisible by num_attention_heads " + heads + " and no head_dim is given");
        int headDim = j.integer("head_dim", hidden / heads);
        JsonNode ropeParams = c.hasNonNull("rope_scaling") ? c.get("rope_scaling") : c.get("rope_parameters");
        double theta = j.real("rope_theta", ropeParams != null && ropeParams.hasNonNull("rope_theta")
                ? ropeParams.get("rope_theta").asDouble() : 10000.0);
        int window = switch (arch) {
            case Architecture.Llama _ -> 0;
            case Architecture.Mistral _ -> j.integer("sliding_window", 0);
            case Architecture.Qwen2 _ -> j.bool("use_sliding_window", false) ? j.integer("sliding_window", 0) : 0;
        };
        try {
            return of(arch, hidden, heads, kvHeads, headDim, theta, window, ropeParams, j, where);
        } catch (ConfigException e) {   // the record's own checks, named after the file
            throw e.getMessage().startsWith(where) ? e : new ConfigException(where + ": " + e.getMessage(), e);
        }
    }

    private static LlamaConfig of(Architecture arch, int hidden, int heads, int kvHeads, int headDim, double theta, int window,
                                  JsonNode ropeParams, Json j, String where) {
        return new LlamaConfig(arch, hidden, j.integer("intermediate_size"), j.integer("num_hidden_layers"),
                heads, kvHeads, headDim, j.integer("vocab_size"), j.integer("max_position_embeddings", 2048),
                j.real("rms_norm_eps", 1e-6), theta, ropeScaling(ropeParams, where),
                j.bool("tie_word_embeddings", false), j.bool("attention_bias", false), j.bool("mlp_bias", false),
                j.ids("bos_token_id").stream().findFirst().orElse(-1), j.ids("eos_token_id"),
                window, j.real("initializer_range", 0.02), j.string("torch_dtype", j.string("dtype", null)));
    }

    private static RopeScaling ropeScaling(JsonNode r, String where) {
        if (r == null || r.isNull()) return new RopeScaling.None();
        if (!r.isObject()) throw new ConfigException(where + ": rope_scaling must be an object or null, got " + r);
        String type = r.hasNonNull("rope_type") ? r.get("rope_type").asText() : r.path("type").asText("default");
        Json j = new Json(r, where + " rope_scaling");
        return switch (type) {
            case "default" -> new RopeScaling.None();
            case "linear" -> new RopeScaling.Linear(j.real("factor"));
            case "llama3" -> new RopeScaling.Llama3(j.real("factor"), j.real("low_freq_factor"), j.real("high_freq_factor"),
                    j.integer("original_max_position_embeddings"));
            default -> throw new UnsupportedModelException(where + ": rope_scaling type '" + type
                    + "' is not supported; peft4j implements 'default', 'linear' and 'llama3' (see transformers modeling_rope_utils.py)");
        };
    }

    /// The inverse of `fromJson`: a config.json transformers can load.
    public String toJson() {
        ObjectMapper m = new ObjectMapper();
        ObjectNode o = m.createObjectNode();
        o.putArray("architectures").add(architecture.hfClassName());
        o.put("model_type", architecture.modelType());
        o.put("hidden_size", hiddenSize);
        o.put("intermediate_size", intermediateSize);
        o.put("num_hidden_layers", numHiddenLayers);
        o.put("num_attention_heads", numAttentionHeads);
        o.put("num_key_value_heads", numKeyValueHeads);
        o.put("head_dim", headDim);
        o.put("vocab_size", vocabSize);
        o.put("max_position_embeddings", maxPositionEmbeddings);
        o.put("rms_norm_eps", rmsNormEps);
        o.put("rope_theta", ropeTheta);
        switch (ropeScaling) {
            case RopeScaling.None _ -> o.putNull("rope_scaling");
            case RopeScaling.Linear l -> o.putObject("rope_scaling").put("rope_type", "linear").put("factor", l.factor());
            case RopeScaling.Llama3 s -> o.putObject("rope_scaling").put("rope_type", "llama3").put("factor", s.factor())
                    .put("low_freq_factor", s.lowFreqFactor()).put("high_freq_factor", s.highFreqFactor())
                    .put("original_max_position_embeddings", s.originalMaxPositionEmbeddings());
        }
        o.put("hidden_act", "silu");
        o.put("tie_word_embeddings", tieWordEmbeddings);
        o.put("attention_bias", attentionBias);
        o.put("mlp_bias", mlpBias);
        if (bosTokenId >= 0) o.put("bos_token_id", bosTokenId);
        if (eosTokenIds.size() == 1) o.put("eos_token_id", eosTokenIds.getFirst());
        else if (!eosTokenIds.isEmpty()) { ArrayNode a = o.putArray("eos_token_id"); eosTokenIds.forEach(a::add); }
        if (slidingWindow > 0) {
            o.put("sliding_window", slidingWindow);
            if (architecture instanceof Architecture.Qwen2) o.put("use_sliding_window", true);
        }
        o.put("initializer_range", initializerRange);
        if (torchDtype != null) o.put("torch_dtype", torchDtype);
        try {
            return m.writerWithDefaultPrettyPrinter().writeValueAsString(o);
        } catch (JsonProcessingException e) {
            throw new IllegalStateException(e);
        }
    }

    /// Typed field access with messages naming the file and field.
    record Json(JsonNode node, String where) {
        int integer(String f) { return integer(f, require(f)); }
        double real(String f) { require(f); return real(f, 0); }

        int integer(String f, int dflt) {
            JsonNode v = node.get(f);
            if (v == null || v.isNull()) return dflt;
            if (!v.canConvertToInt() || !v.isIntegralNumber()) throw type(f, "an integer", v);
            return v.intValue();
        }

        double real(String f, double dflt) {
            JsonNode v = node.get(f);
            if (v == null || v.isNull()) return dflt;
            if (!v.isNumber()) throw type(f, "a number", v);
            return v.doubleValue();
        }

        boolean bool(String f, boolean dflt) {
            JsonNode v = node.get(f);
            if (v == null || v.isNull()) return dflt;
            if (!v.isBoolean()) throw type(f, "true or false", v);
            return v.booleanValue();
        }

        String string(String f, String dflt) {
            JsonNode v = node.get(f);
            if (v == null || v.isNull()) return dflt;
            if (!v.isTextual()) throw type(f, "a string", v);
            return v.textValue();
        }

        /// An int or a list of ints (eos_token_id), empty when absent.
        List<Integer> ids(String f) {
            JsonNode v = node.get(f);
            List<Integer> out = new ArrayList<>();
            if (v == null || v.isNull()) return out;
            if (v.isIntegralNumber()) out.add(v.intValue());
            else if (v.isArray()) for (JsonNode e : v) {
                if (!e.isIntegralNumber()) throw type(f, "an int or a list of ints", v);
                out.add(e.intValue());
            }
            else throw type(f, "an int or a list of ints", v);
            return out;
        }

        private int require(String f) {
            if (!node.hasNonNull(f)) throw new ConfigException(where + ": required field '" + f + "' is missing");
            return 0;
        }

        private ConfigException type(String f, String expected, JsonNode v) {
            return new ConfigException(where + ": field '" + f + "' must be " + expected + ", got " + v);
        }
    }
}
