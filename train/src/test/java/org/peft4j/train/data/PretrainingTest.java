package org.peft4j.train.data;

import org.junit.jupiter.api.Test;
import org.peft4j.testkit.Shared;

import java.util.List;

import static org.junit.jupiter.api.Assertions.*;
import static org.peft4j.train.data.FakeEncoder.decode;

/// Pre-training blocks as LLaMA-Factory `data/processor/pretrain.py`: text + eos, concatenated, cut into cutoff_len
/// blocks with the remainder dropped; BOS overwrites each block's first token when the tokenizer adds BOS.
class PretrainingTest {
    static final FakeEncoder ENC = new FakeEncoder();

    @Test void packedBlocks() {
        // "ab$cde$f$" (9 ids) in blocks of 4: "ab$c", "de$f", the lone "$" dropped
        List<TokenizedExample> b = Pretraining.encode(List.of("ab", "cde", "f"), ENC, FakeEncoder.EOS, 4, true, false);
        assertEquals(List.of("ab$c", "de$f"), b.stream().map(e -> decode(e.inputIds())).toList());
        for (TokenizedExample e : b) assertArrayEquals(e.inputIds(), e.labels());
        List<TokenizedExample> bos = Pretraining.encode(List.of("ab", "cde", "f"), ENC, FakeEncoder.EOS, 4, true, true);
        assertEquals(List.of("^b$c", "^e$f"), bos.stream().map(e -> decode(e.inputIds())).toList());
    }

    @Test void unpackedTruncates() {
        List<TokenizedExample> b = Pretraining.encode(List.of("ab", "cdef"), ENC, FakeEncoder.EOS, 4, false, true);
        assertEquals(List.of("^ab$", "^cde"), b.stream().map(e -> decode(e.inputIds())).toList());
    }

    @Test void c4DemoBlockCount() {
        DatasetInfo info = DatasetInfo.load(Shared.require("data/llamafactory/dataset_info.json").getParent());
        List<String> texts = DatasetLoader.loadTexts(info, List.of("c4_demo"), null, 0);
        // python: sum(len(text)) + 300 EOS = 737461 code points over the 300 rows of c4_demo.jsonl
        assertEquals(737461 / 1024, Pretraining.encode(texts, ENC, FakeEncoder.EOS, 1024, true, false).size());
    }
}
