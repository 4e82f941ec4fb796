package org.peft4j.model;

import org.peft4j.core.Gemm;
import org.peft4j.core.Peft4jException.ConfigException;
import org.peft4j.formats.safetensors.ShardedSafeTensors;
import org.peft4j.core.DType;
import org.peft4j.model.gguf.GgufModel;
import org.peft4j.model.llama.Decoder;
import org.peft4j.model.llama.LlamaModel;
import org.peft4j.model.llama.Projection;
import org.peft4j.model.quant.QuantizedModel;
import org.peft4j.model.weights.BaseWeight;
import org.peft4j.model.weights.DenseHalf;
import org.peft4j.model.llama.LlamaWeights;
import org.peft4j.model.llama.TensorSource;

import java.lang.foreign.Arena;
import java.nio.file.Files;
import java.nio.file.Path;

/// Loads a Hugging Face model folder: config.json + model.safetensors, or model.safetensors.index.json + shards;
/// or a GGUF file ([GgufModel]).
/// [#loadWeights] converts every tensor to float32 (training, export); [#load] keeps linear weights in their stored
/// dtype (inference). [#loadWeights] closes the mapping when loading ends; [#load] keeps BF16/F16 weights in a
/// mapping of the file (read-only, freed with the model): replace a loaded checkpoint by writing a new file and
/// renaming it over the old one (as peft4j's writers do), never by rewriting it in place.
public final class Models {
    private Models() {}

    /// Config and weights of `dir`, validated against each other.
    public static LlamaWeights loadWeights(Path dir) {
        if (GgufModel.isGguf(dir)) return GgufModel.loadWeights(dir);
        if (!Files.isDirectory(dir))
            throw new ConfigException(dir + " is not a directory; pass a Hugging Face model folder holding config.json and model.safetensors");
        LlamaConfig config = LlamaConfig.read(dir);
        try (ShardedSafeTensors st = ShardedSafeTensors.open(dir)) {
            return LlamaWeights.load(config, TensorSource.of(st::tensors, st::readFloats), dir.toString());
        }
    }

    /// A runnable model whose matrix products go through `gemm` (e.g. `Gemms.get("auto")`), its linear weights kept
    /// in their stored dtype: F32 as float32 arrays, BF16/F16 as 16-bit values converted tile by tile inside each
    /// product (half the memory and memory traffic), a bitsandbytes 4-bit folder in 4 bits (never dequantized whole).
    /// A 16-bit embedding table and lm_head stay 16-bit too (`weights.embedTokens` / `lmHead` then null; the
    /// decoder's [Decoder#embed16] and [Decoder#head]); norms and biases are float32. For training, merging in place
    /// or export, load float32 weights with [#loadWeights].
    public static LlamaModel load(Path dir, Gemm gemm) {
        if (GgufModel.isGguf(dir)) return GgufModel.load(dir, gemm);
        if (QuantizedModel.isQuantized(dir)) return LlamaModel.of(QuantizedModel.load(dir), gemm);
        if (!Files.isDirectory(dir))
            throw new ConfigException(dir + " is not a directory; pass a Hugging Face model folder holding config.json and model.safetensors");
        LlamaConfig c = LlamaConfig.read(dir);
        // the 16-bit weights are used in place, in a mapping that lives as long as they do (nothing copied: a BF16
        // SmolLM2-135M's 270 MB were fresh heap to fault in before the first token); float reads go through the file
        try (ShardedSafeTensors st = ShardedSafeTensors.open(dir, Arena.ofAuto())) {
            TensorSource src = TensorSource.inPlace(st::tensors, st::readFloats, st::bytes);
            // 16-bit linears, embeddings and lm_head stay 16-bit (not widened to float32 as well: SmolLM2's tied BF16
            // table widened was 113 MB more to fault in before the first token, and an untied 16-bit lm_head was
            // held twice)
            java.util.function.Predicate<String> half = name -> {
                var t = st.tensors().get(name);
                return t != null && (isLinear(name) || name.equals(LlamaWeights.EMBED_TOKENS) || name.equals(LlamaWeights.LM_HEAD))
                        && (t.dtype() == DType.BF16 || t.dtype() == DType.F16);
            };
            LlamaWeights w = LlamaWeights.load(c, src, dir.toString(), half);
            BaseWeight[][] lin = new BaseWeight[c.numHiddenLayers()][Projection.values().length];
            for (int l = 0; l < lin.length; l++)
                for (Projection p : Projection.values()) {
                    float[] f = p.weight(w.layers.get(l));
                    lin[l][p.ordinal()] = f != null ? BaseWeight.of(f, p.out(c), p.in(c))
                            : BaseWeight.read(src, p.weightName(l), p.out(c), p.in(c));
                }
            // a 16-bit lm_head (or tied embedding) stays 16-bit for the head's products: half the bytes a decode step
            // reads; a 16-bit embedding table is looked up row by row in its 16 bits (the tied one is that same table)
            String embedName = LlamaWeights.embeddingsName(c, st.tensors().keySet());   // a tied one may be stored as lm_head only
            DenseHalf embed16 = w.embedTokens == null ? (DenseHalf) BaseWeight.read(src, embedName, c.vocabSize(), c.hiddenSize()) : null;
            BaseWeight head = w.lmHead != null ? null
                    : c.tieWordEmbeddings() ? embed16 : BaseWeight.read(src, LlamaWeights.LM_HEAD, c.vocabSize(), c.hiddenSize());
            return new LlamaModel(new Decoder(w, lin, head, embed16, gemm));
        }
    }

    private static boolean isLinear(String name) {
        for (Projection p : Projection.values()) if (name.endsWith("." + p.path() + ".weight")) return true;
        return false;
    }
}
