package org.peft4j.train.data;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

/// Pre-training (`stage: pt`) sequences: each text + EOS, concatenated and cut into blocks of `cutoffLen` (the tail
/// shorter than a block is dropped), labels = inputs. Reference: LLaMA-Factory `data/processor/pretrain.py`
/// (`PretrainDatasetProcessor`); packing is on by default for pt (`hparams/parser.py`).
public final class Pretraining {
    private Pretraining() {}

    /// The EOS LLaMA-Factory appends to pre-training texts: `<|end_of_text|>` with template llama3, else the template's
    /// (possibly replaced) EOS, or the tokenizer's when no template is set.
    public static int eosId(Template template, TextEncoder encoder) {
        if (template == null) return encoder.eosId();
        if (template.name().equals("llama3")) {
            int id = encoder.tokenId("<|end_of_text|>");
            if (id >= 0) return id;
        }
        return template.eosId(encoder);
    }

    /// @param eosId   from [#eosId(Template, TextEncoder)]
    /// @param addBos  the tokenizer adds BOS (`add_bos_token`, Llama: yes, Qwen: no): with packing the first token of
    ///                every block is overwritten by BOS, without packing each text is prefixed by it
    /// @param packing false: one example per text, truncated to `cutoffLen`
    public static List<TokenizedExample> encode(List<String> texts, TextEncoder encoder, int eosId, int cutoffLen,
                                                boolean packing, boolean addBos) {
        List<TokenizedExample> out = new ArrayList<>();
        if (!packing) {
            for (String text : texts) {
                IntArray ids = new IntArray();
                if (addBos) ids.add(encoder.bosId());
                ids.addAll(encoder.encode(text));
                ids.add(eosId);
                int[] a = ids.toArray();
                if (a.length > cutoffLen) a = Arrays.copyOf(a, cutoffLen);
                out.add(new TokenizedExample(a, a.clone()));
            }
            return out;
        }
        IntArray all = new IntArray();
        for (String text : texts) {
            all.addAll(encoder.encode(text));
            all.add(eosId);
        }
        int[] ids = all.toArray();
        int blocks = ids.length / cutoffLen;
        for (int b = 0; b < blocks; b++) {
            int[] block = Arrays.copyOfRange(ids, b * cutoffLen, (b + 1) * cutoffLen);
            if (addBos) block[0] = encoder.bosId();
            out.add(new TokenizedExample(block, block.clone()));
        }
        return out;
    }
}
