package org.peft4j.cli;

import org.peft4j.core.Peft4jException.ConfigException;
import org.peft4j.model.LlamaConfig;
import org.peft4j.model.ModelPresets;
import org.peft4j.model.adapter.lora.LoraConfig;
import org.peft4j.model.gguf.GgufModel;
import org.peft4j.model.layers.PreferenceLoss;
import org.peft4j.train.estimate.MemoryEstimate;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.Callable;

/// `peft4j estimate`: peak memory per component of a training run, before the run.
@Command(name = "estimate", mixinStandardHelpOptions = true, description = "Predict the peak memory of a training run, per component.")
final class EstimateCommand implements Callable<Integer> {
    @Option(names = "--model-config", required = true, paramLabel = "NAME|DIR|FILE",
            description = "A preset (smollm2-135m, qwen2.5-0.5b, llama3.2-1b, llama2-7b), a model folder, a config.json or a GGUF file (its weights counted as stored).") String model;
    @Option(names = "--method", defaultValue = "lora", description = "lora, qlora, full or freeze (default: ${DEFAULT-VALUE}).") String method;
    @Option(names = "--lora-rank", defaultValue = "8", description = "LoRA rank (default: ${DEFAULT-VALUE}).") int rank;
    @Option(names = "--lora-target", defaultValue = "all", description = "Target modules or all (default: ${DEFAULT-VALUE}).") String target;
    @Option(names = "--batch", defaultValue = "1", description = "Micro-batch size (default: ${DEFAULT-VALUE}).") int batch;
    @Option(names = "--seq", defaultValue = "512", description = "Sequence length (default: ${DEFAULT-VALUE}).") int seq;
    @Option(names = "--gradient-checkpointing", description = "Recompute blocks in backward.") boolean checkpointing;
    @Option(names = "--optim", defaultValue = "adamw_torch", description = "Optimizer: adamw_torch, adamw_8bit, paged_adamw_32bit, paged_adamw_8bit, sgd, or LLaMA-Factory's adam_mini, muon, galore (galore:RANK), apollo (apollo:RANK), badam (default: ${DEFAULT-VALUE}).") String optim;
    @Option(names = "--quant-blocksize", defaultValue = "64", description = "NF4 block size for qlora (default: ${DEFAULT-VALUE}).") int block;
    @Option(names = "--no-double-quant", description = "qlora without double quantization.") boolean noDouble;
    @Option(names = "--stage", defaultValue = "sft", description = "sft, pt, dpo (--batch counts pairs, two rows each) or kto (default: ${DEFAULT-VALUE}).") String stage;
    @Option(names = "--pref-loss", defaultValue = "sigmoid", description = "dpo: sigmoid, hinge, ipo (with a reference model), orpo or simpo (without) (default: ${DEFAULT-VALUE}).") String prefLoss;
    @Option(names = "--ref-model", description = "dpo/kto: a separate reference model (ref_model), as full and freeze tuning always have.") boolean refModel;
    @Option(names = "--ref-model-quantization-bit", paramLabel = "4", description = "dpo/kto: the separate reference model in 4 bits.") Integer refBits;

    /// Bytes of `c`'s tensors all in float32.
    private static long floatBytes(LlamaConfig c) {
        long n = 0;
        for (long[] shape : org.peft4j.model.llama.LlamaWeights.expectedShapes(c).values()) {
            long k = 1;
            for (long d : shape) k *= d;
            n += 4 * k;
        }
        return n;
    }

    @Override
    public Integer call() {
        LlamaConfig c;
        Path p = Path.of(model);
        boolean gguf = GgufModel.isGguf(p);
        if (gguf) c = GgufModel.config(p);
        else if (Files.isDirectory(p)) c = LlamaConfig.read(p.resolve("config.json"));
        else if (Files.isRegularFile(p)) c = LlamaConfig.read(p);
        else c = ModelPresets.byName(model);
        if (!List.of("lora", "qlora", "full", "freeze").contains(method)) throw new ConfigException("--method must be lora, qlora, full or freeze, got " + method);
        List<String> targets = LoraConfig.expandTargets(List.of(target.split(",")));
        if (refBits != null && refBits != 4) throw new ConfigException("--ref-model-quantization-bit must be 4, got " + refBits);
        if ((refModel || refBits != null) && !(stage.equals("kto") || stage.equals("dpo") && PreferenceLoss.Kind.of(prefLoss).needsReference()))
            throw new ConfigException("--ref-model applies to --stage dpo (pref loss sigmoid, hinge, ipo) and kto");
        var pref = MemoryEstimate.Preference.of(stage, PreferenceLoss.Kind.of(prefLoss), method.equals("qlora") ? "lora" : method, refModel, refBits != null);
        // a GGUF file: LoRA trains over its linear weights as stored (qlora means the same); full and freeze over its
        // float32 dequantization, as train does
        long ggufBytes = gguf && !method.equals("full") && !method.equals("freeze") ? GgufModel.baseBytes(p) : -1;
        boolean quantized = ggufBytes >= 0 ? ggufBytes != floatBytes(c) : method.equals("qlora");
        if (ggufBytes >= 0 && method.equals("qlora")) method = "lora";
        MemoryEstimate e = MemoryEstimate.estimate(c, MemoryEstimate.method(method, rank, targets), quantized, batch, seq,
                checkpointing, optim, block, !noDouble, pref);
        if (ggufBytes >= 0) e = e.withWeights(ggufBytes);
        System.out.print(e.toTable());
        System.out.print(org.peft4j.train.estimate.HeapPlan.of(e).toTable());
        return 0;
    }
}
