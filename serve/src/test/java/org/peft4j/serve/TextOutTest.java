package org.peft4j.serve;

import org.junit.jupiter.api.Test;
import org.peft4j.testkit.Shared;
import org.peft4j.tokenizer.Tokenizer;

import java.util.Arrays;
import java.util.List;

import static org.junit.jupiter.api.Assertions.*;

/// A sequence's text: the pieces add up to decode(prompt + ids) minus decode(prompt); a stop string spread over
/// several tokens is held back while it could begin, cut from the text, and ends the sequence.
class TextOutTest {
    static final Tokenizer TOK = Tokenizer.load(Shared.root().resolve("models/tinystories-656k"));

    static String run(int[] prompt, int[] ids, List<String> stops, boolean[] stopped) {
        TextOut t = new TextOut(TOK, prompt, stops);
        StringBuilder b = new StringBuilder();
        for (int id : ids) {
            b.append(t.push(id));
            if (t.stopped()) break;
        }
        b.append(t.flush());
        stopped[0] = t.stopped();
        return b.toString();
    }

    @Test
    void piecesAddUpAndStopsCut() {
        int[] all = TOK.encode("Once there was a cat named Tom. Tom liked to play with his ball.", true);
        int[] prompt = Arrays.copyOf(all, 6), ids = Arrays.copyOfRange(all, 6, all.length);
        String whole = TOK.decode(all, true).substring(TOK.decode(prompt, true).length());
        boolean[] stopped = new boolean[1];
        assertEquals(whole, run(prompt, ids, List.of(), stopped));
        assertFalse(stopped[0]);
        assertEquals(whole.substring(0, whole.indexOf("liked")), run(prompt, ids, List.of("liked", "zzz"), stopped));
        assertTrue(stopped[0]);
        assertEquals(whole.substring(0, whole.indexOf(". Tom")), run(prompt, ids, List.of(". Tom"), stopped));
        assertEquals(whole, run(prompt, ids, List.of("ball!"), stopped), "a stop string that never completes is released at the end");
        assertFalse(stopped[0]);
    }
}
