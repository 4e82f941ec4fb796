package org.peft4j.cli;

import org.peft4j.model.adapter.LoadedAdapter;
import org.peft4j.template.ChatMessage;
import org.peft4j.train.generate.ChatPrompt;
import org.peft4j.train.generate.Completion;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;

import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.Callable;
import java.util.stream.IntStream;

/// `peft4j chat`: a conversation through the model's chat template, a LLaMA-Factory template or a plain fallback
/// ([ChatPrompt]). In a terminal it prompts; with piped stdin each line is one user turn and only the answers are
/// printed, one per line (line breaks inside an answer become spaces).
@Command(name = "chat", mixinStandardHelpOptions = true, description = {"Chat with a model (interactive, or one turn per stdin line).",
        "peft4j chat CONFIG.yaml [flags] reads LLaMA-Factory's inference YAML (its inference/ examples); flags override it."})
final class ChatCommand implements Callable<Integer> {
    @Mixin ModelOptions modelOptions;
    @Mixin KvCacheOption kvCache;
    @Mixin SamplingOptions sampling;

    @Option(names = "--system", paramLabel = "TEXT", description = "System prompt.") String system;

    @Option(names = "--adapter", paramLabel = "DIR|FILE.gguf", description = "A LoRA adapter (PEFT folder, or llama.cpp's GGUF LoRA file) to apply.") Path adapter;

    @Option(names = "--template", paramLabel = "NAME",
            description = "A LLaMA-Factory template name (default, alpaca, vicuna, chatml, llama2, llama3, qwen, mistral, ...) to format the "
                    + "conversation as in training, or 'model' for the model's chat template; default: the model's chat template, "
                    + "else a plain User/Assistant format.")
    String templateName;

    @Option(names = "--enable-thinking", paramLabel = "BOOL", defaultValue = "true", arity = "1",
            description = "LLaMA-Factory reasoning templates (qwen3, ...): false opens each answer with the empty thought (default: ${DEFAULT-VALUE}).")
    boolean enableThinking;

    @Option(names = "--do-sample", paramLabel = "BOOL", arity = "1",
            description = "LLaMA-Factory's do_sample: false = greedy (temperature 0) unless --temperature is given.")
    Boolean doSample;

    @Override
    public Integer call() throws Exception {
        kvCache.dtype();   // a bad --kv-cache is refused before the model loads
        Session s = new Session(modelOptions.modelDir(), modelOptions.setup());
        kvCache.apply(s.model);
        LoadedAdapter a = adapter == null ? null : Adapters.read(s, adapter);
        ChatPrompt chat = ChatPrompt.of(templateName, s.tokenizer, s.dir);
        if (chat instanceof ChatPrompt.Slots slots) chat = new ChatPrompt.Slots(slots.template().withEnableThinking(enableThinking), s.tokenizer);
        if (Boolean.FALSE.equals(doSample) && sampling.temperature == null) sampling.temperature = 0.0;
        List<String> stops = new ArrayList<>(sampling.stop);
        stops.addAll(chat.stopStrings());
        int[] stopIds = IntStream.concat(IntStream.of(s.eosIds()), IntStream.of(chat.stopIds())).distinct().toArray();
        boolean interactive = System.console() != null;
        List<ChatMessage> messages = new ArrayList<>();
        if (system != null) messages.add(ChatMessage.system(system));
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
        if (interactive) System.err.println("peft4j chat: " + s.dir + (chat.name().equals("plain") ? " (no chat template: plain 'User:/Assistant:' format)" : "") + ". Ctrl-D to quit.");
        while (true) {
            if (interactive) { System.err.print("> "); System.err.flush(); }
            String line = in.readLine();
            if (line == null) break;
            if (line.isBlank()) continue;
            messages.add(ChatMessage.user(line));
            var request = sampling.request(chat.encode(messages), s.generation, stopIds, a);
            Completion answer;
            if (interactive) {
                answer = s.complete(request, stops, System.out);
                System.out.println();
            } else {
                // piped: one answer per line, so a script can pair answers with its input lines
                answer = s.complete(request, stops, null);
                System.out.println(answer.text().strip().replaceAll("\\s*\\R\\s*", " "));
            }
            messages.add(ChatMessage.assistant(answer.text().strip()));
        }
        return 0;
    }
}
