package org.peft4j.cli;

import org.peft4j.core.Peft4jException.ConfigException;
import org.peft4j.tokenizer.Tokenizer;
import picocli.CommandLine.ArgGroup;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

import java.nio.file.Path;
import java.util.Arrays;
import java.util.concurrent.Callable;
import java.util.stream.Collectors;

/// `peft4j tokenize`: prints the ids of a text as a JSON array.
@Command(name = "tokenize", mixinStandardHelpOptions = true, description = "Print the token ids of a text as a JSON array.")
final class TokenizeCommand implements Callable<Integer> {
    static final class Source {
        @Option(names = {"--model", "-m"}, paramLabel = "DIR", description = "Model folder holding tokenizer.json or tokenizer.model.") Path model;
        @Option(names = "--tokenizer", paramLabel = "FILE", description = "A tokenizer.json or tokenizer.model file.") Path tokenizer;
    }

    @ArgGroup(exclusive = true, multiplicity = "0..1") Source source;

    @Option(names = "--text", required = true, paramLabel = "TEXT", description = "The text.") String text;

    @Option(names = "--no-special", description = "Do not add BOS/EOS (special tokens written in the text still count).") boolean noSpecial;

    @Override
    public Integer call() {
        Path p = source == null ? ModelOptions.defaultModel() : source.model != null ? source.model : source.tokenizer;
        if (p == null) throw new ConfigException("pass --model DIR or --tokenizer FILE");
        Tokenizer t = Tokenizer.load(p);
        int[] ids = t.encode(text, !noSpecial);
        System.out.println(Arrays.stream(ids).mapToObj(Integer::toString).collect(Collectors.joining(", ", "[", "]")));
        return 0;
    }
}
