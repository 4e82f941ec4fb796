package org.peft4j.train.data;

/// The roles of a conversation after conversion, as LLaMA-Factory's `data_utils.Role`.
/// USER and OBSERVATION open a turn (even indices 0, 2, …); ASSISTANT and FUNCTION answer it and are trained.
public enum Role {
    USER, ASSISTANT, SYSTEM, FUNCTION, OBSERVATION;

    boolean opensTurn() { return this == USER || this == OBSERVATION; }

    boolean answersTurn() { return this == ASSISTANT || this == FUNCTION; }
}
