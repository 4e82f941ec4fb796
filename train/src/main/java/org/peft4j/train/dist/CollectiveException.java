package org.peft4j.train.dist;

import org.peft4j.core.Peft4jException;

/// A collective operation that could not complete: a peer closed its connection (its process or task died), sent
/// nothing for the timeout (it hangs, or the ranks call different operations), or sent something else than expected.
public final class CollectiveException extends Peft4jException {
    public CollectiveException(String message) { super(message); }
    public CollectiveException(String message, Throwable cause) { super(message, cause); }
}
