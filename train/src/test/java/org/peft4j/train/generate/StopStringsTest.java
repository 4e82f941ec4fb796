package org.peft4j.train.generate;

import org.junit.jupiter.api.Test;

import java.util.List;
import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.*;

/// Stop strings against the definition computed in one go on the whole text: the output is the text before the
/// earliest occurrence of any stop string, whatever the pieces; nothing is released that could still be a stop
/// string's beginning, and a stop string is never released.
class StopStringsTest {
    static String cutAtFirstStop(String text, List<String> stops) {
        int cut = text.length();
        for (String s : stops) {
            int i = s.isEmpty() ? -1 : text.indexOf(s);
            if (i >= 0) cut = Math.min(cut, i);
        }
        return text.substring(0, cut);
    }

    @Test
    void anySplitGivesTheTextBeforeTheFirstStop() {
        SplittableRandom rnd = new SplittableRandom(5);
        String alphabet = "ab\nU:se r.";
        List<List<String>> stopSets = List.of(List.of("\nUser:"), List.of("ab", "ba"), List.of("."), List.of("aaa", "\n\n", ""),
                List.of(), List.of("se r", "e"));
        for (int trial = 0; trial < 3000; trial++) {
            StringBuilder sb = new StringBuilder();
            int len = rnd.nextInt(40);
            for (int i = 0; i < len; i++) sb.append(alphabet.charAt(rnd.nextInt(alphabet.length())));
            if (trial % 5 == 0) sb.insert(rnd.nextInt(sb.length() + 1), "\nUser:");
            String text = sb.toString();
            List<String> stops = stopSets.get(trial % stopSets.size());
            String expected = cutAtFirstStop(text, stops);

            StopStrings ss = new StopStrings(stops);
            StringBuilder out = new StringBuilder();
            for (int i = 0; i < text.length(); ) {
                int j = Math.min(text.length(), i + 1 + rnd.nextInt(4));
                out.append(ss.push(text.substring(i, j)));
                assertTrue(expected.startsWith(out.toString()), "released beyond the cut: " + out + " of " + text + " " + stops);
                i = j;
            }
            out.append(ss.flush());
            assertEquals(expected, out.toString(), text + " " + stops);
            assertEquals(expected, ss.text());
            assertEquals(expected.length() < text.length(), ss.stopped());
        }
    }

    @Test
    void holdsBackAPossibleStopAndReleasesItWhenItIsNot() {
        StopStrings ss = new StopStrings(List.of("\nUser:"));
        assertEquals("Hello", ss.push("Hello\nUs"));
        assertEquals("", ss.push("e"));
        assertEquals("\nUse it", ss.push(" it"));
        assertEquals("", ss.push("\nUser: more"));
        assertTrue(ss.stopped());
        assertEquals("\nUser:", ss.matched());
        assertEquals("", ss.push("ignored"));
        assertEquals("Hello\nUse it", ss.text());
    }

    @Test
    void theEarliestStopWins() {
        StopStrings ss = new StopStrings(List.of("world", "lo w"));
        assertEquals("Hel", ss.push("Hello world"));
        assertEquals("lo w", ss.matched());
    }
}
