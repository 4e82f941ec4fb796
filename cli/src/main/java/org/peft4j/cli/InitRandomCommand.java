package org.peft4j.cli;

import org.peft4j.core.DType;
import org.peft4j.core.Peft4jException.ConfigException;
import org.peft4j.model.LlamaConfig;
import org.peft4j.model.ModelPresets;
import org.peft4j.model.RandomModels;
import org.peft4j.model.quant.QuantizedModel;
import org.peft4j.quant.QuantType;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.concurrent.Callable;

/// `peft4j init-random`: a random-weight model folder from a bundled preset or a config.json, for benchmarks.
@Command(name = "init-random", mixinStandardHelpOptions = true,
        description = "Write a random-weight model (config.json + model.safetensors, or 5 GB shards and an index) from a preset or config.json, one tensor at a time.")
final class InitRandomCommand implements Callable<Integer> {
    @Option(names = "--config", required = true, paramLabel = "NAME|FILE",
            description = "A preset (smollm2-135m, qwen2.5-0.5b, llama3.2-1b, llama2-7b) or a config.json path.")
    String config;

    @Option(names = "--out", required = true, paramLabel = "DIR", description = "Output folder (created).") Path out;

    @Option(names = "--dtype", defaultValue = "BF16", description = "F32, BF16 or F16 (default: ${DEFAULT-VALUE}).") DType dtype;

    @Option(names = "--seed", defaultValue = "0", description = "Weight seed (default: ${DEFAULT-VALUE}).") long seed;

    @Option(names = "--quant", paramLabel = "nf4|fp4", description = "Write a bitsandbytes 4-bit folder instead (double quantization, block 64),"
            + " created one weight at a time, never holding the float model: a 7B-shaped folder needs about 4 GB. Other tensors in --dtype.")
    String quant;

    @Override
    public Integer call() throws Exception {
        LlamaConfig c = Files.exists(Path.of(config)) ? LlamaConfig.read(Path.of(config)) : ModelPresets.byName(config);
        if (!dtype.isFloat() || dtype == DType.F64) throw new ConfigException("--dtype must be F32, BF16 or F16, got " + dtype);
        Files.createDirectories(out);
        if (quant != null) {
            QuantizedModel.createRandom(c, seed, QuantType.of(quant), 64, true, dtype).save(out, dtype);
            System.err.println("wrote " + out + " (" + c.architecture().modelType() + ", " + c.numHiddenLayers() + " layers, hidden "
                    + c.hiddenSize() + ", " + quant + " 4-bit linears)");
            return 0;
        }
        RandomModels.saveStreamed(out, c, seed, dtype, 5_000_000_000L);   // tensor by tensor, in 5 GB shards as save_pretrained
        System.err.println("wrote " + out + " (" + c.architecture().modelType() + ", " + c.numHiddenLayers() + " layers, hidden " + c.hiddenSize() + ")");
        return 0;
    }
}
