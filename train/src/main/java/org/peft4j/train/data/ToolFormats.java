package org.peft4j.train.data;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import org.peft4j.core.Peft4jException.ConfigException;
import org.peft4j.core.Peft4jException.FormatException;
import org.peft4j.formats.json.PyJson;

import java.io.IOException;
import java.util.ArrayList;
import java.util.List;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/// Tool descriptions (appended to the system prompt) and function-call messages as text, for LLaMA-Factory's
/// `default` and `qwen` tool formats. Reference: LLaMA-Factory `data/tool_utils.py` (`DefaultToolUtils`,
/// `QwenToolUtils`) and `data/formatter.py` (`FunctionFormatter`, `ToolFormatter`).
final class ToolFormats {
    private ToolFormats() {}

    private static final ObjectMapper JSON = new ObjectMapper();

    // thought_words and tool_call_words, register_template's defaults
    private static final Pattern THOUGHT = Pattern.compile(Pattern.quote("<think>\n") + "(.*?)" + Pattern.quote("\n</think>\n\n"), Pattern.DOTALL);
    private static final Pattern TOOL_CALL = Pattern.compile(Pattern.quote("<tool_call>") + "(.*?)" + Pattern.quote("</tool_call>"), Pattern.DOTALL);

    private record Call(String name, JsonNode arguments) {}

    /// `ToolFormatter.apply`: the text for a JSON list of tools; "" for an empty list.
    static String tools(String format, String toolsJson) {
        JsonNode tools = parse(toolsJson, "tool description");
        if (tools.isEmpty()) return "";
        return switch (format) {
            case "default" -> defaultTools(tools);
            case "qwen" -> {
                StringBuilder text = new StringBuilder();
                for (JsonNode tool : tools) {
                    JsonNode wrapped = "function".equals(tool.path("type").asText())
                            ? tool : JSON.createObjectNode().put("type", "function").set("function", tool);
                    text.append('\n').append(PyJson.dumps(wrapped, false));
                }
                yield "\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
                        + "You are provided with function signatures within <tools></tools> XML tags:\n<tools>" + text
                        + "\n</tools>\n\nFor each function call, return a json object with function name and arguments within "
                        + "<tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call>";
            }
            default -> throw unsupported(format);
        };
    }

    /// `FunctionFormatter.apply`: a function-call message (JSON `{name, arguments}` or a list of them, optionally in
    /// `<tool_call>` tags or after a `<think>` block when `matchWords`) as the template's tool-call text.
    static String functionCalls(String format, String content, boolean matchWords) {
        Matcher tc = matchWords ? TOOL_CALL.matcher(content) : null;
        if (tc != null && tc.find()) {
            String thoughtContent = content.replace(tc.group(0), "");
            return thoughtContent + formatCalls(format, calls(tc.group(1)));
        }
        Matcher th = matchWords ? THOUGHT.matcher(content) : null;
        if (th != null && th.find()) return th.group(0) + formatCalls(format, calls(content.replace(th.group(0), "")));
        return formatCalls(format, calls(content));
    }

    private static String formatCalls(String format, List<Call> calls) {
        List<String> parts = new ArrayList<>();
        for (Call c : calls)
            parts.add(switch (format) {
                case "default" -> "Action: " + c.name + "\nAction Input: " + PyJson.dumps(c.arguments, false);
                case "qwen" -> "<tool_call>\n" + PyJson.dumps(JSON.createObjectNode().put("name", c.name).set("arguments", c.arguments), false)
                        + "\n</tool_call>";
                default -> throw unsupported(format);
            });
        return String.join("\n", parts);
    }

    private static List<Call> calls(String json) {
        JsonNode n = parse(json, "function message");
        List<Call> calls = new ArrayList<>();
        for (JsonNode c : n.isArray() ? n : List.of(n)) {
            if (!c.path("name").isTextual() || !c.has("arguments"))
                throw new FormatException("function call without \"name\" and \"arguments\": " + c);
            calls.add(new Call(c.get("name").textValue(), c.get("arguments")));
        }
        return calls;
    }

    /// `DefaultToolUtils.tool_formatter`.
    private static String defaultTools(JsonNode tools) {
        StringBuilder toolText = new StringBuilder();
        List<String> names = new ArrayList<>();
        for (JsonNode tool : tools) {
            if ("function".equals(tool.path("type").asText())) tool = tool.path("function");
            StringBuilder params = new StringBuilder();
            JsonNode parameters = tool.path("parameters");
            List<String> required = new ArrayList<>();
            parameters.path("required").forEach(r -> required.add(r.asText()));
            for (var p : parameters.path("properties").properties()) {
                JsonNode param = p.getValue();
                String req = required.contains(p.getKey()) ? ", required" : "";
                String enumText = "", items = "";
                if (param.path("enum").isArray() && !param.path("enum").isEmpty()) {
                    List<String> values = new ArrayList<>();
                    param.get("enum").forEach(v -> values.add(v.asText()));
                    enumText = ", should be one of [" + String.join(", ", values) + "]";
                }
                if (param.has("items") && !param.get("items").isNull() && !param.get("items").isEmpty())
                    items = ", where each item should be " + param.get("items").path("type").asText("");
                params.append("  - ").append(p.getKey()).append(" (").append(param.path("type").asText("")).append(req).append("): ")
                        .append(param.path("description").asText("")).append(enumText).append(items).append('\n');
            }
            String name = tool.path("name").asText();
            toolText.append("> Tool Name: ").append(name).append("\nTool Description: ").append(tool.path("description").asText(""))
                    .append("\nTool Args:\n").append(params).append('\n');
            names.add(name);
        }
        return "You have access to the following tools:\n" + toolText
                + "Use the following format if using a tool:\n```\nAction: tool name (one of [" + String.join(", ", names) + "])\n"
                + "Action Input: the input to the tool, in a JSON format representing the kwargs "
                + "(e.g. ```{\"input\": \"hello world\", \"num_beams\": 5}```)\n```\n";
    }

    private static JsonNode parse(String json, String what) {
        try {
            return JSON.readTree(json);
        } catch (IOException e) {
            throw new FormatException("invalid JSON in " + what + ": " + json);
        }
    }

    private static ConfigException unsupported(String format) {
        return new ConfigException("tool_format '" + format + "' is not implemented in peft4j (only default and qwen); "
                + "set `tool_format: default` to train tool-calling rows with this template");
    }
}
