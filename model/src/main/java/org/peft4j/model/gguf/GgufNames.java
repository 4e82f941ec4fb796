package org.peft4j.model.gguf;

import org.peft4j.model.LlamaConfig;
import org.peft4j.model.llama.LayerTensor;
import org.peft4j.model.llama.LlamaWeights;
import org.peft4j.model.llama.Projection;

/// The Hugging Face ↔ llama.cpp tensor-name table of a Llama/Qwen2 decoder (convert_hf_to_gguf's tensor map,
/// specs.md §4.3), and the Q/K row permutation between HF's rotate-half and llama.cpp's adjacent-pair RoPE.
public final class GgufNames {
    private GgufNames() {}

    public static final String TOKEN_EMBD = "token_embd.weight", OUTPUT_NORM = "output_norm.weight", OUTPUT = "output.weight";

    /// The GGUF name of HF tensor `hf` (`model.layers.3.self_attn.q_proj.weight` → `blk.3.attn_q.weight`).
    public static String gguf(String hf) {
        switch (hf) {
            case LlamaWeights.EMBED_TOKENS -> { return TOKEN_EMBD; }
            case LlamaWeights.NORM -> { return OUTPUT_NORM; }
            case LlamaWeights.LM_HEAD -> { return OUTPUT; }
            default -> { }
        }
        String prefix = "model.layers.";
        if (!hf.startsWith(prefix)) throw new IllegalArgumentException("'" + hf + "' is not a Llama decoder tensor");
        int dot = hf.indexOf('.', prefix.length());
        String layer = hf.substring(prefix.length(), dot), rest = hf.substring(dot + 1);
        if (rest.equals(LayerTensor.INPUT_LAYERNORM.suffix)) return "blk." + layer + ".attn_norm.weight";
        if (rest.equals(LayerTensor.POST_ATTENTION_LAYERNORM.suffix)) return "blk." + layer + ".ffn_norm.weight";
        for (Projection p : Projection.values()) {
            if (rest.equals(p.weight.suffix)) return "blk." + layer + "." + p.gguf + ".weight";
            if (rest.equals(p.bias.suffix)) return "blk." + layer + "." + p.gguf + ".bias";
        }
        throw new IllegalArgumentException("'" + hf + "' is not a Llama decoder tensor");
    }

    /// Heads whose rows the llama-arch converter permutes for HF tensor `hf` (q: attention heads, k: key/value
    /// heads), or 0 when it is not permuted (everything else, and every tensor of Qwen2, which llama.cpp runs with
    /// NEOX rope = HF's rotate-half).
    public static int permutedHeads(String hf, LlamaConfig c, boolean llamaArch) {
        if (!llamaArch) return 0;
        if (hf.endsWith(".self_attn.q_proj.weight") || hf.endsWith(".self_attn.q_proj.bias")) return c.numAttentionHeads();
        if (hf.endsWith(".self_attn.k_proj.weight") || hf.endsWith(".self_attn.k_proj.bias")) return c.numKeyValueHeads();
        return 0;
    }

    /// convert_hf_to_gguf's `permute` on rows of `rowBytes` bytes: view the rows as [heads, 2, hd/2], swap the last
    /// two axes. GGUF row h·hd + 2j + p = HF row h·hd + p·hd/2 + j. `toGguf` false applies the inverse.
    public static byte[] permuteRows(byte[] src, int heads, int rowBytes, boolean toGguf) {
        int[] hf = hfRowOf(src.length / rowBytes, src.length % rowBytes == 0, heads);
        byte[] out = new byte[src.length];
        for (int g = 0; g < hf.length; g++)
            if (toGguf) System.arraycopy(src, hf[g] * rowBytes, out, g * rowBytes, rowBytes);
            else System.arraycopy(src, g * rowBytes, out, hf[g] * rowBytes, rowBytes);
        return out;
    }

    /// The same permutation on float rows of `cols` floats.
    public static float[] permuteRows(float[] src, int heads, int cols, boolean toGguf) {
        int[] hf = hfRowOf(src.length / cols, src.length % cols == 0, heads);
        float[] out = new float[src.length];
        for (int g = 0; g < hf.length; g++)
            if (toGguf) System.arraycopy(src, hf[g] * cols, out, g * cols, cols);
            else System.arraycopy(src, g * cols, out, hf[g] * cols, cols);
        return out;
    }

    /// For each GGUF row g = h·hd + 2j + p, its HF row h·hd + p·hd/2 + j.
    private static int[] hfRowOf(int rows, boolean whole, int heads) {
        if (!whole || rows % heads != 0 || (rows / heads) % 2 != 0)
            throw new IllegalArgumentException(rows + " rows do not split into " + heads + " heads of an even head_dim");
        int hd = rows / heads;
        int[] hf = new int[rows];
        for (int h = 0; h < heads; h++)
            for (int j = 0; j < hd / 2; j++)
                for (int p = 0; p < 2; p++) hf[h * hd + 2 * j + p] = h * hd + p * hd / 2 + j;
        return hf;
    }
}
