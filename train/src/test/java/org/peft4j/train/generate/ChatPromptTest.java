package org.peft4j.train.generate;

import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.peft4j.core.Peft4jException.ConfigException;
import org.peft4j.template.ChatMessage;
import org.peft4j.tokenizer.Tokenizer;
import org.peft4j.testkit.Shared;
import org.peft4j.train.TrainData;
import org.peft4j.train.data.SlotTemplate;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.stream.IntStream;

import static org.junit.jupiter.api.Assertions.*;

/// Chat prompts against ids built here from the templates' documented text: LLaMA-Factory's slots encoded one by one
/// (and the prompt training itself asks with), a ChatML Jinja template, the plain fallback.
@Tag("slow")
class ChatPromptTest {
    static int[] concat(int[]... parts) {
        return java.util.Arrays.stream(parts).flatMapToInt(IntStream::of).toArray();
    }

    @Test
    void llamaFactoryDefaultTemplateAsTrainingEncodesIt() {
        Path dir = Shared.require("models/tinystories-656k");
        Tokenizer tok = Tokenizer.load(dir);
        ChatPrompt chat = ChatPrompt.of("default", tok, dir);
        int eos = tok.eosId();
        // default: user "Human: {{content}}" eos "\nAssistant:", assistant "{{content}}" eos "\n", system "System: {{content}}" eos "\n"
        int[] one = chat.encode(List.of(ChatMessage.user("Who are you?")));
        assertArrayEquals(concat(tok.encode("Human: Who are you?", false), new int[] {eos}, tok.encode("\nAssistant:", false)), one);
        var data = new TrainData(List.of(), List.of(), SlotTemplate.named("default"), 0);
        assertArrayEquals(data.promptIds(TrainData.encoder(tok), null, "Who are you?"), one, "the prompt training uses");

        int[] multi = chat.encode(List.of(ChatMessage.system("Be brief."), ChatMessage.user("Hi"), ChatMessage.assistant("Hello."),
                ChatMessage.user("Who are you?")));
        assertArrayEquals(concat(tok.encode("System: Be brief.", false), new int[] {eos}, tok.encode("\n", false),
                tok.encode("Human: Hi", false), new int[] {eos}, tok.encode("\nAssistant:", false),
                tok.encode("Hello.", false), new int[] {eos}, tok.encode("\n", false),
                tok.encode("Human: Who are you?", false), new int[] {eos}, tok.encode("\nAssistant:", false)), multi);
        assertEquals("default", chat.name());

        assertThrows(ConfigException.class, () -> chat.encode(List.of(ChatMessage.user("a"), ChatMessage.user("b"))));
    }

    /// chatml's stop word <|im_end|> is a special token of SmolLM2's vocabulary: a stop id, not only a string.
    @Test
    void chatmlStopWordIsAStopId(@TempDir Path tmp) throws Exception {
        Path dir = smollm2(tmp, null);
        Tokenizer tok = Tokenizer.load(dir);
        ChatPrompt chat = ChatPrompt.of("chatml", tok, dir);
        assertArrayEquals(new int[] {tok.tokenToId("<|im_end|>"), tok.tokenToId("<|im_start|>")}, chat.stopIds());
        assertEquals(List.of("<|im_end|>", "<|im_start|>"), chat.stopStrings());
        assertArrayEquals(tok.encode("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n", false),
                chat.encode(List.of(ChatMessage.user("Hi"))));
    }

    @Test
    void theModelsJinjaTemplate(@TempDir Path tmp) throws Exception {
        String chatml = "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' }}{% endfor %}"
                + "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";
        Path dir = smollm2(tmp, chatml);
        Tokenizer tok = Tokenizer.load(dir);
        for (String name : new String[] {null, "model"}) {
            ChatPrompt chat = ChatPrompt.of(name, tok, dir);
            assertEquals("model", chat.name());
            assertArrayEquals(tok.encode("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n", false),
                    chat.encode(List.of(ChatMessage.system("Be brief."), ChatMessage.user("Hi"))));
            assertEquals(List.of(), chat.stopStrings());
        }
    }

    @Test
    void plainFallbackWithoutATemplate() {
        Path dir = Shared.require("models/stories260K-hf");
        Tokenizer tok = Tokenizer.load(dir);
        ChatPrompt chat = ChatPrompt.of(null, tok, dir);
        assertEquals("plain", chat.name());
        assertArrayEquals(tok.encode("System: Be brief.\nUser: Hi\nAssistant: ", true),
                chat.encode(List.of(ChatMessage.system("Be brief."), ChatMessage.user("Hi"))));
        assertEquals(List.of("\nUser:"), chat.stopStrings());
        var e = assertThrows(ConfigException.class, () -> ChatPrompt.of("model", tok, dir));
        assertTrue(e.getMessage().contains("has none"), e.getMessage());
    }

    /// SmolLM2's tokenizer.json in a folder with a tokenizer_config.json (its special tokens, and a template or none).
    static Path smollm2(Path tmp, String template) throws Exception {
        Path dir = tmp.resolve("smollm2");
        Files.createDirectories(dir);
        Files.copy(Shared.require("tokenizers/smollm2-135m-instruct/tokenizer.json"), dir.resolve("tokenizer.json"));
        String t = template == null ? "" : ", \"chat_template\": " + new com.fasterxml.jackson.databind.ObjectMapper().writeValueAsString(template);
        Files.writeString(dir.resolve("tokenizer_config.json"), "{\"bos_token\": \"<|im_start|>\", \"eos_token\": \"<|im_end|>\"" + t + "}");
        return dir;
    }
}
