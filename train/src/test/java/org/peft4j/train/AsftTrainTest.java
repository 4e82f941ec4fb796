package org.peft4j.train;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.peft4j.testkit.Shared;
import org.peft4j.train.recipe.FinetuneRecipe;
import org.peft4j.train.recipe.TrainEvent;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

import static org.junit.jupiter.api.Assertions.*;

/// use_asft_loss with LoRA and ref_model (LLaMA-Factory's create_ref_model loads ref_model as the reference): the run
/// trains, its first loss is DFT's (the adapter starts at B = 0, so the policy is the base, which ref_model here is),
/// and the second step adds the KL to the moved policy.
class AsftTrainTest {
    @Test
    void loraTrainsAgainstRefModel(@TempDir Path tmp) {
        Path data = Shared.require("data/llamafactory");
        Path model = Shared.root().resolve("models/tinystories-656k");
        List<String> base = List.of("--model_name_or_path", model.toString(), "--dataset_dir", data.toString(), "--dataset", "alpaca_en_demo",
                "--template", "default", "--max_steps", "2", "--cutoff_len", "32", "--per_device_train_batch_size", "2", "--max_samples", "8",
                "--learning_rate", "1e-2", "--lora_rank", "4", "--save_steps", "0", "--logging_steps", "1", "--gemm", "java");
        List<Double> asft = losses(tmp.resolve("asft"), base, "--use_asft_loss", "true", "--asft_alpha", "5", "--ref_model", model.toString());
        List<Double> dft = losses(tmp.resolve("dft"), base, "--use_dft_loss", "true");
        assertEquals(dft.get(0), asft.get(0), 1e-6, "step 1: policy = ref_model, KL 0");
        assertTrue(asft.get(1) > dft.get(1) + 1e-6, "step 2 adds asft_alpha·KL > 0: " + asft + " vs " + dft);
    }

    static List<Double> losses(Path out, List<String> base, String... more) {
        List<String> flags = new ArrayList<>(base);
        flags.addAll(List.of("--output_dir", out.toString()));
        flags.addAll(List.of(more));
        List<Double> l = new ArrayList<>();
        new FinetuneRecipe().run(TrainConfig.load(null, flags), e -> { if (e instanceof TrainEvent.Step s) l.add(s.loss()); });
        assertEquals(2, l.size());
        return l;
    }
}
