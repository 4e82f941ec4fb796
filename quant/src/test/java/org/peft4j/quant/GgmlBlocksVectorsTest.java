package org.peft4j.quant;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;
import org.peft4j.testkit.Shared;

import java.io.IOException;
import java.util.HexFormat;

import static org.junit.jupiter.api.Assertions.*;

/// Q8_0 and Q4_0 against specs' vectors (made by reference/gguf_reference.py and matched bit for bit to the compiled
/// C reference of ggml-quants.c): random blocks, rounding-edge blocks and an all-zero block, quantized and dequantized.
class GgmlBlocksVectorsTest {
    @ParameterizedTest @ValueSource(strings = {"q8_0", "q4_0"})
    void quantizeAndDequantizeAreBitExact(String name) throws IOException {
        JsonNode v = new ObjectMapper().readTree(Shared.require("docs/vectors/gguf_vectors.json").toFile()).get(name);
        GgmlBlocks type = GgmlBlocks.byName(name.toUpperCase());
        float[] x = floats(v.get("input_f32_hex"));
        byte[] want = HexFormat.of().parseHex(v.get("encoded_hex").asText());
        assertEquals(v.get("block_bytes").asInt(), type.blockBytes);
        byte[] got = type.quantize(x, 0, x.length);
        for (int b = 0; b < want.length / type.blockBytes; b++) {
            int o = b * type.blockBytes;
            assertArrayEquals(java.util.Arrays.copyOfRange(want, o, o + type.blockBytes), java.util.Arrays.copyOfRange(got, o, o + type.blockBytes),
                    name + " block " + b);
        }
        float[] back = new float[x.length];
        type.dequantize(want, 0, back, 0, x.length / type.blockSize);
        float[] wantBack = floats(v.get("dequant_f32_hex"));
        for (int i = 0; i < x.length; i++)
            assertEquals(Float.floatToRawIntBits(wantBack[i]), Float.floatToRawIntBits(back[i]), name + " value " + i);
    }

    /// Every block type against ggml's compiled C reference (reference/ggml_kquant_vectors.c over ggml-quants.c):
    /// K-quant blocks quantized by ggml's `quantize_row_*_ref`, random-byte blocks and an all-zero block, dequantized
    /// bit for bit; and Q8_0/Q4_0 quantized bit for bit from the same inputs.
    @ParameterizedTest @ValueSource(strings = {"q4_K", "q5_K", "q6_K", "q8_0", "q4_0"})
    void dequantizationMatchesTheCompiledGgmlReference(String name) throws IOException {
        JsonNode root;
        try (var in = GgmlBlocksVectorsTest.class.getResourceAsStream("/ggml_kquant_vectors.json")) {
            root = new ObjectMapper().readTree(in);
        }
        JsonNode v = root.get(name);
        GgmlBlocks type = GgmlBlocks.byName(name.toUpperCase());
        byte[] blocks = HexFormat.of().parseHex(v.get("hex").asText());
        float[] want = floats(v.get("dequant_f32_hex")), got = new float[want.length];
        assertEquals(type.bytes(want.length), blocks.length);
        type.dequantize(blocks, 0, got, 0, want.length / type.blockSize);
        for (int i = 0; i < want.length; i++)
            assertEquals(Float.floatToRawIntBits(want[i]), Float.floatToRawIntBits(got[i]), name + " value " + i + " (block " + i / type.blockSize + ")");
        if (name.endsWith("_0")) {
            float[] x = floats(root.get("input_f32_hex"));
            assertArrayEquals(blocks, type.quantize(x, 0, x.length), name + " quantize_row_" + name + "_ref");
        }
        if (name.equals("q4_K")) {   // its first 3 blocks are quantize_row_q4_K_ref of the first 768 inputs
            float[] x = floats(root.get("input_f32_hex"));
            assertArrayEquals(java.util.Arrays.copyOf(blocks, 3 * 144), type.quantize(x, 0, 3 * 256), "quantize_row_q4_K_ref");
        }
    }

    /// Q4_K quantization against llama.cpp's compiled `quantize_row_q4_K_ref` (reference/ggml_q4k_quantize.py, through
    /// ctypes on node-llama-cpp's libggml-base.so) on edge blocks: all-zero, constant, one-signed, a spike, tiny and
    /// large magnitudes, sub-blocks whose 6-bit scale rounds to 0, and random ones; bit for bit.
    @org.junit.jupiter.api.Test
    void q4KQuantizationMatchesLlamaCppsCompiledQuantizer() throws IOException {
        JsonNode root;
        try (var in = GgmlBlocksVectorsTest.class.getResourceAsStream("/ggml_q4k_quantize.json")) {
            root = new ObjectMapper().readTree(in);
        }
        byte[] xb = HexFormat.of().parseHex(root.get("input_f32_hex").asText()), want = HexFormat.of().parseHex(root.get("q4_K_hex").asText());
        float[] x = new float[xb.length / 4];
        java.nio.ByteBuffer.wrap(xb).asFloatBuffer().get(x);   // big-endian bits, as written
        byte[] got = GgmlBlocks.Q4_K.quantize(x, 0, x.length);
        for (int b = 0; b < want.length / 144; b++)
            assertArrayEquals(java.util.Arrays.copyOfRange(want, b * 144, b * 144 + 144), java.util.Arrays.copyOfRange(got, b * 144, b * 144 + 144), "block " + b);
    }

    static float[] floats(JsonNode hex) {
        float[] f = new float[hex.size()];
        for (int i = 0; i < f.length; i++) f[i] = Float.intBitsToFloat(Integer.parseUnsignedInt(hex.get(i).asText(), 16));
        return f;
    }
}
