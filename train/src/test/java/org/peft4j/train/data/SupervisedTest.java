package org.peft4j.train.data;

import org.junit.jupiter.api.Test;
import org.peft4j.core.Peft4jException.ConfigException;

import java.util.Arrays;
import java.util.List;
import java.util.stream.Stream;

import static org.junit.jupiter.api.Assertions.*;
import static org.peft4j.train.data.FakeEncoder.decode;

/// Supervised encoding against LLaMA-Factory `data/processor/supervised.py` (`_encode_data_example`),
/// `processor_utils.py` (`infer_seqlen`, `greedy_knapsack`) and `template.py` (`_convert_elements_to_ids`).
/// The fake encoder maps each character to one id, so expected ids and masks are written as text.
class SupervisedTest {
    static final FakeEncoder ENC = new FakeEncoder();
    static final Supervised.Options PLAIN = new Supervised.Options(10_000, false, false);

    @Test void encodeMultiturnSplitsPromptAndResponseWithBosPerSlot() {
        // llama2: [bos, "[INST] …"] per user message, so every prompt starts with BOS; responses end with EOS
        List<EncodedTurn> turns = Template.named("llama2").encodeMultiturn(ENC, TemplateRenderTest.TWO_TURNS);
        assertEquals(2, turns.size());
        assertEquals("^[INST] <<SYS>>\nSYS\n<</SYS>>\n\nQ1 [/INST]", decode(turns.get(0).prompt()));
        assertEquals("A1$", decode(turns.get(0).response()));
        assertEquals("^[INST] Q2 [/INST]", decode(turns.get(1).prompt()));
        assertEquals("A2$", decode(turns.get(1).response()));
        // a tokenizer without BOS: the {"bos_token"} slot adds nothing
        assertEquals("[INST] Q2 [/INST]", decode(Template.named("llama2").encodeMultiturn(new FakeEncoder(false), TemplateRenderTest.TWO_TURNS).get(1).prompt()));
    }

    @Test void slotsAreTokenizedOneByOne() {
        // default: user ["Human: {{content}}", eos, "\nAssistant:"] is three pieces; an encoder that counts calls sees them
        int[] calls = {0};
        TextEncoder counting = new FakeEncoder() {
            @Override public int[] encode(String text) { calls[0]++; return super.encode(text); }
        };
        Template.named("default").encodeMultiturn(counting, Conversation.of("", "Q", "A"));
        assertEquals(2 + 2, calls[0]); // "Human: Q", "\nAssistant:" + "A", "\n"
    }

    @Test void labelsAreExactlyTheResponsesWithEos() {
        for (String name : SlotTemplate.NAMES) {
            SlotTemplate t = Template.named(name);
            // efficient_eos, token slots and thought handling have tests of their own (efficientEos, TemplateTableTest)
            if (t.efficientEos() || t.thinking().kind() != SlotTemplate.Thinking.Kind.NONE
                    || Stream.of(t.prefix(), t.system(), t.user(), t.assistant()).flatMap(List::stream).anyMatch(x -> x instanceof SlotTemplate.Token)) continue;
            TokenizedExample ex = Supervised.encode(t, ENC, TemplateRenderTest.TWO_TURNS, PLAIN);
            // inputs are the whole rendering; trained positions are the responses A1, A2 and what format_assistant adds
            assertEquals(t.render(TemplateRenderTest.TWO_TURNS, "^", "$"), decode(ex.inputIds()), name);
            String expectedLabels = masked(decode(ex.inputIds()), List.of(assistantText(t, "A1"), assistantText(t, "A2")));
            assertEquals(expectedLabels, decode(ex.labels()), name);
        }
    }

    /// format_assistant's slots around `content`, EOS as '$': e.g. "A1$\n" (default), " A1$" (mistral), "A1<|im_end|>\n" (chatml)
    private static String assistantText(SlotTemplate t, String content) {
        StringBuilder sb = new StringBuilder();
        for (SlotTemplate.Slot s : t.assistant())
            sb.append(switch (s) {
                case SlotTemplate.Text x -> x.text().replace("{{content}}", content);
                case SlotTemplate.Eos x -> "$";
                case SlotTemplate.Bos x -> "^";
                case SlotTemplate.Token x -> x.token();
            });
        return sb.toString();
    }

    /// `text` with every character outside the last occurrences of `trained` pieces replaced by '_'.
    private static String masked(String text, List<String> trained) {
        char[] out = "_".repeat(text.length()).toCharArray();
        int from = 0;
        for (String piece : trained) {
            int at = text.indexOf(piece, from);
            assertTrue(at >= 0, piece + " not in " + text);
            piece.getChars(0, piece.length(), out, at);
            from = at + piece.length();
        }
        return new String(out);
    }

    @Test void trainOnPromptLabelsEverything() {
        TokenizedExample ex = Supervised.encode(Template.named("chatml"), ENC, TemplateRenderTest.TWO_TURNS,
                new Supervised.Options(10_000, true, false));
        assertArrayEquals(ex.inputIds(), ex.labels());
    }

    @Test void inferSeqlenHandCases() {
        // (source, target, cutoff) → (source', target'), worked by hand through infer_seqlen's three branches
        assertArrayEquals(new int[] {5, 3}, Supervised.inferSeqlen(10, 3, 8));  // 2·3 < 8: target kept, source = 8-3
        assertArrayEquals(new int[] {3, 5}, Supervised.inferSeqlen(3, 10, 8));  // 2·3 < 8: source kept, target = 8-3
        assertArrayEquals(new int[] {4, 4}, Supervised.inferSeqlen(10, 10, 8)); // both: ⌊8·10/20⌋ = 4
        assertArrayEquals(new int[] {4, 6}, Supervised.inferSeqlen(7, 13, 10)); // both: ⌊10·13/20⌋ = ⌊6.5⌋ = 6
        assertArrayEquals(new int[] {3, 0}, Supervised.inferSeqlen(5, 2, 3));   // both: ⌊3·2/7⌋ = 0
        assertArrayEquals(new int[] {2, 3}, Supervised.inferSeqlen(2, 3, 100)); // nothing to cut
    }

    static final Conversation AB_CD = Conversation.of("", "aaaa", "bbbbbb", "cc", "ddd");

    @Test void cutoffTruncatesTurnByTurn() {
        // empty template (no EOS, no system): turn 0 = (4, 6), turn 1 = (2, 3)
        Template empty = Template.named("empty");
        // cutoff 8: turn 0 infer(4,6,8) → 2·6 ≥ 8, 2·4 ≥ 8 → target ⌊8·6/10⌋ = 4, source 4; total 8 stops turn 1
        TokenizedExample e8 = Supervised.encode(empty, ENC, AB_CD, new Supervised.Options(8, false, false));
        assertEquals("aaaabbbb", decode(e8.inputIds()));
        assertEquals("____bbbb", decode(e8.labels()));
        // cutoff 13: turn 0 infer(4,6,13) → 12 < 13 keeps (4,6); turn 1 infer(2,3,3) → target ⌊3·3/5⌋ = 1, source 2
        TokenizedExample e13 = Supervised.encode(empty, ENC, AB_CD, new Supervised.Options(13, false, false));
        assertEquals("aaaabbbbbbccd", decode(e13.inputIds()));
        assertEquals("____bbbbbb__d", decode(e13.labels()));
    }

    @Test void maskHistoryTrainsOnlyTheLastTurnAndCutsFromTheFront() {
        // turns reversed: turn 1 infer(2,3,8) keeps (2,3), total 5; turn 0 infer(4,6,3) → target ⌊3·6/10⌋ = 1, source 2;
        // pieces go back to reading order, and only the last response is trained
        TokenizedExample e = Supervised.encode(Template.named("empty"), ENC, AB_CD, new Supervised.Options(8, false, true));
        assertEquals("aabccddd", decode(e.inputIds()));
        assertEquals("_____ddd", decode(e.labels()));
        TokenizedExample full = Supervised.encode(Template.named("empty"), ENC, AB_CD, new Supervised.Options(100, false, true));
        assertEquals("aaaabbbbbbccddd", decode(full.inputIds()));
        assertEquals("____________ddd", decode(full.labels()));
    }

    @Test void efficientEos() {
        // efficient_eos: no EOS in format_assistant; the next prompt's first label is EOS and one EOS closes the example
        SlotTemplate t = new SlotTemplate("eff", List.of(SlotTemplate.text("U:{{content}}")), List.of(SlotTemplate.text("{{content}}")),
                List.of(SlotTemplate.text("{{content}}")), List.of(SlotTemplate.text("{{content}}")), List.of(SlotTemplate.text("U:{{content}}")),
                List.of(), "", List.of(), true, false, false, "default");
        TokenizedExample e = Supervised.encode(t, ENC, Conversation.of("", "Q1", "A1", "Q2", "A2"), PLAIN);
        assertEquals("U:Q1A1U:Q2A2$", decode(e.inputIds()));
        assertEquals("____A1$___A2$", decode(e.labels()));
        assertThrows(ConfigException.class, () -> Supervised.encode(t, ENC, AB_CD, new Supervised.Options(10, true, false)));
    }

    @Test void replacedEosIsTheFirstStopWord() {
        assertEquals(3, Template.named("qwen").eosId(ENC));     // <|im_end|>
        assertEquals(4, Template.named("llama3").eosId(ENC));   // <|eot_id|>
        assertEquals(FakeEncoder.EOS, Template.named("llama2").eosId(ENC));
        var e = assertThrows(ConfigException.class, () -> Template.named("llama3").eosId(new TextEncoder() {
            public int[] encode(String text) { return new int[0]; }
            public int bosId() { return 1; }
            public int eosId() { return 2; }
            public int tokenId(String token) { return -1; }
        }));
        assertTrue(e.getMessage().contains("<|eot_id|>"), e.getMessage());
    }

    static TokenizedExample ofLength(int n, int base) {
        int[] ids = new int[n];
        Arrays.setAll(ids, i -> base + i);
        return new TokenizedExample(ids, ids.clone());
    }

    @Test void packingIsGreedyKnapsack() {
        // lengths [3, 5, 2, 4, 9], cutoff 8: 9 is dropped; sorted [2,3,4,5]: pack 1 takes 5 then 3, pack 2 takes 4 then 2
        List<TokenizedExample> ex = List.of(ofLength(3, 100), ofLength(5, 200), ofLength(2, 300), ofLength(4, 400), ofLength(9, 500));
        List<TokenizedExample> packs = Supervised.pack(ex, 8, false);
        assertEquals(2, packs.size());
        assertArrayEquals(new int[] {200, 201, 202, 203, 204, 100, 101, 102}, packs.get(0).inputIds());
        assertArrayEquals(new int[] {400, 401, 402, 403, 300, 301}, packs.get(1).inputIds());
        assertArrayEquals(packs.get(1).inputIds(), packs.get(1).labels());
        assertThrows(ConfigException.class, () -> Supervised.pack(ex, 8, true));
    }
}
