package org.peft4j.model.adapter.prompt;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import org.peft4j.core.DType;
import org.peft4j.core.Peft4jException.ConfigException;
import org.peft4j.core.Peft4jException.FormatException;
import org.peft4j.formats.json.PyJson;
import org.peft4j.formats.safetensors.SafeTensors;
import org.peft4j.formats.safetensors.TensorInfo;
import org.peft4j.model.adapter.lora.PeftAdapter;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;

/// A Hugging Face PEFT prompt-tuning adapter (peft_type "PROMPT_TUNING", Lester et al. 2021): `num_virtual_tokens`
/// learned embeddings prepended to every sequence's input embeddings; their positions are 0 .. n−1 and the text's
/// start at n (PEFT `PeftModelForCausalLM.forward`: `torch.cat((prompts, inputs_embeds), dim=1)`, labels of the
/// virtual tokens −100). Saved as PEFT's `get_peft_model_state_dict` does: one tensor `prompt_embeddings`
/// (num_virtual_tokens, token_dim). Reference: PEFT `tuners/prompt_tuning/{config,model}.py`.
///
/// @param numVirtualTokens n
/// @param init             "RANDOM" (PEFT's nn.Embedding init, N(0, 1)) or "TEXT" (the word embeddings of
///                         `initText`'s tokens, repeated or cut to n)
/// @param initText         prompt_tuning_init_text, or null
/// @param tokenizerNameOrPath as PEFT records it for TEXT init, or null
/// @param embeddings       (n, C) row-major
public record PromptAdapter(int numVirtualTokens, int tokenDim, String init, String initText, String tokenizerNameOrPath,
                            String baseModelNameOrPath, float[] embeddings) {
    public static final String TENSOR = "prompt_embeddings";

    public PromptAdapter {
        if (numVirtualTokens < 1) throw new ConfigException("num_virtual_tokens = " + numVirtualTokens + " must be >= 1 (e.g. 8 or 20)");
        if (!List.of("RANDOM", "TEXT").contains(init))
            throw new ConfigException("prompt_tuning_init '" + init + "' is not supported; use RANDOM or TEXT (with prompt_tuning_init_text)");
        if (init.equals("TEXT") && (initText == null || initText.isEmpty()))
            throw new ConfigException("prompt_tuning_init TEXT needs prompt_tuning_init_text, the text whose token embeddings start the prompt");
        if (embeddings.length != (long) numVirtualTokens * tokenDim)
            throw new ConfigException("prompt_embeddings holds " + embeddings.length + " values, expected num_virtual_tokens · token_dim = "
                    + numVirtualTokens + " · " + tokenDim);
    }

    /// Whether the adapter folder `dir` holds a prompt-tuning adapter.
    public static boolean isPromptTuning(Path dir) { return "PROMPT_TUNING".equals(peftType(dir)); }

    /// The peft_type of the adapter folder `dir`'s adapter_config.json, or null (no such file, or no peft_type).
    public static String peftType(Path dir) {
        Path f = dir.resolve(PeftAdapter.CONFIG_FILE);
        if (!Files.isRegularFile(f)) return null;
        JsonNode t = parse(f).get("peft_type");
        return t == null || t.isNull() ? null : t.asText();
    }

    /// Reads a PEFT prompt-tuning folder; shapes are checked against the config's num_virtual_tokens and token_dim.
    public static PromptAdapter read(Path dir) {
        JsonNode root = readConfig(dir);
        float[] e = readEmbeddings(dir, root);
        String init = root.path("prompt_tuning_init").asText("RANDOM");
        return new PromptAdapter(root.get("num_virtual_tokens").asInt(), root.get("token_dim").asInt(), init.equals("SAMPLE_VOCAB") ? "RANDOM" : init,
                text(root, "prompt_tuning_init_text"), text(root, "tokenizer_name_or_path"), text(root, "base_model_name_or_path"), e);
    }

    /// The adapter_config.json of the prompt-learning folder `dir` (prompt tuning or P-tuning), as a JSON object.
    public static JsonNode readConfig(Path dir) {
        Path configFile = dir.resolve(PeftAdapter.CONFIG_FILE), weightsFile = dir.resolve(PeftAdapter.WEIGHTS_FILE);
        if (!Files.exists(configFile)) throw new ConfigException(configFile + " does not exist; is " + dir + " a PEFT adapter directory?");
        if (!Files.exists(weightsFile)) throw new FormatException(weightsFile + " does not exist");
        return parse(configFile);
    }

    /// The one tensor `prompt_embeddings` of a prompt-learning folder (prompt tuning, P-tuning), its shape checked
    /// against `root`'s (the folder's config) num_virtual_tokens and token_dim.
    public static float[] readEmbeddings(Path dir, JsonNode root) {
        Path configFile = dir.resolve(PeftAdapter.CONFIG_FILE), weightsFile = dir.resolve(PeftAdapter.WEIGHTS_FILE);
        int n = root.path("num_virtual_tokens").asInt(-1), C = root.path("token_dim").asInt(-1);
        if (n < 1 || C < 1) throw new FormatException(configFile + ": num_virtual_tokens and token_dim must be positive integers, got "
                + root.get("num_virtual_tokens") + " and " + root.get("token_dim"));
        if (root.path("num_transformer_submodules").asInt(1) != 1)
            throw new FormatException(configFile + ": num_transformer_submodules " + root.get("num_transformer_submodules") + " is for encoder-decoder models; a causal LM has 1");
        try (SafeTensors st = SafeTensors.open(weightsFile)) {
            for (String name : st.tensors().keySet())
                if (!name.equals(TENSOR)) throw new FormatException(weightsFile + ": tensor '" + name + "' is not " + TENSOR + "; peft4j loads the prompt embeddings only");
            TensorInfo t = st.tensors().get(TENSOR);
            if (t == null) throw new FormatException(weightsFile + " has no '" + TENSOR + "' tensor");
            if (t.shape().length != 2 || t.shape()[0] != n || t.shape()[1] != C)
                throw new FormatException(weightsFile + ": " + TENSOR + " has shape " + Arrays.toString(t.shape()) + ", expected [" + n + ", " + C
                        + "] (num_virtual_tokens, token_dim) from " + configFile);
            return st.readFloats(TENSOR);
        }
    }

    /// Writes `adapter_model.safetensors` ({"format": "pt"}) and `adapter_config.json` as PEFT's save_pretrained
    /// writes a PromptTuningConfig (sorted keys, 2-space indent), each atomically.
    public void write(Path dir, DType dtype) { writeFolder(dir, numVirtualTokens, tokenDim, embeddings, configJson(), dtype); }

    /// Writes a prompt-learning folder: `prompt_embeddings` (n, C) and the given adapter_config.json text, each atomically.
    public static void writeFolder(Path dir, int n, int C, float[] embeddings, String configJson, DType dtype) {
        try {
            Files.createDirectories(dir);
            SafeTensors.write(dir.resolve(PeftAdapter.WEIGHTS_FILE),
                    List.of(SafeTensors.Entry.ofFloats(TENSOR, new long[]{n, C}, embeddings, dtype)), Map.of("format", "pt"));
            Path tmp = dir.resolve("." + PeftAdapter.CONFIG_FILE + ".tmp");
            Files.writeString(tmp, configJson, StandardCharsets.UTF_8);
            Files.move(tmp, dir.resolve(PeftAdapter.CONFIG_FILE), StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
        } catch (IOException e) {
            throw new FormatException("cannot write adapter to " + dir + ": " + e.getMessage(), e);
        }
    }

    /// adapter_config.json: PromptTuningConfig's fields (PEFT ≥ 0.6). num_attention_heads / num_layers are PEFT's
    /// informational copies of the base config, written null as a fresh config has them before get_peft_model.
    public String configJson() {
        Map<String, Object> m = new TreeMap<>();
        m.put("auto_mapping", null);
        m.put("base_model_name_or_path", baseModelNameOrPath);
        m.put("inference_mode", true);
        m.put("num_attention_heads", null);
        m.put("num_layers", null);
        m.put("num_transformer_submodules", 1);
        m.put("num_virtual_tokens", numVirtualTokens);
        m.put("peft_type", "PROMPT_TUNING");
        m.put("prompt_tuning_init", init);
        m.put("prompt_tuning_init_text", initText);
        m.put("revision", null);
        m.put("task_type", "CAUSAL_LM");
        m.put("token_dim", tokenDim);
        m.put("tokenizer_kwargs", null);
        m.put("tokenizer_name_or_path", tokenizerNameOrPath);
        return PyJson.dumps(m, true, 2, null, null, true);
    }

    /// PEFT PromptEmbedding's TEXT init: the ids of `initText` repeated (ceil) or cut to n; the caller takes their word
    /// embeddings.
    public static int[] textInitIds(int[] textIds, int n) {
        if (textIds.length == 0) throw new ConfigException("prompt_tuning_init_text encodes to no tokens; give a non-empty text");
        int[] out = new int[n];
        for (int i = 0; i < n; i++) out[i] = textIds[i % textIds.length];
        return out;
    }

    static JsonNode parse(Path file) {
        try {
            JsonNode root = new ObjectMapper().readTree(Files.readString(file, StandardCharsets.UTF_8));
            if (root == null || !root.isObject()) throw new FormatException(file + ": expected a JSON object");
            return root;
        } catch (IOException e) {
            throw new FormatException(file + ": cannot read JSON: " + e.getMessage(), e);
        }
    }

    public static String text(JsonNode root, String key) {
        JsonNode v = root.get(key);
        return v == null || v.isNull() ? null : v.asText();
    }
}
