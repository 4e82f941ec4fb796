package org.peft4j.train.data;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import org.peft4j.core.Peft4jException.FormatException;
import org.peft4j.formats.json.PyJson;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

/// Rows of a dataset file to [Conversation]s (alpaca, sharegpt, openai) or pre-training texts.
/// Reference: LLaMA-Factory `data/converter.py`. Where LLaMA-Factory logs "Skipping this abnormal example" and drops
/// the row, we fail with a [FormatException] naming the file, row, line and field, so broken data is fixed, not lost.
final class Converters {
    private Converters() {}

    private static final ObjectMapper JSON = new ObjectMapper();

    /// A parsed row: 0-based index in the file, 1-based line where it starts (0 when unknown), its JSON object.
    record Row(Path file, int index, int line, JsonNode node) {
        String where() {
            return file + " row " + index + (line > 0 ? " (line " + line + ")" : "");
        }

        FormatException error(String field, String problem) {
            return new FormatException(where() + ": field '" + field + "' " + problem);
        }
    }

    static Conversation convert(DatasetSpec spec, Row row) {
        return switch (spec.formatting()) {
            case ALPACA -> alpaca(spec.columns(), row);
            case SHAREGPT -> sharegpt(spec, row, false);
            case OPENAI -> sharegpt(spec, row, true);
        };
    }

    /// A ranking row (`ranking: true`, `chosen`/`rejected` columns) as two conversations that share the prompt and
    /// end with the chosen and the rejected answer. Alpaca: the two columns are strings (the response); sharegpt: the
    /// messages column holds the prompt turns (ending with a user turn) and each of the two columns one assistant
    /// message. Reference: LLaMA-Factory `converter.py` (`_response = [chosen, rejected]` when `dataset_attr.ranking`).
    static Conversation[] pair(DatasetSpec spec, Row row) {
        var c = spec.columns();
        if (c.chosen() == null || c.rejected() == null)
            throw row.error(c.chosen() == null ? "chosen" : "rejected", "has no column in dataset_info.json; a ranking dataset needs both chosen and rejected");
        Conversation[] out = new Conversation[2];
        String[] cols = {c.chosen(), c.rejected()};
        for (int i = 0; i < 2; i++) {
            var node = row.node().deepCopy();
            com.fasterxml.jackson.databind.node.ObjectNode o = (com.fasterxml.jackson.databind.node.ObjectNode) node;
            JsonNode answer = row.node().get(cols[i]);
            if (answer == null || answer.isNull()) throw row.error(cols[i], "is missing");
            Row r = new Row(row.file(), row.index(), row.line(), o);
            if (spec.formatting() == DatasetSpec.Formatting.ALPACA) {
                if (!answer.isTextual()) throw row.error(cols[i], "must be a string, got " + type(answer));
                String key = "\u0000response";
                o.put(key, answer.textValue());
                out[i] = alpaca(new DatasetSpec.Columns(c.prompt(), c.query(), key, c.history(), c.messages(), c.system(), c.tools(),
                        null, null, null, null, null, null), r);
            } else {
                if (!answer.isObject()) throw row.error(cols[i], "must be one message object, got " + type(answer));
                JsonNode list = row.node().get(c.messages());
                if (list == null || !list.isArray()) throw row.error(String.valueOf(c.messages()), "must be a list of prompt messages");
                var messages = ((com.fasterxml.jackson.databind.node.ArrayNode) list).deepCopy();
                messages.add(answer);
                o.set(c.messages(), messages);
                out[i] = sharegpt(spec, r, spec.formatting() == DatasetSpec.Formatting.OPENAI);
            }
        }
        return out;
    }

    /// `AlpacaDatasetConverter`: history pairs, then "instruction\ninput" (empty parts left out), then output.
    static Conversation alpaca(DatasetSpec.Columns c, Row row) {
        List<Message> messages = new ArrayList<>();
        if (c.history() != null) {
            JsonNode h = row.node().get(c.history());
            if (h != null && !h.isNull()) {
                if (!h.isArray()) throw row.error(c.history(), "must be a list of [prompt, response] pairs, got " + type(h));
                for (int i = 0; i < h.size(); i++) {
                    JsonNode pair = h.get(i);
                    String f = c.history() + "[" + i + "]";
                    if (!pair.isArray() || pair.size() != 2 || !pair.get(0).isTextual() || !pair.get(1).isTextual())
                        throw row.error(f, "must be a pair of strings [prompt, response], got " + pair);
                    messages.add(Message.user(pair.get(0).textValue()));
                    messages.add(Message.assistant(pair.get(1).textValue()));
                }
            }
        }
        messages.add(Message.user(alpacaPrompt(c, row)));
        if (c.response() == null) throw row.error("response", "has no column in dataset_info.json; sft needs one");
        messages.add(Message.assistant(requiredString(row, c.response())));
        return new Conversation(optionalString(row, c.system()), tools(row, c.tools()), messages);
    }

    /// The user prompt of an alpaca row, also the text of a pre-training row: prompt and query joined by "\n".
    static String alpacaPrompt(DatasetSpec.Columns c, Row row) {
        if (c.prompt() == null) throw row.error("prompt", "has no column in dataset_info.json");
        String prompt = requiredString(row, c.prompt());
        String query = optionalString(row, c.query());
        if (prompt.isEmpty()) return query;
        return query.isEmpty() ? prompt : prompt + "\n" + query;
    }

    /// `SharegptDatasetConverter`, and with `openai` `OpenAIDatasetConverter` (tool_calls become a FUNCTION message,
    /// consecutive tool results one OBSERVATION joined by "\n</tool_response>\n<tool_response>\n").
    static Conversation sharegpt(DatasetSpec spec, Row row, boolean openai) {
        DatasetSpec.Columns c = spec.columns();
        DatasetSpec.Tags t = spec.tags();
        if (c.messages() == null) throw row.error("messages", "has no column in dataset_info.json");
        JsonNode list = row.node().get(c.messages());
        if (list == null || list.isNull()) throw row.error(c.messages(), "is missing");
        if (!list.isArray()) throw row.error(c.messages(), "must be a list of messages, got " + type(list));
        Map<String, Role> tagRoles = new HashMap<>();
        if (t.userTag() != null) tagRoles.put(t.userTag(), Role.USER);
        if (t.assistantTag() != null) tagRoles.put(t.assistantTag(), Role.ASSISTANT);
        if (t.observationTag() != null) tagRoles.put(t.observationTag(), Role.OBSERVATION);
        if (t.functionTag() != null) tagRoles.put(t.functionTag(), Role.FUNCTION);

        int start = 0;
        String system = optionalString(row, c.system());
        if (t.systemTag() != null && !list.isEmpty() && t.systemTag().equals(list.get(0).path(t.roleTag()).asText(null))) {
            system = messageContent(row, c.messages() + "[0]", list.get(0), t);
            start = 1;
        }
        List<Message> messages = new ArrayList<>();
        List<String> observations = new ArrayList<>();
        for (int i = start; i < list.size(); i++) {
            String f = c.messages() + "[" + i + "]";
            JsonNode m = list.get(i);
            if (!m.isObject()) throw row.error(f, "must be an object with '" + t.roleTag() + "' and '" + t.contentTag() + "', got " + type(m));
            JsonNode tag = m.get(t.roleTag());
            if (tag == null || !tag.isTextual()) throw row.error(f + "." + t.roleTag(), tag == null ? "is missing" : "must be a string, got " + type(tag));
            Role role = tagRoles.get(tag.textValue());
            if (role == null) throw row.error(f + "." + t.roleTag(), "is '" + tag.textValue() + "', which is none of " + tagRoles.keySet());
            JsonNode calls = m.get("tool_calls");
            boolean hasCalls = openai && (role == Role.ASSISTANT || role == Role.FUNCTION) && calls != null && calls.isArray() && !calls.isEmpty();
            String content;
            if (hasCalls) {
                var functions = JSON.createArrayNode();
                for (JsonNode call : calls) functions.add(call.path("function"));
                content = PyJson.dumps(functions, false);
                role = Role.FUNCTION;
            } else {
                content = messageContent(row, f, m, t);
            }
            if (openai) {
                if (role == Role.OBSERVATION) { observations.add(content); continue; }
                if (!observations.isEmpty()) {
                    messages.add(new Message(Role.OBSERVATION, String.join("\n</tool_response>\n<tool_response>\n", observations)));
                    observations.clear();
                }
            }
            int pos = messages.size();
            if (pos % 2 == 0 ? !role.opensTurn() : !role.answersTurn())
                throw row.error(openai ? f : f + "." + t.roleTag(), "is '" + tag.textValue() + "' at turn position " + pos + "; expected "
                        + (pos % 2 == 0 ? "'" + t.userTag() + "' or '" + t.observationTag() + "'" : "'" + t.assistantTag() + "' or '" + t.functionTag() + "'")
                        + " (user/observation and assistant/function must alternate)");
            if (role == Role.FUNCTION) checkFunctionCall(row, f, content);
            messages.add(new Message(role, content));
        }
        if (messages.isEmpty() || messages.size() % 2 != 0)
            throw row.error(c.messages(), "has " + messages.size() + " turns after the system prompt; a supervised example needs an "
                    + "even, non-zero number ending with '" + t.assistantTag() + "' or '" + t.functionTag() + "'");
        return new Conversation(system, tools(row, c.tools()), messages);
    }

    private static String messageContent(Row row, String field, JsonNode m, DatasetSpec.Tags t) {
        JsonNode v = m.get(t.contentTag());
        if (v == null || v.isNull()) throw row.error(field + "." + t.contentTag(), "is missing");
        if (!v.isTextual()) throw row.error(field + "." + t.contentTag(), "must be a string, got " + type(v));
        return v.textValue();
    }

    /// A function-call message must be JSON `{"name", "arguments"}` or a list of them (`FunctionFormatter`).
    private static void checkFunctionCall(Row row, String field, String content) {
        if (content.contains("<tool_call>") || content.contains("<think>")) return; // parsed with tool-call/thought words
        JsonNode calls;
        try {
            calls = JSON.readTree(content);
        } catch (JsonProcessingException e) {
            throw row.error(field, "is a function call but not JSON: " + e.getOriginalMessage());
        }
        for (JsonNode call : calls.isArray() ? calls : List.of(calls))
            if (!call.isObject() || !call.has("name") || !call.has("arguments"))
                throw row.error(field, "is a function call without \"name\" and \"arguments\": " + call);
    }

    /// The tools column: "" when absent, else a JSON list of tool descriptions kept as its JSON string.
    private static String tools(Row row, String column) {
        if (column == null) return "";
        JsonNode v = row.node().get(column);
        if (v == null || v.isNull()) return "";
        String text = v.isTextual() ? v.textValue() : v.toString();
        if (text.isEmpty()) return "";
        JsonNode parsed;
        try {
            parsed = JSON.readTree(text);
        } catch (JsonProcessingException e) {
            throw row.error(column, "is not JSON: " + e.getOriginalMessage());
        }
        if (parsed == null || !parsed.isArray()) throw row.error(column, "must be a JSON list of tool descriptions, got " + type(parsed));
        for (JsonNode tool : parsed) {
            JsonNode fn = "function".equals(tool.path("type").asText()) ? tool.path("function") : tool;
            if (!fn.path("name").isTextual()) throw row.error(column, "has a tool without a \"name\": " + tool);
        }
        return text;
    }

    static String requiredString(Row row, String column) {
        JsonNode v = row.node().get(column);
        if (v == null || v.isNull()) throw row.error(column, "is missing");
        if (!v.isTextual()) throw row.error(column, "must be a string, got " + type(v));
        return v.textValue();
    }

    static String optionalString(Row row, String column) {
        if (column == null) return "";
        JsonNode v = row.node().get(column);
        if (v == null || v.isNull()) return "";
        if (!v.isTextual()) throw row.error(column, "must be a string, got " + type(v));
        return v.textValue();
    }

    private static String type(JsonNode n) {
        return n == null ? "nothing" : n.getNodeType().toString().toLowerCase(java.util.Locale.ROOT);
    }
}
