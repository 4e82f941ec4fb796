package org.peft4j.train.data;

import org.junit.jupiter.api.Test;
import org.peft4j.testkit.Shared;
import org.peft4j.tokenizer.Tokenizer;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

import static org.junit.jupiter.api.Assertions.*;

/// The pipeline with the real tokenizer of ../shared/models/tinystories-656k (SentencePiece-style BPE, BOS
/// `<|start_story|>`=1, EOS `<|end_story|>`=2).
class RealTokenizerTest {
    /// The tokenizer seen as a [TextEncoder], as the main job adapts it (org.peft4j.train.TrainData.encoder).
    record Adapter(Tokenizer tokenizer) implements TextEncoder {
        @Override public int[] encode(String text) { return tokenizer.encode(text, false); }
        @Override public int bosId() { return tokenizer.bosId(); }
        @Override public int eosId() { return tokenizer.eosId(); }
        @Override public int tokenId(String token) { return tokenizer.tokenToId(token); }
        String decode(int[] ids) { return tokenizer.decode(ids, false); }
    }

    static Adapter tokenizer() {
        return new Adapter(Tokenizer.load(Shared.require("models/tinystories-656k")));
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
