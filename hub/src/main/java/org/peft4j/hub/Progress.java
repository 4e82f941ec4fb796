package org.peft4j.hub;

/// Receives the progress of one file download; the CLI draws the bar. Called from the downloading thread.
@FunctionalInterface
public interface Progress {
    /// Nothing is drawn.
    Progress NONE = (done, total) -> { };

    /// `done` bytes of this file are on disk out of `total` (-1 when the server did not say).
    /// Starts at the resumed size, not 0, when a partial download is continued.
    void update(long done, long total);
}
