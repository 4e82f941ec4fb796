package org.peft4j.cli;

import org.peft4j.model.ModelInfo;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;

import java.util.concurrent.Callable;

/// `peft4j inspect`: architecture, config, tensor table and parameter count of a model folder.
@Command(name = "inspect", mixinStandardHelpOptions = true, description = "Describe a model folder: architecture, config, tensors, parameters.")
final class InspectCommand implements Callable<Integer> {
    @Mixin ModelOptions modelOptions;

    @Override
    public Integer call() {
        System.out.print(ModelInfo.read(modelOptions.modelDir()).summary());
        return 0;
    }
}
