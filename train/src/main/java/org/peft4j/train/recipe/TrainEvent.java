package org.peft4j.train.recipe;

import org.peft4j.train.TrainConfig;

import java.nio.file.Path;
import java.util.List;
import java.util.Map;

/// What a [FinetuneRecipe] run reports, in this order: [Preparing], [Started], then a [Step] per optimizer step with
/// [Eval] and [CheckpointSaved] between steps, and last [Finished] or [Failed]. Values only, so that a listener can
/// print them (the CLI), send them on (the web board) or keep them (tests). Delivered on the thread that runs the recipe.
public sealed interface TrainEvent {

    /// Receives the events of one run; an exception it throws fails the run.
    @FunctionalInterface
    interface Listener {
        void on(TrainEvent event);
    }

    /// output_dir is ready and holds training_args.json (the resolved config: every key). `resumeFrom` is the checkpoint
    /// a non-empty output_dir made the run resume from (transformers' rule), or null.
    record Preparing(TrainConfig config, Path outputDir, Path resumeFrom) implements TrainEvent {}

    /// The model, data and optimizer inputs are built; training starts at `startStep` (> 0 when resuming) of
    /// `totalSteps`. With do_train false, both are 0 and only an [Eval] follows.
    record Started(TrainConfig config, Path outputDir, long totalSteps, long startStep, Setup setup) implements TrainEvent {}

    /// One optimizer step. `loss`: mean token loss of the accumulated batch; `gradNorm`: global norm before clipping;
    /// `epoch`: fractional epoch of the data read so far; `loggedLoss`: the mean since the previous log line when this
    /// step wrote one to trainer_log.jsonl (every logging_steps), else null.
    /// `metrics`: stages dpo and kto: the means over the logged window under TRL's names (rewards/chosen, rewards/rejected,
    /// rewards/accuracies, rewards/margins, logps/chosen, logps/rejected) when this step logged; else empty.
    record Step(long step, long totalSteps, double loss, double lr, double gradNorm, double tokensPerSecond, double epoch,
                double elapsedSeconds, double etaSeconds, Double loggedLoss, Map<String, Double> metrics) implements TrainEvent {
        public Step(long step, long totalSteps, double loss, double lr, double gradNorm, double tokensPerSecond, double epoch,
                    double elapsedSeconds, double etaSeconds, Double loggedLoss) {
            this(step, totalSteps, loss, lr, gradNorm, tokensPerSecond, epoch, elapsedSeconds, etaSeconds, loggedLoss, Map.of());
        }
    }

    /// A validation loss (eval_strategy steps, or the evaluation of do_train: false at step 0). `metrics`: stages dpo and kto: the
    /// `eval_rewards/accuracies`, ... over the validation pairs; else empty.
    record Eval(long step, double evalLoss, Map<String, Double> metrics) implements TrainEvent {
        public Eval(long step, double evalLoss) { this(step, evalLoss, Map.of()); }
    }

    /// checkpoint-N was written (atomically) at `step`.
    record CheckpointSaved(long step, Path dir) implements TrainEvent {}

    /// The run ended: trained (adapter or model, logs, all_results.json written), evaluated only, or cancelled
    /// (`result.train().cancelled()`: nothing written after the last checkpoint).
    record Finished(FinetuneRecipe.Result result) implements TrainEvent {}

    /// The run stopped on `error`; [#message] says what failed and what to do. The last checkpoint is intact.
    record Failed(Throwable error) implements TrainEvent {
        public String message() { return error.getMessage() != null ? error.getMessage() : error.toString(); }
    }

    /// What the run built, for the start-up report. Stage dpo counts examples in pairs. `quantization` null for a dense base; `adapter` null unless
    /// adapter_name_or_path continues one.
    record Setup(Path modelDir, Quantization quantization, int trainExamples, int evalExamples, int longestExample,
                 String template, int threads, String gemm, String finetuningType, long trainableParameters,
                 long activationBytes, ContinuedAdapter adapter) {}

    /// The frozen 4-bit base of QLoRA: `type` nf4 or fp4.
    record Quantization(String type, boolean doubleQuantization, double bitsPerParameter) {}

    /// The adapter whose training continues, with the settings read from its adapter_config.json.
    record ContinuedAdapter(Path dir, int rank, double alpha, List<String> targets, boolean dora) {}
}
