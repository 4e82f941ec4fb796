package org.peft4j.cli;

import org.peft4j.model.adapter.LoadedAdapter;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;

import java.nio.file.Path;
import java.util.concurrent.Callable;

/// `peft4j generate`: prints only the continuation of the prompt to stdout, streaming, so that prompt + output read
/// as decode(prompt + new ids).
@Command(name = "generate", mixinStandardHelpOptions = true, description = "Complete a prompt with a model.")
final class GenerateCommand implements Callable<Integer> {
    @Mixin ModelOptions modelOptions;
    @Mixin KvCacheOption kvCache;
    @Mixin SamplingOptions sampling;

    @Option(names = {"--prompt", "-p"}, required = true, paramLabel = "TEXT", description = "The prompt.")
    String prompt;

    @Option(names = "--adapter", paramLabel = "DIR|FILE.gguf", description = "A LoRA adapter (PEFT folder, or llama.cpp's GGUF LoRA file) to apply.")
    Path adapter;

    @Override
    public Integer call() {
        kvCache.dtype();   // a bad --kv-cache is refused before the model loads
        Session s = new Session(modelOptions.modelDir(), modelOptions.setup());
        kvCache.apply(s.model);
        LoadedAdapter a = adapter == null ? null : Adapters.read(s, adapter);
        int[] ids = s.tokenizer.encode(prompt, true);
        s.complete(sampling.request(ids, s.generation, s.eosIds(), a), sampling.stop, System.out);
        System.out.println();
        return 0;
    }
}
