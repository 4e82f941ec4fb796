package org.peft4j.template;

import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/// One message of a conversation as Hugging Face templates see it: `{role, content, tool_calls?, name?}`.
///
/// @param role      `system`, `user`, `assistant`, `tool` (or `ipython`), as the template expects
/// @param content   the text; null for an assistant turn that only calls tools
/// @param toolCalls OpenAI-style calls `[{type: "function", function: {name, arguments}}]`, or null
/// @param name      the tool's name on a `tool` message, or null
public record ChatMessage(String role, String content, List<Map<String, Object>> toolCalls, String name) {
    public ChatMessage {
        if (role == null || role.isBlank()) throw new IllegalArgumentException("ChatMessage needs a role, got " + role);
        toolCalls = toolCalls == null ? null : List.copyOf(toolCalls);
    }

    public ChatMessage(String role, String content) { this(role, content, null, null); }

    public static ChatMessage system(String content) { return new ChatMessage("system", content); }

    public static ChatMessage user(String content) { return new ChatMessage("user", content); }

    public static ChatMessage assistant(String content) { return new ChatMessage("assistant", content); }

    /// The dict a template reads. Absent fields are left out, not set to null: templates test `'tool_calls' in
    /// message` and `message.content is defined`.
    public Map<String, Object> toTemplateMap() {
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("role", role);
        if (content != null) m.put("content", content);
        if (toolCalls != null) m.put("tool_calls", toolCalls);
        if (name != null) m.put("name", name);
        return m;
    }
}
