package org.peft4j.serve;

import com.fasterxml.jackson.databind.JsonNode;
import org.peft4j.model.GenerationConfig;
import org.peft4j.model.generate.Sampler;
import org.peft4j.template.ChatMessage;

import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.ThreadLocalRandom;

/// The fields of an OpenAI completions or chat completions request that peft4j reads, checked at the boundary: a wrong
/// type or value is a 400 naming the field. Fields that would change the answer and are not supported (`n` > 1,
/// `logprobs`, penalties other than 0, `logit_bias`, `echo`, `best_of`, `suffix`, tools) are refused, never ignored.
/// Unset sampling fields fall back to the model's generation_config.json, as `peft4j generate` does (vLLM's default).
/// Reference: OpenAI API reference (`/v1/completions`, `/v1/chat/completions`); vLLM's `top_k`, `repetition_penalty`.
record OpenAiRequest(String model, Sampler sampler, long seed, Integer maxTokens, List<String> stop, boolean stream,
                     boolean includeUsage, String prompt, int[] promptIds, List<ChatMessage> messages) {

    static OpenAiRequest completion(JsonNode body, GenerationConfig g) {
        common(body);
        refuse(body, "echo", true);
        refuse(body, "suffix", null);
        refuseAbove(body, "best_of", 1);
        if (body.has("logprobs") && !body.get("logprobs").isNull())
            throw ApiException.invalid("logprobs", "logprobs is not supported by this server; leave it out");
        JsonNode p = body.get("prompt");
        String text = null;
        int[] ids = null;
        if (p == null || p.isNull()) throw ApiException.invalid("prompt", "'prompt' is a required property");
        if (p.isTextual()) text = p.asText();
        else if (p.isArray() && p.size() == 1 && p.get(0).isTextual()) text = p.get(0).asText();
        else if (p.isArray() && !p.isEmpty() && allInts(p)) {
            ids = new int[p.size()];
            for (int i = 0; i < ids.length; i++) ids[i] = p.get(i).asInt();
        } else if (p.isArray() && p.size() == 1 && p.get(0).isArray() && allInts(p.get(0)) && !p.get(0).isEmpty()) {
            ids = new int[p.get(0).size()];
            for (int i = 0; i < ids.length; i++) ids[i] = p.get(0).get(i).asInt();
        } else if (p.isArray() && p.size() > 1)
            throw ApiException.invalid("prompt", "one prompt per request is supported; send the prompts as separate requests");
        else throw ApiException.invalid("prompt", "'prompt' must be a string, an array of one string, or an array of token ids");
        return of(body, g, text, ids, null);
    }

    static OpenAiRequest chat(JsonNode body, GenerationConfig g) {
        common(body);
        if (body.has("logprobs") && body.get("logprobs").asBoolean(false))
            throw ApiException.invalid("logprobs", "logprobs is not supported by this server; leave it out");
        refuse(body, "tools", null);
        refuse(body, "functions", null);
        JsonNode rf = body.get("response_format");
        if (rf != null && !rf.isNull() && !"text".equals(rf.path("type").asText()))
            throw ApiException.invalid("response_format", "response_format '" + rf.path("type").asText() + "' is not supported; only 'text'");
        JsonNode ms = body.get("messages");
        if (ms == null || ms.isNull()) throw ApiException.invalid("messages", "'messages' is a required property");
        if (!ms.isArray() || ms.isEmpty()) throw ApiException.invalid("messages", "'messages' must be a non-empty array of {role, content}");
        List<ChatMessage> messages = new ArrayList<>();
        for (int i = 0; i < ms.size(); i++) {
            JsonNode m = ms.get(i);
            String where = "messages[" + i + "]";
            if (!m.isObject()) throw ApiException.invalid(where, where + " must be an object with 'role' and 'content'");
            JsonNode role = m.get("role");
            if (role == null || !role.isTextual()) throw ApiException.invalid(where + ".role", where + ".role must be a string");
            String r = role.asText();
            if (r.equals("developer")) r = "system";
            if (!List.of("system", "user", "assistant").contains(r))
                throw ApiException.invalid(where + ".role", "role '" + role.asText() + "' is not supported; use system, developer, user or assistant");
            messages.add(new ChatMessage(r, content(m.get("content"), where + ".content")));
        }
        return of(body, g, null, null, messages);
    }

    private static OpenAiRequest of(JsonNode body, GenerationConfig g, String prompt, int[] ids, List<ChatMessage> messages) {
        String model = body.path("model").asText();
        double rp = number(body, "repetition_penalty", g.repetitionPenalty(), 0, false, 10);
        Double t = body.hasNonNull("temperature") ? number(body, "temperature", 0, 0, true, 2) : null;
        double temperature = t != null ? t : (g.doSample() ? g.temperature() : 0);
        double topP = body.hasNonNull("top_p") ? number(body, "top_p", 1, 0, false, 1) : g.topP();
        int topK = body.hasNonNull("top_k") ? integer(body, "top_k", 0, -1, Integer.MAX_VALUE) : g.topK();
        if (topK < 0) topK = 0;
        Sampler s = temperature == 0 ? new Sampler.Greedy(rp) : new Sampler.Random(temperature, topK, topP, rp);
        long seed = body.hasNonNull("seed") ? longValue(body, "seed") : ThreadLocalRandom.current().nextLong();
        Integer max = null;
        for (String k : List.of("max_completion_tokens", "max_tokens"))
            if (body.hasNonNull(k)) { max = integer(body, k, 0, 1, Integer.MAX_VALUE); break; }
        boolean stream = body.hasNonNull("stream") && bool(body, "stream");
        JsonNode so = body.get("stream_options");
        boolean usage = false;
        if (so != null && !so.isNull()) {
            if (!stream) throw ApiException.invalid("stream_options", "stream_options is only allowed when stream is true");
            if (!so.isObject()) throw ApiException.invalid("stream_options", "stream_options must be an object");
            usage = so.hasNonNull("include_usage") && bool(so, "include_usage");
        }
        return new OpenAiRequest(model, s, seed, max, stops(body.get("stop")), stream, usage, prompt, ids, messages);
    }

    private static void common(JsonNode body) {
        JsonNode m = body.get("model");
        if (m == null || m.isNull()) throw ApiException.invalid("model", "'model' is a required property; GET /v1/models lists them");
        if (!m.isTextual()) throw ApiException.invalid("model", "'model' must be a string");
        refuseAbove(body, "n", 1);
        for (String k : List.of("presence_penalty", "frequency_penalty"))
            if (body.hasNonNull(k) && number(body, k, 0, -2, true, 2) != 0)
                throw ApiException.invalid(k, k + " is not supported by this server (only 0); use repetition_penalty instead");
        JsonNode lb = body.get("logit_bias");
        if (lb != null && !lb.isNull() && !(lb.isObject() && lb.isEmpty()))
            throw ApiException.invalid("logit_bias", "logit_bias is not supported by this server; leave it out");
    }

    private static String content(JsonNode c, String where) {
        if (c == null || c.isNull()) return "";
        if (c.isTextual()) return c.asText();
        if (c.isArray()) {
            StringBuilder b = new StringBuilder();
            for (JsonNode part : c) {
                if (!part.isObject() || !"text".equals(part.path("type").asText()) || !part.path("text").isTextual())
                    throw ApiException.invalid(where, where + ": only text parts ({\"type\": \"text\", \"text\": ...}) are supported");
                b.append(part.get("text").asText());
            }
            return b.toString();
        }
        throw ApiException.invalid(where, where + " must be a string or an array of text parts");
    }

    private static List<String> stops(JsonNode s) {
        if (s == null || s.isNull()) return List.of();
        if (s.isTextual()) return List.of(s.asText());
        if (s.isArray() && s.size() <= 4) {
            List<String> out = new ArrayList<>();
            for (JsonNode x : s) {
                if (!x.isTextual()) throw ApiException.invalid("stop", "'stop' must be a string or an array of up to 4 strings");
                out.add(x.asText());
            }
            return out;
        }
        throw ApiException.invalid("stop", "'stop' must be a string or an array of up to 4 strings");
    }

    private static void refuse(JsonNode body, String key, Object allowed) {
        JsonNode v = body.get(key);
        if (v == null || v.isNull()) return;
        if (allowed instanceof Boolean b && v.isBoolean() && v.asBoolean() != b) return;
        throw ApiException.invalid(key, key + " is not supported by this server; leave it out");
    }

    private static void refuseAbove(JsonNode body, String key, int max) {
        if (body.hasNonNull(key) && integer(body, key, 1, 1, Integer.MAX_VALUE) > max)
            throw ApiException.invalid(key, key + " > " + max + " is not supported by this server; send separate requests");
    }

    private static boolean allInts(JsonNode a) {
        for (JsonNode x : a) if (!x.canConvertToInt() || !x.isIntegralNumber()) return false;
        return true;
    }

    private static boolean bool(JsonNode body, String key) {
        JsonNode v = body.get(key);
        if (!v.isBoolean()) throw ApiException.invalid(key, "'" + key + "' must be a boolean, got " + v);
        return v.asBoolean();
    }

    private static double number(JsonNode body, String key, double dflt, double lo, boolean loIncl, double hi) {
        JsonNode v = body.get(key);
        if (v == null || v.isNull()) return dflt;
        if (!v.isNumber()) throw ApiException.invalid(key, "'" + key + "' must be a number, got " + v);
        double d = v.asDouble();
        if (!(loIncl ? d >= lo : d > lo) || !(d <= hi))
            throw ApiException.invalid(key, "'" + key + "' must be in " + (loIncl ? "[" : "(") + lo + ", " + hi + "], got " + v);
        return d;
    }

    private static int integer(JsonNode body, String key, int dflt, int lo, int hi) {
        JsonNode v = body.get(key);
        if (v == null || v.isNull()) return dflt;
        if (!v.isIntegralNumber() || !v.canConvertToInt()) throw ApiException.invalid(key, "'" + key + "' must be an integer, got " + v);
        int i = v.asInt();
        if (i < lo || i > hi) throw ApiException.invalid(key, "'" + key + "' must be >= " + lo + ", got " + i);
        return i;
    }

    private static long longValue(JsonNode body, String key) {
        JsonNode v = body.get(key);
        if (!v.isIntegralNumber() || !v.canConvertToLong()) throw ApiException.invalid(key, "'" + key + "' must be an integer, got " + v);
        return v.asLong();
    }
}
