package org.peft4j.train;

import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;
import org.peft4j.model.adapter.LoadedAdapter;
import org.peft4j.model.adapter.ptuning.PTuningAdapter;
import org.peft4j.model.llama.LlamaModel;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.peft4j.train.TrainerTest.config;
import static org.peft4j.train.TrainerTest.train;

/// P-tuning end to end on the bundled model (as TrainerTest): 8 steps lower the loss; the saved P_TUNING folder holds
/// the encoder's output for the final weights (the trained model's virtual tokens) and loads as an adapter; a run
/// resumed from the step-4 checkpoint (whose trainable.safetensors holds the encoder) ends with the same adapter
/// bytes and log as the uninterrupted run.
class PTuningTrainerTest {
    @ParameterizedTest
    @ValueSource(strings = {"MLP", "LSTM"})
    void trainsSavesTheEncodersOutputAndResumes(String type, @TempDir Path dir) throws Exception {
        String[] f = {"--finetuning_type", "ptuning", "--num_virtual_tokens", "4", "--encoder_reparameterization_type", type,
                "--encoder_hidden_size", "16", "--learning_rate", "1e-2", "--max_steps", "8", "--logging_steps", "1", "--val_size", "0",
                "--max_samples", "4", "--cutoff_len", "48", "--per_device_train_batch_size", "2", "--save_steps", "4"};
        var straight = train(config(dir, f));
        var log = Files.readAllLines(dir.resolve("trainer_log.jsonl"));
        var om = new com.fasterxml.jackson.databind.ObjectMapper();
        double first = om.readTree(log.getFirst()).get("loss").asDouble(), last = om.readTree(log.getLast()).get("loss").asDouble();
        assertTrue(last < first, type + ": loss " + first + " -> " + last);
        PTuningAdapter saved = PTuningAdapter.read(dir);
        assertEquals(type, saved.config().type());
        assertArrayEquals(straight.model().ptuningEmbeddings(), saved.embeddings(), "the saved prompt_embeddings are the final encoder's output");
        var m = new LlamaModel(straight.model().weights, org.peft4j.core.Gemms.get("java"));
        LoadedAdapter a = LoadedAdapter.read("p", dir, m.config);
        assertEquals(4, a.virtualTokens());
        assertTrue(!Arrays.equals(m.logits(new int[]{0, 0, 0, 0, 1, 400}, a), m.logits(new int[]{0, 0, 0, 0, 1, 400})), "the adapter acts");
        Files.delete(dir.resolve("adapter_model.safetensors"));
        var resumed = train(config(dir, TrainerTest.concat(f, "--resume_from_checkpoint", dir.resolve("checkpoint-4").toString())));
        assertArrayEquals(straight.adapter(), resumed.adapter(), type + ": the adapter after resume differs from the uninterrupted run");
        assertEquals(log.stream().map(TrainerTest::withoutTimes).toList(),
                Files.readAllLines(dir.resolve("trainer_log.jsonl")).stream().map(TrainerTest::withoutTimes).toList());
    }
}
