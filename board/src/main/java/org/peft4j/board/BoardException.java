package org.peft4j.board;

import org.peft4j.core.Peft4jException;

/// A request the board refuses: the HTTP status, the form field it concerns (null for the whole request) and a
/// message that says what is wrong and what to do. The page shows it next to that field.
public final class BoardException extends Peft4jException {
    private final int status;
    private final String field;

    public BoardException(int status, String field, String message) {
        super(message);
        this.status = status;
        this.field = field;
    }

    /// 400 for `field`.
    public static BoardException invalid(String field, String message) { return new BoardException(400, field, message); }

    public int status() { return status; }

    public String field() { return field; }
}
