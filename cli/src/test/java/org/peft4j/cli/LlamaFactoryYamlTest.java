package org.peft4j.cli;

import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.peft4j.testkit.Shared;

import java.nio.file.Files;
import java.nio.file.Path;

import static org.junit.jupiter.api.Assertions.*;
import static org.peft4j.cli.CliTest.run;

/// `peft4j export CONFIG.yaml` and `peft4j chat CONFIG.yaml` with LLaMA-Factory's own `merge_lora/` and `inference/`
/// examples (test resources `llamafactory/`, copied unchanged at a pinned commit), model, adapter and export paths
/// swapped for the bundled model and an adapter trained here: each does what the same command with flags does (the
/// same bytes, the same answers), notes what it accepts without effect, and refuses what it cannot do naming the key.
class LlamaFactoryYamlTest {
    @TempDir static Path tmp;
    static Path model, adapter;

    @BeforeAll
    static void trainAnAdapter() {
        CliTest.home();
        model = Shared.root().resolve("models/tinystories-656k");
        adapter = tmp.resolve("adapter");
        CliTest.Out o = run(null, "train", "--model_name_or_path", model.toString(), "--dataset", "identity_en", "--dataset_dir",
                Shared.root().resolve("data").toString(), "--template", "qwen3_nothink", "--cutoff_len", "48", "--max_steps", "3",
                "--learning_rate", "1e-2", "--lora_rank", "4", "--save_steps", "0", "--output_dir", adapter.toString());
        assertEquals(0, o.code(), o.stderr());
    }

    /// A bundled example with its paths swapped (lines `key: ...` replaced; absent keys are not added).
    static Path example(String name, Path export) throws Exception {
        String text;
        try (var in = LlamaFactoryYamlTest.class.getResourceAsStream("llamafactory/examples/" + name)) {
            text = new String(in.readAllBytes(), java.nio.charset.StandardCharsets.UTF_8);
        }
        text = text.replaceFirst("(?m)^model_name_or_path: .*$", "model_name_or_path: " + model)
                .replaceFirst("(?m)^adapter_name_or_path: .*$", "adapter_name_or_path: " + adapter);
        if (export != null) text = text.replaceFirst("(?m)^export_dir: .*$", "export_dir: " + export);
        Path y = tmp.resolve(name.replace('/', '_'));
        Files.writeString(y, text);
        return y;
    }

    @Test
    void exportMergesAsTheFlagsDo() throws Exception {
        Path viaYaml = tmp.resolve("merged-yaml"), viaFlags = tmp.resolve("merged-flags");
        CliTest.Out o = run(null, "export", example("merge_lora/qwen3_lora_sft.yaml", viaYaml).toString());
        assertEquals(0, o.code(), o.stderr());
        assertTrue(o.stderr().contains("note: trust_remote_code=true") && o.stderr().contains("note: export_device=cpu"), o.stderr());
        CliTest.Out f = run(null, "export", "--model_name_or_path", model.toString(), "--adapter_name_or_path", adapter.toString(),
                "--export_dir", viaFlags.toString());
        assertEquals(0, f.code(), f.stderr());
        assertArrayEquals(Files.readAllBytes(viaFlags.resolve("model.safetensors")), Files.readAllBytes(viaYaml.resolve("model.safetensors")));
        // template: qwen3_nothink, the bundled model having no chat template: the export carries it (LLaMA-Factory's fix_jinja_template)
        assertTrue(Files.readString(viaYaml.resolve("tokenizer_config.json")).contains("<|im_start|>assistant"));
        assertFalse(Files.readString(viaFlags.resolve("tokenizer_config.json")).contains("chat_template"));

        // merge_lora/qwen3_full_sft.yaml: a full model (no adapter) re-exported; flags override the file
        Path full = tmp.resolve("full");
        String text = Files.readString(example("merge_lora/qwen3_full_sft.yaml", full)).replaceFirst("(?m)^model_name_or_path: .*$", "model_name_or_path: " + viaYaml);
        Path fy = tmp.resolve("full.yaml");
        Files.writeString(fy, text);
        o = run(null, "export", fy.toString(), "--export_size", "1");
        assertEquals(0, o.code(), o.stderr());
        assertArrayEquals(Files.readAllBytes(viaYaml.resolve("model.safetensors")), Files.readAllBytes(full.resolve("model.safetensors")));
    }

    @Test
    void exportRefusesWhatItCannotDo() throws Exception {
        CliTest.Out o = run(null, "export", example("merge_lora/qwen3_gptq.yaml", tmp.resolve("gptq")).toString());
        assertEquals(1, o.code());
        assertTrue(o.stderr().contains("export_quantization_bit") && o.stderr().contains("peft4j quantize"), o.stderr());
        o = run(null, "export", example("merge_lora/mossvl_lora_sft.yaml", tmp.resolve("moss")).toString());
        assertEquals(1, o.code());
        assertTrue(o.stderr().contains("moss_vl") && o.stderr().contains("text models only"), o.stderr());
        Path bad = tmp.resolve("bad.yaml");
        Files.writeString(bad, "model_name_or_path: " + model + "\nexport_dir: " + tmp.resolve("x") + "\nlearning_rate: 1e-4\n");
        o = run(null, "export", bad.toString());
        assertEquals(1, o.code());
        assertTrue(o.stderr().contains("'learning_rate' is not a key of export") && o.stderr().contains("export_dir"), o.stderr());
    }

    @Test
    void chatAnswersAsTheFlagsDo() throws Exception {
        String stdin = "Who are you?\n";
        CliTest.Out viaYaml = run(stdin, "chat", example("inference/qwen3_lora_sft.yaml", null).toString(), "--max-new-tokens", "12");
        assertEquals(0, viaYaml.code(), viaYaml.stderr());
        assertTrue(viaYaml.stderr().contains("note: infer_backend=huggingface"), viaYaml.stderr());
        CliTest.Out viaFlags = run(stdin, "chat", "--model", model.toString(), "--adapter", adapter.toString(), "--template", "qwen3_nothink",
                "--max-new-tokens", "12");
        assertEquals(0, viaFlags.code(), viaFlags.stderr());
        assertEquals(viaFlags.stdout(), viaYaml.stdout());
        CliTest.Out base = run(stdin, "chat", example("inference/qwen3.yaml", null).toString(), "--max-new-tokens", "12");
        assertEquals(0, base.code(), base.stderr());
        assertNotEquals(viaYaml.stdout(), base.stdout(), "the adapter of the lora YAML is applied");
        // the VL template's text format serves text chats
        assertEquals(0, run(stdin, "chat", example("inference/qwen3vl.yaml", null).toString(), "--max-new-tokens", "4").code());
    }
}
