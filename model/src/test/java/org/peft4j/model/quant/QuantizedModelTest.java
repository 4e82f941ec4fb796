package org.peft4j.model.quant;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.peft4j.core.DType;
import org.peft4j.core.Gemms;
import org.peft4j.core.Peft4jException;
import org.peft4j.core.Peft4jException.FormatException;
import org.peft4j.core.Peft4jException.UnsupportedModelException;
import org.peft4j.formats.safetensors.SafeTensors;
import org.peft4j.formats.safetensors.ShardedSafeTensors;
import org.peft4j.formats.safetensors.TensorInfo;
import org.peft4j.model.LlamaConfig;
import org.peft4j.model.RandomModels;
import org.peft4j.model.llama.LayerTensor;
import org.peft4j.model.llama.LlamaWeights;
import org.peft4j.model.adapter.lora.LoraConfig;
import org.peft4j.model.adapter.lora.LoraWeights;
import org.peft4j.model.adapter.lora.PeftAdapter;
import org.peft4j.quant.Nf4Tensor;
import org.peft4j.quant.QuantType;
import org.peft4j.testkit.Shared;

import java.io.IOException;
import java.lang.foreign.ValueLayout;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Base64;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;
import java.util.function.UnaryOperator;

import static org.junit.jupiter.api.Assertions.*;

/// The bitsandbytes 4-bit checkpoint layout: creation equals quantizing the float model, save → load is bit-exact,
/// one Linear4bit file equals the reference file byte for byte, bad checkpoints fail naming the tensor, the stored
/// size per parameter, and merging an adapter with its requantization error.
class QuantizedModelTest {
    static final String STORIES = "models/stories260K-hf";   // under ../shared, through Shared.require
    static final String VECTORS = "docs/vectors/nf4_vectors.json";

    /// stories260K's config (hidden 64, intermediate 172: down_proj rows of 172 make blocks of 64 cross rows); its
    /// config.json is tiny and always present beside the shared models. Weights are random.
    static LlamaConfig stories() { return LlamaConfig.read(Shared.require(STORIES)); }

    static void assertSameTensor(String what, Nf4Tensor a, Nf4Tensor b) {
        assertEquals(a.type(), b.type(), what);
        assertEquals(a.blockSize(), b.blockSize(), what);
        assertArrayEquals(a.shape(), b.shape(), what);
        assertArrayEquals(a.packedBytes(), b.packedBytes(), what + " packed");
        assertEquals(a.absmax().getClass(), b.absmax().getClass(), what + " absmax kind");
        assertArrayEquals(a.absmaxValues(), b.absmaxValues(), what + " absmax");
        if (a.absmax() instanceof Nf4Tensor.Absmax.Nested n && b.absmax() instanceof Nf4Tensor.Absmax.Nested m) {
            assertArrayEquals(n.codeBytes(), m.codeBytes(), what + " codes");
            assertArrayEquals(n.nestedAbsmax(), m.nestedAbsmax(), what + " nested absmax");
            assertEquals(Float.floatToRawIntBits(n.offset()), Float.floatToRawIntBits(m.offset()), what + " offset");
        }
    }

    @Test
    void createRandomEqualsQuantizingTheFloatRandomModel() {
        LlamaConfig c = stories();
        QuantizedModel a = QuantizedModel.createRandom(c, 7, QuantType.NF4, 64, true);
        QuantizedModel b = QuantizedModel.quantize(RandomModels.create(c, 7), QuantType.NF4, 64, true);
        for (int l = 0; l < c.numHiddenLayers(); l++)
            for (int i = 0; i < 7; i++) assertSameTensor(QuantizedModel.LINEARS.get(i).name(l), a.linears[l][i], b.linears[l][i]);
        assertArrayEquals(a.weights.embedTokens, b.weights.embedTokens);
        assertArrayEquals(a.weights.norm, b.weights.norm);
        assertNull(a.weights.layers.get(0).wq());
    }

    /// BF16 embeddings: the same random values rounded to 16 bits, drawn straight into 16 bits; the 4-bit linears
    /// are those of the float32 creation (the same streams), and both are off the heap.
    @Test
    void createRandomWithBf16EmbeddingsRoundsTheSameValues() {
        LlamaConfig c = stories();
        QuantizedModel f = QuantizedModel.createRandom(c, 7, QuantType.NF4, 64, true);
        QuantizedModel h = QuantizedModel.createRandom(c, 7, QuantType.NF4, 64, true, DType.BF16);
        assertNull(h.weights.embedTokens);
        assertNull(h.weights.lmHead);
        float[] e = new float[f.weights.embedTokens.length], lm = new float[e.length];
        h.embed16.dequantize(e);
        h.head16.dequantize(lm);
        for (int i = 0; i < e.length; i++) {
            assertEquals(DType.floatToBf16(f.weights.embedTokens[i]), DType.floatToBf16(e[i]), "embed[" + i + "]");
            assertEquals(DType.floatToBf16(f.weights.lmHead[i]), DType.floatToBf16(lm[i]), "lm_head[" + i + "]");
            assertEquals(e[i], (float) DType.bf16ToFloat(DType.floatToBf16(f.weights.embedTokens[i])), "embed[" + i + "] is the rounded value");
        }
        assertArrayEquals(e, h.embedFloats());
        for (int l = 0; l < c.numHiddenLayers(); l++)
            for (int i = 0; i < 7; i++) {
                assertSameTensor(QuantizedModel.LINEARS.get(i).name(l), f.linears[l][i], h.linears[l][i]);
                assertTrue(h.linears[l][i].packed().isNative(), "4-bit codes off the heap");
            }
        assertTrue(h.offHeapBytes() > 0);
        assertEquals(h.offHeapBytes(), f.offHeapBytes());
    }

    /// A folder saved with BF16 float tensors loads with the embeddings and lm_head kept in 16 bits (the saved bits,
    /// not widened) and the 4-bit codes used in place from the mapped file; saving it again gives the same bytes, and
    /// the dequantized float copy holds the same values.
    @Test
    void bf16FolderLoadsIn16BitsAndInPlace(@TempDir Path tmp) throws IOException {
        LlamaConfig c = stories();
        QuantizedModel m = QuantizedModel.createRandom(c, 3, QuantType.NF4, 64, true);
        m.save(tmp.resolve("a"), DType.BF16);
        QuantizedModel r = QuantizedModel.load(tmp.resolve("a"));
        assertNotNull(r.embed16);
        assertEquals(DType.BF16, r.embed16.type());
        assertNull(r.weights.embedTokens);
        for (int i = 0; i < m.weights.embedTokens.length; i++)
            assertEquals(DType.floatToBf16(m.weights.embedTokens[i]), r.embed16.bits(i), "embed[" + i + "]");
        for (int l = 0; l < c.numHiddenLayers(); l++)
            for (int i = 0; i < 7; i++) {
                assertTrue(r.linears[l][i].packed().isMapped(), "packed codes used in place from the file");
                assertSameTensor(QuantizedModel.LINEARS.get(i).name(l), m.linears[l][i], r.linears[l][i]);
            }
        r.save(tmp.resolve("b"), DType.BF16);
        assertArrayEquals(Files.readAllBytes(tmp.resolve("a/model.safetensors")), Files.readAllBytes(tmp.resolve("b/model.safetensors")));
        float[] deq = r.dequantizedWeights().embedTokens;
        for (int i = 0; i < deq.length; i++) assertEquals(r.embed16.bits(i), DType.floatToBf16(deq[i]));
    }

    /// The streamed quantization (two passes over the file, each tensor written at its place) writes the bytes that
    /// quantizing the loaded float model in memory and saving it writes, sharded or not, for BF16 and F32 sources.
    @Test
    void quantizeStreamedWritesTheBytesOfQuantizeThenSave(@TempDir Path tmp) throws IOException {
        LlamaConfig c = stories();
        var w = RandomModels.create(c, 4);
        for (DType src : new DType[]{DType.BF16, DType.F32}) {
            Path in = tmp.resolve("in-" + src);
            RandomModels.save(in, w, src);
            var loaded = org.peft4j.model.Models.loadWeights(in);
            QuantizedModel q = QuantizedModel.quantize(loaded, QuantType.NF4, 64, true);
            q.save(tmp.resolve("mem-" + src), DType.BF16);
            double bits = QuantizedModel.quantizeStreamed(in, tmp.resolve("stream-" + src), QuantType.NF4, 64, true, DType.BF16);
            assertEquals(q.bitsPerParameter(), bits, 1e-12);
            assertArrayEquals(Files.readAllBytes(tmp.resolve("mem-" + src + "/model.safetensors")),
                    Files.readAllBytes(tmp.resolve("stream-" + src + "/model.safetensors")), "model.safetensors from " + src);
            assertEquals(Files.readString(tmp.resolve("mem-" + src + "/config.json")), Files.readString(tmp.resolve("stream-" + src + "/config.json")));
        }
        // shards: the streamed writer splits and indexes exactly as ShardedSafeTensors.write does
        Path in = tmp.resolve("in-BF16");
        List<SafeTensors.Entry> entries = new ArrayList<>();
        List<org.peft4j.formats.safetensors.ShardedSafeTensors.Spec> specs = new ArrayList<>();
        try (var st = org.peft4j.formats.safetensors.ShardedSafeTensors.open(in)) {
            for (var e : st.tensors().entrySet()) {
                entries.add(new SafeTensors.Entry(e.getKey(), e.getValue().dtype(), e.getValue().shape(), st.bytes(e.getKey())));
                specs.add(new org.peft4j.formats.safetensors.ShardedSafeTensors.Spec(e.getKey(), e.getValue().dtype(), e.getValue().shape()));
            }
            long max = 40_000;   // several shards, one tensor larger than a shard
            org.peft4j.formats.safetensors.ShardedSafeTensors.write(tmp.resolve("sh-a"), entries, max, Map.of("format", "pt"));
            try (var s = org.peft4j.formats.safetensors.ShardedSafeTensors.Streamed.open(tmp.resolve("sh-b"), specs, max, Map.of("format", "pt"))) {
                for (int i = entries.size() - 1; i >= 0; i--) s.put(entries.get(i).name(), entries.get(i).bytes());   // any order
            }
        }
        try (var files = Files.list(tmp.resolve("sh-a"))) {
            List<Path> a = files.sorted().toList();
            assertTrue(a.size() > 2, "the test needs several shards, got " + a);
            for (Path p : a) assertArrayEquals(Files.readAllBytes(p), Files.readAllBytes(tmp.resolve("sh-b").resolve(p.getFileName())), p.getFileName().toString());
        }
        try (var files = Files.list(tmp.resolve("sh-b"))) { assertEquals(Files.list(tmp.resolve("sh-a")).count(), files.count(), "no temp file left"); }
    }

    @Test
    void saveLoadIsBitExactAndSavingAgainGivesTheSameBytes(@TempDir Path tmp) throws IOException {
        LlamaConfig c = stories();
        for (QuantType type : QuantType.values())
            for (boolean dq : new boolean[]{true, false}) {
                QuantizedModel m = QuantizedModel.createRandom(c, 3, type, dq ? 64 : 128, dq);
                Path d1 = tmp.resolve(type + "-" + dq + "-1"), d2 = tmp.resolve(type + "-" + dq + "-2");
                m.save(d1, DType.F32);
                QuantizedModel r = QuantizedModel.load(d1);
                assertEquals(type, r.type);
                assertEquals(dq, r.doubleQuant);
                for (int l = 0; l < c.numHiddenLayers(); l++) {
                    for (int i = 0; i < 7; i++) assertSameTensor(QuantizedModel.LINEARS.get(i).name(l), m.linears[l][i], r.linears[l][i]);
                    assertArrayEquals(m.weights.layers.get(l).inputLayernorm(), r.weights.layers.get(l).inputLayernorm());
                }
                assertArrayEquals(m.weights.embedTokens, r.weights.embedTokens);
                r.save(d2, DType.F32);
                assertArrayEquals(Files.readAllBytes(d1.resolve("model.safetensors")), Files.readAllBytes(d2.resolve("model.safetensors")));
                assertEquals(Files.readString(d1.resolve("config.json")), Files.readString(d2.resolve("config.json")));
            }
    }

    @Test
    void configJsonCarriesTheQuantizationConfigAndTheKeysAreThoseOfLinear4bit(@TempDir Path tmp) throws IOException {
        QuantizedModel m = QuantizedModel.createRandom(stories(), 1, QuantType.NF4, 64, true);
        m.save(tmp, DType.BF16);
        JsonNode q = new ObjectMapper().readTree(Files.readString(tmp.resolve("config.json"))).get("quantization_config");
        assertEquals("bitsandbytes", q.get("quant_method").asText());
        assertTrue(q.get("load_in_4bit").asBoolean());
        assertFalse(q.get("load_in_8bit").asBoolean());
        assertEquals("nf4", q.get("bnb_4bit_quant_type").asText());
        assertTrue(q.get("bnb_4bit_use_double_quant").asBoolean());
        assertEquals("bfloat16", q.get("bnb_4bit_compute_dtype").asText());
        assertEquals("uint8", q.get("bnb_4bit_quant_storage").asText());
        assertEquals(stories(), LlamaConfig.read(tmp));   // the model fields are untouched
        try (ShardedSafeTensors st = ShardedSafeTensors.open(tmp)) {
            String p = "model.layers.2.mlp.down_proj.weight";   // (64, 172): 11008 elements, 172 blocks
            Map<String, TensorInfo> t = st.tensors();
            assertEquals(DType.U8, t.get(p).dtype());
            assertArrayEquals(new long[]{5504, 1}, t.get(p).shape());
            assertArrayEquals(new long[]{172}, t.get(p + ".absmax").shape());
            assertEquals(DType.U8, t.get(p + ".absmax").dtype());
            assertArrayEquals(new long[]{1}, t.get(p + ".nested_absmax").shape());
            assertArrayEquals(new long[]{256}, t.get(p + ".nested_quant_map").shape());
            assertArrayEquals(new long[]{16}, t.get(p + ".quant_map").shape());
            String json = new String(st.bytes(p + ".quant_state.bitsandbytes__nf4").toArray(ValueLayout.JAVA_BYTE), StandardCharsets.UTF_8);
            float offset = ((Nf4Tensor.Absmax.Nested) m.linear(2, LayerTensor.DOWN_PROJ).absmax()).offset();
            // Python: json.dumps({... "nested_offset": float(np.float32(offset))}); repr of a float32 widened to double.
            assertEquals("{\"quant_type\": \"nf4\", \"blocksize\": 64, \"dtype\": \"bfloat16\", \"shape\": [64, 172], "
                    + "\"nested_blocksize\": 256, \"nested_dtype\": \"float32\", \"nested_offset\": " + pyRepr(offset) + "}", json);
            assertEquals(DType.BF16, t.get(LlamaWeights.EMBED_TOKENS).dtype());
            assertFalse(t.containsKey("model.layers.0.self_attn.q_proj.weight.quant_state.bitsandbytes__fp4"));
        }
    }

    /// Python's repr of a double in the fixed-notation range, by BigDecimal's shortest round-trip digits (Java 19+).
    static String pyRepr(double d) {
        String s = new java.math.BigDecimal(Double.toString(d)).toPlainString();
        return s.contains(".") ? s : s + ".0";
    }

    @Test
    void linear4bitEntriesReproduceTheReferenceFileByteForByte(@TempDir Path tmp) throws IOException {
        JsonNode ex = new ObjectMapper().readTree(Shared.require(VECTORS).toFile()).get("safetensors_linear4bit_example");
        byte[] file = Base64.getDecoder().decode(ex.get("file_b64").asText());
        Files.write(tmp.resolve("model.safetensors"), file);
        String weight = ex.get("prefix").asText() + "weight";
        Nf4Tensor w;
        try (ShardedSafeTensors st = ShardedSafeTensors.open(tmp, java.lang.foreign.Arena.ofAuto())) {
            var used = new HashSet<String>();
            w = QuantizedModel.readLinear4bit(st, weight, new long[]{64, 64}, used);
            assertTrue(w.packed().isMapped(), "the packed codes are used in place from the mapped file, not copied");
            assertEquals(st.tensors().keySet(), used, "every tensor of the file is part of the Linear4bit");
        }
        // The file's codes are those of small_64x64_nf4: quantizing its input with double quantization gives them.
        JsonNode small = null;
        for (JsonNode cs : new ObjectMapper().readTree(Shared.require(VECTORS).toFile()).get("cases")) if (cs.get("name").asText().equals("small_64x64_nf4")) small = cs;
        float[] x = f32(small.get("input_f32_b64").asText());
        assertSameTensor(weight, Nf4Tensor.quantize(QuantType.NF4, x, new long[]{64, 64}, 64, true), w);
        assertEquals(ex.get("quant_state_json").asText(), w.quantStateJson("float32"));
        Path out = tmp.resolve("out.safetensors");
        SafeTensors.write(out, QuantizedModel.linear4bitEntries(weight, w, "float32"), Map.of("format", "pt"));
        assertArrayEquals(file, Files.readAllBytes(out));
    }

    static float[] f32(String b64) {
        ByteBuffer b = ByteBuffer.wrap(Base64.getDecoder().decode(b64)).order(ByteOrder.LITTLE_ENDIAN);
        float[] x = new float[b.remaining() / 4];
        b.asFloatBuffer().get(x);
        return x;
    }

    // ---------------------------------------------------------------- bad input

    /// Saves a double-quantized NF4 model, rewrites the tensors through `edit` (name → bytes, or a rename), and loads.
    static Peft4jException loadEdited(Path dir, Class<? extends Peft4jException> type, UnaryOperator<SafeTensors.Entry> edit) throws IOException {
        QuantizedModel.createRandom(stories(), 1, QuantType.NF4, 64, true).save(dir, DType.F32);
        List<SafeTensors.Entry> entries = new ArrayList<>();
        try (SafeTensors st = SafeTensors.open(dir.resolve("model.safetensors"))) {
            for (TensorInfo t : st.tensors().values()) {
                var e = edit.apply(SafeTensors.Entry.ofBytes(t.name(), t.dtype(), t.shape(), st.bytes(t.name()).toArray(ValueLayout.JAVA_BYTE)));
                if (e != null) entries.add(e);
            }
        }
        SafeTensors.write(dir.resolve("model.safetensors"), entries, Map.of("format", "pt"));
        return assertThrows(type, () -> QuantizedModel.load(dir));
    }

    static final String Q = "model.layers.1.self_attn.q_proj.weight", STATE = Q + ".quant_state.bitsandbytes__nf4";

    static SafeTensors.Entry replace(SafeTensors.Entry e, String name, DType dtype, byte[] bytes) {
        return e.name().equals(name) ? SafeTensors.Entry.ofBytes(name, dtype, new long[]{bytes.length / dtype.bytes}, bytes) : e;
    }

    static void assertNames(Exception e, String tensor) {
        assertTrue(e.getMessage().contains("'" + tensor + "'"), "message should name " + tensor + ": " + e.getMessage());
    }

    @Test
    void absmaxOfTheWrongSizeIsAnErrorNamingTheTensor(@TempDir Path tmp) throws IOException {
        var e = loadEdited(tmp, FormatException.class, t -> replace(t, Q + ".absmax", DType.U8, new byte[63]));   // 64 blocks
        assertNames(e, Q + ".absmax");
    }

    @Test
    void nestedAbsmaxOfTheWrongSizeIsAnErrorNamingTheTensor(@TempDir Path tmp) throws IOException {
        var e = loadEdited(tmp, FormatException.class, t -> replace(t, Q + ".nested_absmax", DType.F32, new byte[8]));
        assertNames(e, Q + ".nested_absmax");
    }

    @Test
    void unparsableQuantStateIsAnErrorNamingTheTensor(@TempDir Path tmp) throws IOException {
        var e = loadEdited(tmp, FormatException.class, t -> replace(t, STATE, DType.U8, "{\"quant_type\": \"nf4\", \"blocksize\": 6".getBytes(StandardCharsets.UTF_8)));
        assertNames(e, STATE);
        assertTrue(e.getMessage().contains("not valid JSON"), e.getMessage());
    }

    @Test
    void quantStateShapeDisagreeingWithTheConfigIsAnErrorNamingTheTensor(@TempDir Path tmp) throws IOException {
        String bad = "{\"quant_type\": \"nf4\", \"blocksize\": 64, \"dtype\": \"float32\", \"shape\": [64, 32], \"nested_blocksize\": 256, \"nested_dtype\": \"float32\", \"nested_offset\": 0.01}";
        var e = loadEdited(tmp, FormatException.class, t -> replace(t, STATE, DType.U8, bad.getBytes(StandardCharsets.UTF_8)));
        assertNames(e, STATE);
        assertTrue(e.getMessage().contains("[64, 32]") && e.getMessage().contains("[64, 64]"), e.getMessage());
    }

    @Test
    void quantStateBlocksizeDisagreeingWithAbsmaxIsAnErrorNamingTheTensor(@TempDir Path tmp) throws IOException {
        String bad = "{\"quant_type\": \"nf4\", \"blocksize\": 128, \"dtype\": \"float32\", \"shape\": [64, 64], \"nested_blocksize\": 256, \"nested_dtype\": \"float32\", \"nested_offset\": 0.01}";
        var e = loadEdited(tmp, FormatException.class, t -> replace(t, STATE, DType.U8, bad.getBytes(StandardCharsets.UTF_8)));
        assertNames(e, Q + ".absmax");   // 32 blocks expected, 64 stored
    }

    @Test
    void unknownQuantTypeIsAnErrorNamingTheTensor(@TempDir Path tmp) throws IOException {
        String renamed = Q + ".quant_state.bitsandbytes__int3";
        var e = loadEdited(tmp, UnsupportedModelException.class, t -> t.name().equals(STATE)
                ? SafeTensors.Entry.ofBytes(renamed, t.dtype(), t.shape(), t.bytes().toArray(ValueLayout.JAVA_BYTE)) : t);
        assertNames(e, renamed);
        assertTrue(e.getMessage().contains("int3"), e.getMessage());
    }

    @Test
    void unknownQuantTypeInConfigIsAnErrorNamingTheField(@TempDir Path tmp) throws IOException {
        QuantizedModel.createRandom(stories(), 1, QuantType.NF4, 64, true).save(tmp, DType.F32);
        Path cfg = tmp.resolve("config.json");
        Files.writeString(cfg, Files.readString(cfg).replace("\"bnb_4bit_quant_type\" : \"nf4\"", "\"bnb_4bit_quant_type\" : \"nf3\""));
        var e = assertThrows(UnsupportedModelException.class, () -> QuantizedModel.load(tmp));
        assertTrue(e.getMessage().contains("bnb_4bit_quant_type") && e.getMessage().contains("nf3"), e.getMessage());
    }

    // ---------------------------------------------------------------- size and merge

    /// One layer of Llama-2-7B's shape at half width (hidden 2048, intermediate 5504): 50M quantized parameters, so the
    /// fixed 1.3 KB of maps and JSON per weight adds 0.0015 bits (0.0003 on Llama-2-7B itself, 4.1273 in all).
    @Test
    void doubleQuantAtBlock64StoresAtMost4Point13BitsPerParameter(@TempDir Path tmp) {
        LlamaConfig c = LlamaConfig.fromJson("""
                {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 2048, "intermediate_size": 5504,
                 "num_hidden_layers": 1, "num_attention_heads": 8, "num_key_value_heads": 8, "vocab_size": 256,
                 "max_position_embeddings": 512, "rms_norm_eps": 1e-5, "tie_word_embeddings": true}""", "test");
        QuantizedModel m = QuantizedModel.createRandom(c, 5, QuantType.NF4, 64, true);
        double bits = m.bitsPerParameter();
        // Counted again from the saved file: every tensor that belongs to a quantized linear.
        m.save(tmp, DType.BF16);
        long bytes = 0, params = 0;
        try (ShardedSafeTensors st = ShardedSafeTensors.open(tmp)) {
            for (TensorInfo t : st.tensors().values()) if (t.name().contains("_proj.weight")) bytes += t.end() - t.begin();
        }
        for (LayerTensor t : QuantizedModel.LINEARS) params += Arrays.stream(t.shape(c)).reduce(1, Math::multiplyExact);
        assertEquals(8.0 * bytes / params, bits, 8.0 * 7 / params, "bitsPerParameter vs the file (quant_state dtype name length may differ)");
        double formula = 4 + 8.0 / 64 + 32.0 / (64 * 256);
        assertTrue(bits >= formula && bits <= 4.13, "bits per parameter " + bits + " (formula without per-tensor maps: " + formula + ")");
    }

    @Test
    void mergeAdapterRequantizesTargetsReportsTheErrorAndKeepsTheRest() {
        LlamaConfig c = stories();
        QuantizedModel m = QuantizedModel.createRandom(c, 9, QuantType.NF4, 64, true);
        LoraConfig lc = LoraConfig.of(4, List.of("q_proj", "down_proj"));
        SplittableRandom rng = new SplittableRandom(2);
        Map<PeftAdapter.Target, LoraWeights> w = new java.util.HashMap<>();
        for (String mod : List.of("q_proj", "down_proj")) {
            LayerTensor t = mod.equals("q_proj") ? LayerTensor.Q_PROJ : LayerTensor.DOWN_PROJ;
            int out = (int) t.shape(c)[0], in = (int) t.shape(c)[1];
            LoraWeights lw = LoraWeights.allocate(4, in, out, false);
            for (int i = 0; i < lw.a().length; i++) lw.a()[i] = (float) rng.nextGaussian(0, 0.05);
            for (int i = 0; i < lw.b().length; i++) lw.b()[i] = (float) rng.nextGaussian(0, 0.05);
            w.put(new PeftAdapter.Target(3, mod), lw);
        }
        PeftAdapter adapter = new PeftAdapter(lc, "random", null, w);
        QuantizedModel.Merged r = m.mergeAdapter(adapter, Gemms.get("scalar"));
        // Independently: W' in double, compared with the dequantized merged model.
        double max = 0, sumSq = 0;
        long n = 0;
        for (var e : w.entrySet()) {
            LayerTensor t = e.getKey().module().equals("q_proj") ? LayerTensor.Q_PROJ : LayerTensor.DOWN_PROJ;
            LoraWeights lw = e.getValue();
            int out = lw.out(), in = lw.in();
            float[] base = new float[out * in], merged = new float[out * in];
            m.linear(3, t).dequantize(base);
            r.model().linear(3, t).dequantize(merged);
            double s = lc.scaling();
            for (int o = 0; o < out; o++)
                for (int i = 0; i < in; i++) {
                    double ba = 0;
                    for (int k = 0; k < 4; k++) ba += (double) lw.b()[o * 4 + k] * lw.a()[k * in + i];
                    double d = Math.abs(merged[o * in + i] - (base[o * in + i] + s * ba));
                    max = Math.max(max, d); sumSq += d * d; n++;
                }
        }
        assertEquals(n, r.mergedParameters());
        // The reported error uses W' rounded to float32 by the gemm: it differs from the double W' by ≤ 1 ulp of |W'|.
        assertEquals(max, r.maxError(), 1e-6);
        assertEquals(Math.sqrt(sumSq / n), r.rmsError(), 1e-7);
        assertTrue(r.maxError() > 0 && r.rmsError() < r.maxError(), r.toString());
        for (int l = 0; l < c.numHiddenLayers(); l++)
            for (int i = 0; i < 7; i++)
                if (!(l == 3 && (i == 0 || i == 6))) assertSame(m.linears[l][i], r.model().linears[l][i]);
                else assertFalse(Arrays.equals(m.linears[l][i].packedBytes(), r.model().linears[l][i].packedBytes()));
    }
}
