package org.peft4j.model.adapter.ptuning;

import com.fasterxml.jackson.databind.JsonNode;
import org.peft4j.core.DType;
import org.peft4j.core.Peft4jException.FormatException;
import org.peft4j.formats.json.PyJson;
import org.peft4j.model.adapter.prompt.PromptAdapter;

import java.nio.file.Path;
import java.util.Map;
import java.util.TreeMap;

/// A Hugging Face PEFT P-tuning adapter folder (peft_type "P_TUNING"): what `get_peft_model_state_dict` saves for it
/// is the prompt encoder's *output* for the virtual tokens, one tensor `prompt_embeddings` (num_virtual_tokens,
/// token_dim) (`PeftModel.get_prompt_embedding_to_save`), so inference needs no encoder: PEFT loads it into the
/// encoder's `embedding.weight` in inference mode and prepends it as prompt tuning does. adapter_config.json holds
/// PromptEncoderConfig's fields. Reference: PEFT `tuners/p_tuning/config.py`, `utils/save_and_load.py`.
///
/// @param config     the encoder's settings as trained (recorded; not needed for inference)
/// @param tokenDim   C, the base model's hidden size
/// @param embeddings (n, C) row-major, the encoder's output
public record PTuningAdapter(PromptEncoderConfig config, int tokenDim, String baseModelNameOrPath, float[] embeddings) {
    public static final String PEFT_TYPE = "P_TUNING";

    public PTuningAdapter {
        if (embeddings.length != (long) config.numVirtualTokens() * tokenDim)
            throw new FormatException("prompt_embeddings holds " + embeddings.length + " values, expected num_virtual_tokens · token_dim = "
                    + config.numVirtualTokens() + " · " + tokenDim);
    }

    /// Whether the adapter folder `dir` holds a P-tuning adapter.
    public static boolean isPTuning(Path dir) { return PEFT_TYPE.equals(PromptAdapter.peftType(dir)); }

    /// Reads a PEFT P-tuning folder (ours or PEFT's); the shape of prompt_embeddings is checked against the config.
    /// encoder_num_layers and encoder_dropout a PEFT MLP encoder ignored are read as PEFT's defaults.
    public static PTuningAdapter read(Path dir) {
        JsonNode root = PromptAdapter.readConfig(dir);
        float[] e = PromptAdapter.readEmbeddings(dir, root);
        int C = root.get("token_dim").asInt();
        String type = root.path("encoder_reparameterization_type").asText("MLP");
        JsonNode hidden = root.get("encoder_hidden_size");
        boolean lstm = type.equals("LSTM");
        var cfg = new PromptEncoderConfig(root.get("num_virtual_tokens").asInt(), type, hidden == null || hidden.isNull() ? null : hidden.asInt(),
                lstm ? root.path("encoder_num_layers").asInt(PromptEncoderConfig.DEFAULT_NUM_LAYERS) : PromptEncoderConfig.DEFAULT_NUM_LAYERS,
                0.0);   // the saved embeddings are the encoder's output: its dropout played no part in them
        return new PTuningAdapter(cfg, C, PromptAdapter.text(root, "base_model_name_or_path"), e);
    }

    /// Writes `adapter_model.safetensors` and `adapter_config.json` as PEFT's save_pretrained writes them.
    public void write(Path dir, DType dtype) {
        PromptAdapter.writeFolder(dir, config.numVirtualTokens(), tokenDim, embeddings, configJson(), dtype);
    }

    /// adapter_config.json: PromptEncoderConfig's fields (sorted keys, 2-space indent, PEFT ≥ 0.6), encoder_hidden_size
    /// resolved as `_prepare_prompt_learning_config` resolves it (the token_dim when unset); num_attention_heads /
    /// num_layers written null as PromptAdapter does.
    public String configJson() {
        Map<String, Object> m = new TreeMap<>();
        m.put("auto_mapping", null);
        m.put("base_model_name_or_path", baseModelNameOrPath);
        m.put("encoder_dropout", config.dropout());
        m.put("encoder_hidden_size", config.hiddenSize(tokenDim));
        m.put("encoder_num_layers", config.numLayers());
        m.put("encoder_reparameterization_type", config.type());
        m.put("inference_mode", true);
        m.put("num_attention_heads", null);
        m.put("num_layers", null);
        m.put("num_transformer_submodules", 1);
        m.put("num_virtual_tokens", config.numVirtualTokens());
        m.put("peft_type", PEFT_TYPE);
        m.put("revision", null);
        m.put("task_type", "CAUSAL_LM");
        m.put("token_dim", tokenDim);
        return PyJson.dumps(m, true, 2, null, null, true);
    }

    /// The same virtual tokens as a prompt-tuning value: what inference runs (PEFT: `prompt_encoder.embedding.weight`
    /// in inference mode, prepended as prompt tuning's).
    public PromptAdapter asPrompt() {
        return new PromptAdapter(config.numVirtualTokens(), tokenDim, "RANDOM", null, null, baseModelNameOrPath, embeddings);
    }
}
