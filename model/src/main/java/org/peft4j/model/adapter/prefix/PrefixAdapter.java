package org.peft4j.model.adapter.prefix;

import com.fasterxml.jackson.databind.JsonNode;
import org.peft4j.core.DType;
import org.peft4j.core.Peft4jException.ConfigException;
import org.peft4j.core.Peft4jException.FormatException;
import org.peft4j.formats.json.PyJson;
import org.peft4j.formats.safetensors.SafeTensors;
import org.peft4j.formats.safetensors.TensorInfo;
import org.peft4j.model.adapter.lora.PeftAdapter;
import org.peft4j.model.adapter.prompt.PromptAdapter;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.Map;
import java.util.TreeMap;

/// A Hugging Face PEFT prefix-tuning adapter (peft_type "PREFIX_TUNING"; Li & Liang 2021, and P-tuning v2, which is
/// the same thing on decoder models): at every layer, `num_virtual_tokens` learned key and value vectors are placed
/// before the sequence's own in the attention (PEFT passes them as `past_key_values`).
///
/// **Layout** (PEFT `PeftModel.get_prompt`): `prompt_embeddings` is (n, num_layers·2·token_dim); row p viewed as
/// (num_layers·2, num_attention_heads, token_dim / num_attention_heads), permuted so that index 2l is layer l's keys
/// and 2l+1 its values. For a grouped-query model PEFT sets token_dim = head_dim·num_key_value_heads and
/// num_attention_heads = num_key_value_heads (`_prepare_prompt_learning_config`, PEFT #1901): the prefix holds one
/// vector per KV head, which the attention shares between its query heads as it does the sequence's keys. So
/// layer l's key of virtual token p, KV head h, is at `p·L·2·D + (2l)·D + h·hd` with D = token_dim = kvDim.
///
/// **Positions**: the prefix keys go into the cache as they are, never rotated; the text follows at positions n, n+1,
/// … (transformers counts the cached prefix in cache_position; PEFT ≥ 0.13 offsets explicit position_ids by n).
///
/// **File**: PEFT's `get_peft_model_state_dict` saves the prefix as used at inference: with prefix_projection the
/// reparameterising MLP's output (`get_prompt_embedding_to_save`), not its weights, and the config says
/// inference_mode true, under which PEFT's PrefixEncoder is a plain Embedding(n, L·2·token_dim). The MLP exists only
/// while training ([PrefixEncoder]).
///
/// @param numVirtualTokens  n
/// @param numLayers         L of the base model
/// @param numAttentionHeads PEFT's field: the KV heads of the base (num_key_value_heads) for a Llama/Qwen2 model
/// @param tokenDim          PEFT's field: head_dim · num_attention_heads (kvDim)
/// @param encoderHiddenSize the MLP's hidden width while training (PEFT default token_dim)
/// @param prefixProjection  whether training went through the MLP (informational at inference)
/// @param embeddings        (n, L·2·tokenDim) row-major
public record PrefixAdapter(int numVirtualTokens, int numLayers, int numAttentionHeads, int tokenDim, int encoderHiddenSize,
                            boolean prefixProjection, String baseModelNameOrPath, float[] embeddings) {
    public static final String TENSOR = "prompt_embeddings";

    public PrefixAdapter {
        if (numVirtualTokens < 1) throw new ConfigException("num_virtual_tokens = " + numVirtualTokens + " must be >= 1 (e.g. 16 or 20)");
        if (numLayers < 1 || numAttentionHeads < 1 || tokenDim < 1 || tokenDim % numAttentionHeads != 0)
            throw new ConfigException("prefix tuning: num_layers " + numLayers + ", num_attention_heads " + numAttentionHeads + ", token_dim "
                    + tokenDim + " must be positive with token_dim a multiple of num_attention_heads");
        if (encoderHiddenSize < 1) throw new ConfigException("encoder_hidden_size = " + encoderHiddenSize + " must be >= 1");
        if (embeddings.length != (long) numVirtualTokens * width(numLayers, tokenDim))
            throw new ConfigException("prompt_embeddings holds " + embeddings.length + " values, expected num_virtual_tokens · num_layers · 2 · token_dim = "
                    + numVirtualTokens + " · " + numLayers + " · 2 · " + tokenDim);
    }

    /// The width of one virtual token's row: L·2·token_dim.
    public static int width(int numLayers, int tokenDim) { return numLayers * 2 * tokenDim; }

    /// Offset in [#embeddings] of virtual token p's key (kv 0) or value (kv 1) at layer l: tokenDim floats, (heads, hd).
    public int offset(int p, int l, int kv) { return p * width(numLayers, tokenDim) + (2 * l + kv) * tokenDim; }

    /// Whether the adapter folder `dir` holds a prefix-tuning adapter.
    public static boolean isPrefixTuning(Path dir) {
        Path f = dir.resolve(PeftAdapter.CONFIG_FILE);
        if (!Files.isRegularFile(f)) return false;
        JsonNode t = PeftAdapter.parse(f).get("peft_type");
        return t != null && "PREFIX_TUNING".equals(t.asText());
    }

    /// Reads a PEFT prefix-tuning folder; the tensor's shape is checked against the config's fields.
    public static PrefixAdapter read(Path dir) {
        Path configFile = dir.resolve(PeftAdapter.CONFIG_FILE), weightsFile = dir.resolve(PeftAdapter.WEIGHTS_FILE);
        if (!Files.exists(configFile)) throw new ConfigException(configFile + " does not exist; is " + dir + " a PEFT adapter directory?");
        if (!Files.exists(weightsFile)) throw new FormatException(weightsFile + " does not exist");
        JsonNode root = PeftAdapter.parse(configFile);
        int n = root.path("num_virtual_tokens").asInt(-1), D = root.path("token_dim").asInt(-1);
        int L = root.path("num_layers").asInt(-1), H = root.path("num_attention_heads").asInt(-1);
        if (n < 1 || D < 1 || L < 1 || H < 1)
            throw new FormatException(configFile + ": num_virtual_tokens, token_dim, num_layers and num_attention_heads must be positive integers, got "
                    + root.get("num_virtual_tokens") + ", " + root.get("token_dim") + ", " + root.get("num_layers") + ", " + root.get("num_attention_heads"));
        if (root.path("num_transformer_submodules").asInt(1) != 1)
            throw new FormatException(configFile + ": num_transformer_submodules " + root.get("num_transformer_submodules") + " is for encoder-decoder models; a causal LM has 1");
        if (!root.path("inference_mode").asBoolean(true) && root.path("prefix_projection").asBoolean(false))
            throw new FormatException(configFile + ": inference_mode false with prefix_projection: PEFT saves the projected prefix and marks it inference_mode true; "
                    + "this file does not say which it holds");
        try (SafeTensors st = SafeTensors.open(weightsFile)) {
            for (String name : st.tensors().keySet())
                if (!name.equals(TENSOR)) throw new FormatException(weightsFile + ": tensor '" + name + "' is not " + TENSOR + "; peft4j loads the prefix only");
            TensorInfo t = st.tensors().get(TENSOR);
            if (t == null) throw new FormatException(weightsFile + " has no '" + TENSOR + "' tensor");
            if (t.shape().length != 2 || t.shape()[0] != n || t.shape()[1] != (long) width(L, D))
                throw new FormatException(weightsFile + ": " + TENSOR + " has shape " + Arrays.toString(t.shape()) + ", expected [" + n + ", " + width(L, D)
                        + "] (num_virtual_tokens, num_layers · 2 · token_dim) from " + configFile);
            JsonNode e = root.get("encoder_hidden_size");
            return new PrefixAdapter(n, L, H, D, e == null || e.isNull() ? D : e.asInt(), root.path("prefix_projection").asBoolean(false),
                    text(root, "base_model_name_or_path"), st.readFloats(TENSOR));
        }
    }

    /// Writes `adapter_model.safetensors` ({"format": "pt"}) and `adapter_config.json` as PEFT's save_pretrained
    /// writes a PrefixTuningConfig (sorted keys, 2-space indent), each atomically.
    public void write(Path dir, DType dtype) {
        PromptAdapter.writeFolder(dir, numVirtualTokens, width(numLayers, tokenDim), embeddings, configJson(), dtype);
    }

    /// adapter_config.json: PrefixTuningConfig's fields as PEFT saves them after get_peft_model (num_layers, token_dim,
    /// num_attention_heads filled from the base config; inference_mode true).
    public String configJson() {
        Map<String, Object> m = new TreeMap<>();
        m.put("auto_mapping", null);
        m.put("base_model_name_or_path", baseModelNameOrPath);
        m.put("encoder_hidden_size", encoderHiddenSize);
        m.put("inference_mode", true);
        m.put("num_attention_heads", numAttentionHeads);
        m.put("num_layers", numLayers);
        m.put("num_transformer_submodules", 1);
        m.put("num_virtual_tokens", numVirtualTokens);
        m.put("peft_type", "PREFIX_TUNING");
        m.put("prefix_projection", prefixProjection);
        m.put("revision", null);
        m.put("task_type", "CAUSAL_LM");
        m.put("token_dim", tokenDim);
        return PyJson.dumps(m, true, 2, null, null, true);
    }

    private static String text(JsonNode root, String key) {
        JsonNode v = root.get(key);
        return v == null || v.isNull() ? null : v.asText();
    }
}
