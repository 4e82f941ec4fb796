package org.peft4j.core;

/// The one root of peft4j's exceptions. Messages say what failed, the offending value, and what to do.
public class Peft4jException extends RuntimeException {
    public Peft4jException(String message) { super(message); }
    public Peft4jException(String message, Throwable cause) { super(message, cause); }

    /// A file that does not follow its format: truncated, malformed header, bad offsets.
    public static final class FormatException extends Peft4jException {
        public FormatException(String message) { super(message); }
        public FormatException(String message, Throwable cause) { super(message, cause); }
    }

    /// A configuration value (config.json, YAML, flag) that is missing, mistyped or out of range.
    public static final class ConfigException extends Peft4jException {
        public ConfigException(String message) { super(message); }
        public ConfigException(String message, Throwable cause) { super(message, cause); }
    }

    /// A model, architecture, dtype or feature that peft4j does not (yet) support.
    public static final class UnsupportedModelException extends Peft4jException {
        public UnsupportedModelException(String message) { super(message); }
    }
}
