package org.peft4j.serve;

import org.peft4j.core.Peft4jException;

/// A request the server refuses, with the HTTP status and OpenAI's error fields
/// (`{"error": {"message", "type", "param", "code"}}`). Thrown at the HTTP boundary and by the engine and the adapter
/// registry when a request cannot be served; the message says what was wrong and what to do.
public final class ApiException extends Peft4jException {
    public final int status;
    public final String type, param, code;

    public ApiException(int status, String type, String param, String code, String message) {
        super(message);
        this.status = status; this.type = type; this.param = param; this.code = code;
    }

    /// 400 invalid_request_error about `param` (or null).
    public static ApiException invalid(String param, String message) {
        return new ApiException(400, "invalid_request_error", param, null, message);
    }

    /// 404 model_not_found.
    public static ApiException unknownModel(String name, Iterable<String> known) {
        return new ApiException(404, "invalid_request_error", "model", "model_not_found",
                "The model '" + name + "' does not exist; this server serves: " + String.join(", ", known));
    }

    /// 429: the queue is full; the client should retry later.
    public static ApiException busy(String message) {
        return new ApiException(429, "rate_limit_error", null, "queue_full", message);
    }

    /// 503: the server cannot take requests (shutting down, engine failed).
    public static ApiException unavailable(String message) {
        return new ApiException(503, "service_unavailable", null, "unavailable", message);
    }
}
