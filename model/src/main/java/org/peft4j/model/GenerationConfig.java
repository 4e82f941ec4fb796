package org.peft4j.model;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import org.peft4j.core.Peft4jException.ConfigException;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;

/// Decoding defaults from generation_config.json, with transformers' `GenerationConfig` defaults where a field is
/// absent (temperature 1, top_p 1, top_k 50, repetition_penalty 1, do_sample false).
///
/// @param eosTokenIds stop ids; empty means "use the model config's eos_token_id"
/// @param maxNewTokens -1 when absent
public record GenerationConfig(List<Integer> eosTokenIds, int bosTokenId, boolean doSample, double temperature,
                               double topP, int topK, double repetitionPenalty, int maxNewTokens) {

    public GenerationConfig {
        eosTokenIds = List.copyOf(eosTokenIds);
        if (temperature < 0) throw new ConfigException("temperature must be >= 0, got " + temperature);
        if (!(topP > 0 && topP <= 1)) throw new ConfigException("top_p must be in (0, 1], got " + topP);
        if (topK < 0) throw new ConfigException("top_k must be >= 0 (0 = off), got " + topK);
        if (!(repetitionPenalty > 0)) throw new ConfigException("repetition_penalty must be > 0, got " + repetitionPenalty);
    }

    /// transformers' defaults, with the model's eos ids.
    public static GenerationConfig defaults(LlamaConfig model) {
        return new GenerationConfig(model.eosTokenIds(), model.bosTokenId(), false, 1.0, 1.0, 50, 1.0, -1);
    }

    /// `dir/generation_config.json` when present, else `defaults(model)`.
    public static GenerationConfig read(Path dir, LlamaConfig model) {
        Path file = dir.resolve("generation_config.json");
        if (!Files.exists(file)) return defaults(model);
        try {
            return fromJson(Files.readString(file), file.toString(), model);
        } catch (IOException e) {
            throw new ConfigException(file + ": cannot read: " + e.getMessage(), e);
        }
    }

    public static GenerationConfig fromJson(String json, String where, LlamaConfig model) {
        JsonNode c;
        try {
            c = new ObjectMapper().readTree(json);
        } catch (JsonProcessingException e) {
            throw new ConfigException(where + ": malformed JSON (" + e.getOriginalMessage() + ")", e);
        }
        if (c == null || !c.isObject()) throw new ConfigException(where + ": expected a JSON object at the top level");
        var j = new LlamaConfig.Json(c, where);
        List<Integer> eos = j.ids("eos_token_id");
        List<Integer> bos = j.ids("bos_token_id");
        return new GenerationConfig(eos.isEmpty() ? model.eosTokenIds() : eos, bos.isEmpty() ? model.bosTokenId() : bos.getFirst(),
                j.bool("do_sample", false), j.real("temperature", 1.0), j.real("top_p", 1.0), j.integer("top_k", 50),
                j.real("repetition_penalty", 1.0), j.integer("max_new_tokens", -1));
    }
}
