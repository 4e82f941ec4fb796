package org.peft4j.train.optim;

/// Learning-rate schedules exactly as transformers' `get_scheduler` builds them (`optimization.py`): a multiplier
/// λ(s) of the base lr at 0-based step s, LambdaLR-style, so the first optimizer step uses λ(0) (0 with warmup).
/// Warmup is linear, s / max(1, W), for every schedule except `constant`.
public record LrSchedule(Kind kind, double lr, int trainingSteps, int warmupSteps, double numCycles, double power, double lrEnd) {
    /// HF `SchedulerType` names: `linear cosine cosine_with_restarts polynomial constant constant_with_warmup`.
    public enum Kind {
        LINEAR("linear"), COSINE("cosine"), COSINE_WITH_RESTARTS("cosine_with_restarts"), POLYNOMIAL("polynomial"),
        CONSTANT("constant"), CONSTANT_WITH_WARMUP("constant_with_warmup");

        public final String hfName;

        Kind(String hfName) { this.hfName = hfName; }

        public static Kind of(String hfName) {
            for (Kind k : values()) if (k.hfName.equals(hfName)) return k;
            throw new IllegalArgumentException("Unknown lr_scheduler_type '" + hfName + "'; use one of linear, cosine, "
                    + "cosine_with_restarts, polynomial, constant, constant_with_warmup");
        }
    }

    public LrSchedule {
        if (trainingSteps < 0 || warmupSteps < 0)
            throw new IllegalArgumentException("training steps and warmup steps must be >= 0, got " + trainingSteps + " and " + warmupSteps);
        if (kind == Kind.POLYNOMIAL && !(lrEnd < lr))
            throw new IllegalArgumentException("polynomial schedule needs lr_end (" + lrEnd + ") < lr (" + lr + ")");
    }

    /// HF defaults for the kind: num_cycles 0.5 for cosine and 1 for cosine_with_restarts, power 1.0, lr_end 1e-7.
    /// warmupSteps > 0 wins over warmupRatio, else warmup = ceil(trainingSteps · warmupRatio)
    /// (`TrainingArguments.get_warmup_steps`).
    public static LrSchedule of(String hfName, double lr, int trainingSteps, int warmupSteps, double warmupRatio) {
        Kind kind = Kind.of(hfName);
        int warmup = warmupSteps > 0 ? warmupSteps : (int) Math.ceil(trainingSteps * warmupRatio);
        double cycles = kind == Kind.COSINE_WITH_RESTARTS ? 1.0 : 0.5;
        return new LrSchedule(kind, lr, trainingSteps, warmup, cycles, 1.0, 1e-7);
    }

    public LrSchedule withNumCycles(double cycles) { return new LrSchedule(kind, lr, trainingSteps, warmupSteps, cycles, power, lrEnd); }

    /// The learning rate of 0-based step s: lr · λ(s).
    public double lr(long step) { return lr * factor(step); }

    /// λ(s), transformers' lambda for the kind.
    public double factor(long s) {
        if (kind == Kind.CONSTANT) return 1.0;
        if (s < warmupSteps) return (double) s / Math.max(1, warmupSteps);
        double decaySteps = Math.max(1, trainingSteps - warmupSteps);
        double progress = (s - warmupSteps) / decaySteps;
        return switch (kind) {
            case CONSTANT, CONSTANT_WITH_WARMUP -> 1.0;
            case LINEAR -> Math.max(0.0, (trainingSteps - s) / decaySteps);
            case COSINE -> Math.max(0.0, 0.5 * (1.0 + Math.cos(Math.PI * numCycles * 2.0 * progress)));
            case COSINE_WITH_RESTARTS -> progress >= 1.0 ? 0.0
                    : Math.max(0.0, 0.5 * (1.0 + Math.cos(Math.PI * ((numCycles * progress) % 1.0))));
            case POLYNOMIAL -> {
                if (s > trainingSteps) yield lrEnd / lr;
                double remaining = 1 - (double) (s - warmupSteps) / (trainingSteps - warmupSteps);
                yield ((lr - lrEnd) * Math.pow(remaining, power) + lrEnd) / lr;
            }
        };
    }
}
