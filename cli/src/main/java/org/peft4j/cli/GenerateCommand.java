package org.peft4j.cli;

import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;

import java.util.concurrent.Callable;

/// `peft4j generate`: prints only the completion (not the prompt) to stdout, streaming.
@Command(name = "generate", mixinStandardHelpOptions = true, description = "Complete a prompt with a model.")
final class GenerateCommand implements Callable<Integer> {
    @Mixin ModelOptions modelOptions;
    @Mixin SamplingOptions sampling;

    @Option(names = {"--prompt", "-p"}, required = true, paramLabel = "TEXT", description = "The prompt.")
    String prompt;

    @Option(names = "--adapter", paramLabel = "DIR", description = "A LoRA adapter (PEFT folder) to apply.")
    java.nio.file.Path adapter;

    @Override
    public Integer call() {
        Session s = new Session(modelOptions.modelDir(), modelOptions.setup());
        if (adapter != null) Adapters.apply(s, adapter);
        int[] ids = s.tokenizer.encode(prompt, true);
        s.complete(ids, sampling.sampler(s.generation), sampling.maxNewTokens, sampling.seed, sampling.stop, System.out);
        System.out.println();
        return 0;
    }
}
