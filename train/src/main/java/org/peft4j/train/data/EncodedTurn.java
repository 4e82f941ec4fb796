package org.peft4j.train.data;

import java.util.Arrays;

/// One turn of an encoded conversation: the ids of the prompt part (system, user or observation, and the template's
/// text around them) and of the response part (assistant or function call, with its end-of-turn text or EOS).
public record EncodedTurn(int[] prompt, int[] response) {
    @Override public boolean equals(Object o) {
        return o instanceof EncodedTurn t && Arrays.equals(prompt, t.prompt) && Arrays.equals(response, t.response);
    }

    @Override public int hashCode() { return 31 * Arrays.hashCode(prompt) + Arrays.hashCode(response); }

    @Override public String toString() {
        return "EncodedTurn[prompt=" + Arrays.toString(prompt) + ", response=" + Arrays.toString(response) + "]";
    }
}
