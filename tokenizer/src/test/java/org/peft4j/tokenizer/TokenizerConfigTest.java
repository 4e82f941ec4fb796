package org.peft4j.tokenizer;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

/// tokenizer_config.json forms (token strings or AddedToken objects, chat_template as string or named list), and a
/// hand-made tokenizer.json whose expected ids follow from its merge ranks by hand.
class TokenizerConfigTest {
    @Test
    void tokensAndNamedTemplates(@TempDir Path dir) throws Exception {
        Files.writeString(dir.resolve("tokenizer_config.json"), """
                {"bos_token": {"content": "<s>", "lstrip": false}, "eos_token": "</s>", "add_bos_token": false,
                 "chat_template": [{"name": "tool_use", "template": "T"}, {"name": "default", "template": "D"}]}""");
        TokenizerConfig c = TokenizerConfig.read(dir);
        assertEquals("<s>", c.bosToken());
        assertEquals("</s>", c.eosToken());
        assertEquals(false, c.addBosToken());
        assertNull(c.addEosToken());
        assertNull(c.padToken());
        assertEquals("D", c.chatTemplate());
    }

    @Test
    void jinjaFileAndMissingConfig(@TempDir Path dir) throws Exception {
        assertEquals(TokenizerConfig.EMPTY, TokenizerConfig.read(dir));
        Files.writeString(dir.resolve("chat_template.jinja"), "{{ messages }}");
        assertEquals("{{ messages }}", TokenizerConfig.read(dir).chatTemplate());
    }

    /// Vocab a b c ab bc abc; merges ranked "b c" (0) before "a b" (1), then "a bc" (2): "abc" must become [abc]
    /// via bc, and "ab" (no "b c" pair) becomes [ab]. `add_bos_token: false` does not remove a post-processor BOS.
    @Test
    void mergeRanksOnHandMadeVocab(@TempDir Path dir) throws Exception {
        Files.writeString(dir.resolve("tokenizer.json"), """
                {"added_tokens": [{"id": 6, "content": "<s>", "special": true, "normalized": false}],
                 "normalizer": null, "pre_tokenizer": {"type": "Split", "pattern": {"String": " "}, "behavior": "Removed", "invert": false},
                 "post_processor": {"type": "TemplateProcessing", "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
                   "special_tokens": {"<s>": {"id": "<s>", "ids": [6], "tokens": ["<s>"]}}},
                 "decoder": null,
                 "model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "c": 2, "ab": 3, "bc": 4, "abc": 5},
                           "merges": [["b", "c"], ["a", "b"], ["a", "bc"]]}}""");
        Files.writeString(dir.resolve("tokenizer_config.json"), "{\"bos_token\": \"<s>\", \"eos_token\": \"c\"}");
        Tokenizer tok = Tokenizer.load(dir);
        assertArrayEquals(new int[] {6, 5, 3, 5}, tok.encode("abc ab abc", true));
        assertArrayEquals(new int[] {5, 6, 3}, tok.encode("abc<s>ab", false));
        assertEquals(6, tok.bosId());
        assertEquals(2, tok.eosId());
        assertEquals(7, tok.vocabSize());
        assertTrue(tok.isSpecial(6));
        assertFalse(tok.isSpecial(5));
        assertEquals("abc ab", tok.decode(new int[] {6, 5, 3}, true)); // no decoder: tokens joined by spaces
    }
}
