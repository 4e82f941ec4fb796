package org.peft4j.cli;

import org.peft4j.template.ChatMessage;
import org.peft4j.train.TrainData;
import org.peft4j.train.data.Conversation;
import org.peft4j.train.data.EncodedTurn;
import org.peft4j.train.data.Message;
import org.peft4j.train.data.SlotTemplate;
import org.peft4j.template.ChatTemplate;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;

import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.Callable;

/// `peft4j chat`: a conversation through the model's chat template (or a plain fallback). In a terminal it prompts;
/// with piped stdin each line is one user turn and only the answers are printed, one per line
/// (line breaks inside an answer become spaces).
@Command(name = "chat", mixinStandardHelpOptions = true, description = "Chat with a model (interactive, or one turn per stdin line).")
final class ChatCommand implements Callable<Integer> {
    @Mixin ModelOptions modelOptions;
    @Mixin SamplingOptions sampling;

    @Option(names = "--system", paramLabel = "TEXT", description = "System prompt.") String system;

    @Option(names = "--adapter", paramLabel = "DIR", description = "A LoRA adapter (PEFT folder) to apply.") Path adapter;

    @Option(names = "--template", paramLabel = "NAME",
            description = "A LLaMA-Factory template name (default, alpaca, vicuna, chatml, llama2, llama3, qwen, mistral, ...) to format the "
                    + "conversation as in training; default: the model's chat template, else a plain User/Assistant format.")
    String templateName;

    @Override
    public Integer call() throws Exception {
        Session s = new Session(modelOptions.modelDir(), modelOptions.setup());
        if (adapter != null) Adapters.apply(s, adapter);
        Path tc = s.dir.resolve("tokenizer_config.json");
        ChatTemplate template = s.tokenizer.config().chatTemplate() != null && Files.exists(tc)
                ? ChatTemplate.fromTokenizerConfig(tc) : ChatTemplate.plain();
        boolean plain = s.tokenizer.config().chatTemplate() == null;
        SlotTemplate slot = templateName == null ? null : SlotTemplate.named(templateName);
        List<String> stops = new ArrayList<>(sampling.stop);
        if (slot != null) stops.addAll(slot.stopWords());
        else if (plain) stops.add("\nUser:");
        boolean interactive = System.console() != null;
        List<ChatMessage> messages = new ArrayList<>();
        if (system != null) messages.add(ChatMessage.system(system));
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
        if (interactive) System.err.println("peft4j chat: " + s.dir + (plain ? " (no chat template: plain 'User:/Assistant:' format)" : "") + ". Ctrl-D to quit.");
        while (true) {
            if (interactive) { System.err.print("> "); System.err.flush(); }
            String line = in.readLine();
            if (line == null) break;
            if (line.isBlank()) continue;
            messages.add(ChatMessage.user(line));
            int[] ids;
            if (slot != null) {
                ids = slotPrompt(slot, s, messages);
            } else {
                String prompt = template.render(messages, true);
                // The template writes BOS itself when the model has one; add it only for the plain fallback.
                ids = s.tokenizer.encode(prompt, plain);
            }
            String answer;
            if (interactive) {
                answer = s.complete(ids, sampling.sampler(s.generation), sampling.maxNewTokens, sampling.seed, stops, System.out);
                System.out.println();
            } else {
                // piped: one answer per line, so a script can pair answers with its input lines
                answer = s.complete(ids, sampling.sampler(s.generation), sampling.maxNewTokens, sampling.seed, stops, null);
                System.out.println(answer.strip().replaceAll("\\s*\\R\\s*", " "));
            }
            messages.add(ChatMessage.assistant(answer.strip()));
        }
        return 0;
    }

    /// The conversation so far through a LLaMA-Factory template, ending with the prompt of the open turn.
    static int[] slotPrompt(SlotTemplate t, Session s, List<ChatMessage> messages) {
        String system = "";
        List<Message> ms = new ArrayList<>();
        for (ChatMessage m : messages) {
            switch (m.role()) {
                case "system" -> system = m.content();
                case "user" -> ms.add(Message.user(m.content()));
                default -> ms.add(Message.assistant(m.content()));
            }
        }
        ms.add(Message.assistant(""));
        List<EncodedTurn> turns = t.encodeMultiturn(TrainData.encoder(s.tokenizer), new Conversation(system, "", ms));
        List<Integer> out = new ArrayList<>();
        for (int i = 0; i < turns.size(); i++) {
            for (int id : turns.get(i).prompt()) out.add(id);
            if (i < turns.size() - 1) for (int id : turns.get(i).response()) out.add(id);
        }
        return out.stream().mapToInt(Integer::intValue).toArray();
    }
}
