package org.peft4j.train.data;

import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;
import org.peft4j.testkit.Shared;

import java.lang.reflect.Method;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

import static org.junit.jupiter.api.Assertions.*;

/// The pipeline with the real tokenizer of ../shared/models/tinystories-656k (SentencePiece-style BPE, BOS
/// `<|start_story|>`=1, EOS `<|end_story|>`=2). The tokenizer module is reached by reflection so this package
/// compiles before `peft4j-tokenizer` is installed; without it the test skips loudly.
class RealTokenizerTest {
    /// An adapter from `org.peft4j.tokenizer.Tokenizer` to [TextEncoder], as the main job writes it.
    record Adapter(Object tokenizer, Method encode, Method decode, Method bos, Method eos, Method tokenToId) implements TextEncoder {
        static Adapter load(Path dir) throws ReflectiveOperationException {
            Class<?> t = Class.forName("org.peft4j.tokenizer.Tokenizer");
            Object tok = t.getMethod("load", Path.class).invoke(null, dir);
            return new Adapter(tok, t.getMethod("encode", String.class, boolean.class), t.getMethod("decode", int[].class, boolean.class),
                    t.getMethod("bosId"), t.getMethod("eosId"), t.getMethod("tokenToId", String.class));
        }
        private Object call(Method m, Object... args) {
            try { return m.invoke(tokenizer, args); } catch (ReflectiveOperationException e) { throw new AssertionError(e); }
        }
        @Override public int[] encode(String text) { return (int[]) call(encode, text, false); }
        @Override public int bosId() { return (int) call(bos); }
        @Override public int eosId() { return (int) call(eos); }
        @Override public int tokenId(String token) { return (int) call(tokenToId, token); }
        String decode(int[] ids) { return (String) call(decode, ids, false); }
    }

    static Adapter tokenizer() {
        Path dir = Shared.require("models/tinystories-656k");
        try {
            return Adapter.load(dir);
        } catch (ClassNotFoundException | NoSuchMethodException e) {
            String msg = "SKIPPED: org.peft4j.tokenizer.Tokenizer.load is not on the test classpath (" + e.getMessage()
                    + "); install the tokenizer module (mvn -pl tokenizer install) and rerun";
            System.err.println(msg);
            Assumptions.abort(msg);
            return null;
        } catch (ReflectiveOperationException e) {
            throw new AssertionError(e);
        }
    }

    @Test void supervisedMasksWithTheRealTokenizer() {
        Adapter tok = tokenizer();
        assertEquals(1, tok.bosId());
        assertEquals(2, tok.eosId());
        Conversation c = Conversation.of("Tell stories.", "Tell me about a cat.", "Once upon a time there was a cat.",
                "And then?", "The cat slept.");
        TokenizedExample ex = Supervised.encode(Template.named("llama2"), tok, c, new Supervised.Options(512, false, false));
        // llama2: each turn's prompt opens with BOS; trained ids are exactly encode(response) + EOS, turn by turn
        List<Integer> trained = new ArrayList<>(), expected = new ArrayList<>();
        for (int i = 0; i < ex.length(); i++) if (ex.labels()[i] != TokenizedExample.IGNORE_INDEX) trained.add(ex.labels()[i]);
        for (String r : List.of("Once upon a time there was a cat.", "The cat slept.")) {
            for (int id : tok.encode(r)) expected.add(id);
            expected.add(tok.eosId());
        }
        assertEquals(expected, trained);
        assertEquals(1, ex.inputIds()[0]);
        assertEquals(2, Arrays.stream(ex.inputIds()).filter(id -> id == 1).count());
        String text = tok.decode(ex.inputIds());
        assertTrue(text.contains("Tell me about a cat") && text.contains("The cat slept"), text);
    }

    @Test void pretrainingBlocksOnWikiDemo() {
        Adapter tok = tokenizer();
        DatasetInfo info = DatasetInfo.load(Shared.require("data/llamafactory/dataset_info.json").getParent());
        List<String> texts = DatasetLoader.loadTexts(info, List.of("wiki_demo"), null, 0);
        int total = 0;
        for (String t : texts) total += tok.encode(t).length + 1;
        List<TokenizedExample> blocks = Pretraining.encode(texts, tok, tok.eosId(), 256, true, true);
        assertEquals(total / 256, blocks.size());
        for (TokenizedExample b : blocks) assertEquals(tok.bosId(), b.inputIds()[0]);
    }
}
