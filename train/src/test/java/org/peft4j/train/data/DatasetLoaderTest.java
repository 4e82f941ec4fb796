package org.peft4j.train.data;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.peft4j.core.Peft4jException.ConfigException;
import org.peft4j.core.Peft4jException.FormatException;
import org.peft4j.testkit.Shared;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.HashSet;
import java.util.List;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.*;

/// dataset_info.json and the converters on LLaMA-Factory's demo sets (../shared/data/llamafactory), and broken rows.
/// Reference: LLaMA-Factory `data/parser.py`, `data/converter.py`, `data/README.md`.
class DatasetLoaderTest {
    static DatasetInfo demo() {
        return DatasetInfo.load(Shared.require("data/llamafactory/dataset_info.json").getParent());
    }

    @Test void identityIsAlpacaWithPlaceholders() {
        List<Conversation> cs = DatasetLoader.loadConversations(demo(), List.of("identity"), null, 0);
        assertEquals(91, cs.size());
        Conversation first = cs.getFirst();
        assertEquals(List.of(Message.user("hi"), Message.assistant(
                "Hello! I am {{name}}, an AI assistant developed by {{author}}. How can I assist you today?")), first.messages());
        assertEquals("", first.system());
        Conversation filled = DatasetLoader.fillPlaceholders(cs, Map.of("name", "Peft", "author", "the peft4j team")).getFirst();
        assertEquals("Hello! I am Peft, an AI assistant developed by the peft4j team. How can I assist you today?",
                filled.messages().get(1).content());
    }

    @Test void alpacaJoinsInstructionAndInputWithNewline() {
        List<Conversation> cs = DatasetLoader.loadConversations(demo(), List.of("alpaca_en_demo"), null, 0);
        assertEquals(999, cs.size());
        // row 5 is the first with a non-empty input
        assertEquals("Given the parameters of a triangle, find out its perimeter.\nSide 1 = 4\nSide 2 = 6\nSide 3 = 8",
                cs.get(5).messages().getFirst().content());
    }

    @Test void sharegptGlaiveToolCalls() {
        List<Conversation> cs = DatasetLoader.loadConversations(demo(), List.of("glaive_toolcall_en_demo"), null, 0);
        assertEquals(300, cs.size());
        // row 0: human, gpt, human, function_call, observation, gpt, human, gpt
        assertEquals(List.of(Role.USER, Role.ASSISTANT, Role.USER, Role.FUNCTION, Role.OBSERVATION, Role.ASSISTANT, Role.USER, Role.ASSISTANT),
                cs.getFirst().messages().stream().map(Message::role).toList());
        assertTrue(cs.getFirst().tools().startsWith("[{\"name\": \"search_recipes\""));
        assertEquals("{\"name\": \"search_recipes\", \"arguments\": {\"ingredients\": [\"chicken\", \"bell peppers\", \"rice\"]}}",
                cs.getFirst().messages().get(3).content());
        long functionMessages = cs.stream().flatMap(c -> c.messages().stream()).filter(m -> m.role() == Role.FUNCTION).count();
        assertEquals(211, functionMessages); // counted with python over the file
        // every row renders under the default and qwen tool formats
        for (Conversation c : cs) {
            Template.named("default").render(c, "<s>", "</s>");
            Template.named("qwen").render(c, null, null);
        }
    }

    @Test void mixingConcatsAndMaxSamplesIsPerDataset() {
        List<Conversation> cs = DatasetLoader.loadConversations(demo(), DatasetLoader.parseNames("identity, alpaca_en_demo"), 3, 0);
        assertEquals(6, cs.size());
        assertEquals("hi", cs.get(0).messages().getFirst().content());
        assertEquals("hello", cs.get(1).messages().getFirst().content());
        assertEquals(DatasetLoader.loadConversations(demo(), List.of("alpaca_en_demo"), 1, 0).getFirst(), cs.get(3));
    }

    @Test void pretrainingTexts() {
        List<String> c4 = DatasetLoader.loadTexts(demo(), List.of("c4_demo"), null, 0);
        assertEquals(300, c4.size());
        assertTrue(c4.getFirst().startsWith("Don’t think you need all the bells and whistles?"));
        List<String> wiki = DatasetLoader.loadTexts(demo(), List.of("wiki_demo"), null, 0);
        assertEquals(30, wiki.size());
        assertTrue(wiki.getFirst().startsWith("Anarchism is a political philosophy"));
        var e = assertThrows(ConfigException.class, () -> DatasetLoader.loadTexts(demo(), List.of("glaive_toolcall_en_demo"), null, 0));
        assertTrue(e.getMessage().contains("sharegpt"), e.getMessage());
    }

    @Test void unknownDatasetListsTheNames() {
        var e = assertThrows(ConfigException.class, () -> demo().get("alpaca_demo"));
        assertTrue(e.getMessage().contains("'alpaca_demo'"), e.getMessage());
        assertTrue(e.getMessage().contains("identity, alpaca_en_demo, alpaca_zh_demo, glaive_toolcall_en_demo"), e.getMessage());
        var hub = assertThrows(ConfigException.class, () -> demo().get("alpaca_en"));
        assertTrue(hub.getMessage().contains("file_name"), hub.getMessage());
    }

    @Test void preferenceDatasetsAreRejectedForSft() {
        var e = assertThrows(ConfigException.class, () -> DatasetLoader.loadConversations(demo(), List.of("dpo_en_demo"), null, 0));
        assertTrue(e.getMessage().contains("dpo_en_demo") && e.getMessage().contains("stage dpo or rm"), e.getMessage());
    }

    @Test void datasetInfoColumnsAndTags() {
        DatasetSpec glaive = demo().get("glaive_toolcall_en_demo");
        assertEquals(DatasetSpec.Formatting.SHAREGPT, glaive.formatting());
        assertEquals("conversations", glaive.columns().messages());
        assertEquals("tools", glaive.columns().tools());
        assertNull(glaive.columns().prompt()); // a "columns" object replaces the defaults, as DatasetAttr.join
        assertEquals(DatasetSpec.Tags.DEFAULT, glaive.tags());
        DatasetSpec kto = demo().get("kto_en_demo");
        assertEquals("role", kto.tags().roleTag());
        assertNull(kto.tags().systemTag());
        assertEquals(DatasetSpec.Columns.DEFAULT, demo().get("identity").columns());
    }

    // --- broken rows ---

    static DatasetInfo oneFile(Path dir, String file, String entry, String content) throws IOException {
        Files.writeString(dir.resolve(file), content);
        Files.writeString(dir.resolve("dataset_info.json"), "{\"d\": {\"file_name\": \"" + file + "\"" + entry + "}}");
        return DatasetInfo.load(dir);
    }

    static FormatException broken(Path dir, String file, String entry, String content) throws IOException {
        DatasetInfo info = oneFile(dir, file, entry, content);
        return assertThrows(FormatException.class, () -> DatasetLoader.loadConversations(info, List.of("d"), null, 0));
    }

    @Test void missingFieldNamesFileRowAndField(@TempDir Path dir) throws IOException {
        var e = broken(dir, "a.json", "", """
                [{"instruction": "x", "output": "y"},
                 {"instruction": "x", "output": "y"},
                 {"instruction": "x", "input": "z"}]""");
        assertTrue(e.getMessage().contains("a.json row 2 (line 3)") && e.getMessage().contains("'output' is missing"), e.getMessage());
    }

    @Test void wrongTypeInJsonl(@TempDir Path dir) throws IOException {
        var e = broken(dir, "a.jsonl", "", "{\"instruction\": \"x\", \"output\": \"y\"}\n\n{\"instruction\": 7, \"output\": \"y\"}\n");
        assertTrue(e.getMessage().contains("a.jsonl row 1 (line 3)") && e.getMessage().contains("'instruction' must be a string, got number"), e.getMessage());
    }

    @Test void malformedJsonlLine(@TempDir Path dir) throws IOException {
        var e = broken(dir, "a.jsonl", "", "{\"instruction\": \"x\", \"output\": \"y\"}\n{\"instruction\": \"x\", \n");
        assertTrue(e.getMessage().contains("a.jsonl row 1 (line 2)") && e.getMessage().contains("malformed JSON"), e.getMessage());
    }

    static final String SHAREGPT = ", \"formatting\": \"sharegpt\"";

    @Test void wrongRoleOrder(@TempDir Path dir) throws IOException {
        var e = broken(dir, "s.json", SHAREGPT, """
                [{"conversations": [{"from": "human", "value": "a"}, {"from": "human", "value": "b"}]}]""");
        assertTrue(e.getMessage().contains("s.json row 0 (line 1)") && e.getMessage().contains("'conversations[1].from' is 'human'"), e.getMessage());
    }

    @Test void oddNumberOfTurns(@TempDir Path dir) throws IOException {
        var e = broken(dir, "s.json", SHAREGPT, """
                [{"conversations": [{"from": "human", "value": "a"}, {"from": "gpt", "value": "b"}]},
                 {"conversations": [{"from": "human", "value": "a"}, {"from": "gpt", "value": "b"}, {"from": "human", "value": "c"}]}]""");
        assertTrue(e.getMessage().contains("s.json row 1 (line 2)") && e.getMessage().contains("'conversations' has 3 turns"), e.getMessage());
    }

    @Test void unknownRoleTagAndMissingContent(@TempDir Path dir) throws IOException {
        var e = broken(dir, "s.json", SHAREGPT, "[{\"conversations\": [{\"from\": \"bot\", \"value\": \"a\"}]}]");
        assertTrue(e.getMessage().contains("'conversations[0].from' is 'bot'"), e.getMessage());
        var m = broken(dir, "s.json", SHAREGPT, "[{\"conversations\": [{\"from\": \"human\"}, {\"from\": \"gpt\", \"value\": \"b\"}]}]");
        assertTrue(m.getMessage().contains("'conversations[0].value' is missing"), m.getMessage());
    }

    @Test void badFunctionCallAndTools(@TempDir Path dir) throws IOException {
        var f = broken(dir, "s.json", SHAREGPT, "[{\"conversations\": [{\"from\": \"human\", \"value\": \"a\"}, {\"from\": \"function_call\", \"value\": \"not json\"}]}]");
        assertTrue(f.getMessage().contains("'conversations[1]' is a function call but not JSON"), f.getMessage());
        var t = broken(dir, "s.json", SHAREGPT + ", \"columns\": {\"messages\": \"conversations\", \"tools\": \"tools\"}",
                "[{\"conversations\": [{\"from\": \"human\", \"value\": \"a\"}, {\"from\": \"gpt\", \"value\": \"b\"}], \"tools\": \"{oops\"}]");
        assertTrue(t.getMessage().contains("field 'tools' is not JSON"), t.getMessage());
    }

    @Test void sharegptSystemTagAndHistory(@TempDir Path dir) throws IOException {
        DatasetInfo s = oneFile(dir, "s.json", SHAREGPT, """
                [{"conversations": [{"from": "system", "value": "S"}, {"from": "human", "value": "a"}, {"from": "gpt", "value": "b"}]}]""");
        assertEquals(Conversation.of("S", "a", "b"), DatasetLoader.loadConversations(s, List.of("d"), null, 0).getFirst());
        DatasetInfo h = oneFile(dir, "h.json", ", \"columns\": {\"prompt\": \"instruction\", \"query\": \"input\", \"response\": \"output\", "
                + "\"system\": \"system\", \"history\": \"history\"}", """
                [{"instruction": "q2", "input": "", "output": "a2", "system": "S", "history": [["q1", "a1"]]}]""");
        assertEquals(Conversation.of("S", "q1", "a1", "q2", "a2"), DatasetLoader.loadConversations(h, List.of("d"), null, 0).getFirst());
    }

    @Test void openAiMessagesWithToolCalls(@TempDir Path dir) throws IOException {
        // LLaMA-Factory's OpenAI layout: role/content tags, a leading system message, tool_calls → function message,
        // consecutive tool results joined into one observation
        DatasetInfo info = oneFile(dir, "o.jsonl", ", \"formatting\": \"openai\", \"columns\": {\"messages\": \"messages\"}, \"tags\": "
                + "{\"role_tag\": \"role\", \"content_tag\": \"content\", \"user_tag\": \"user\", \"assistant_tag\": \"assistant\", "
                + "\"observation_tag\": \"tool\", \"function_tag\": \"function_call\", \"system_tag\": \"system\"}", """
                {"messages": [{"role": "system", "content": "S"}, {"role": "user", "content": "q"}, {"role": "assistant", "content": null, "tool_calls": [{"type": "function", "function": {"name": "f", "arguments": {"x": 1}}}, {"type": "function", "function": {"name": "g", "arguments": {}}}]}, {"role": "tool", "content": "r1"}, {"role": "tool", "content": "r2"}, {"role": "assistant", "content": "done"}]}
                """);
        Conversation c = DatasetLoader.loadConversations(info, List.of("d"), null, 0).getFirst();
        assertEquals("S", c.system());
        assertEquals(List.of(Message.user("q"),
                new Message(Role.FUNCTION, "[{\"name\": \"f\", \"arguments\": {\"x\": 1}}, {\"name\": \"g\", \"arguments\": {}}]"),
                new Message(Role.OBSERVATION, "r1\n</tool_response>\n<tool_response>\nr2"), Message.assistant("done")), c.messages());
    }

    @Test void valSizeSplit() {
        List<Integer> all = java.util.stream.IntStream.range(0, 91).boxed().toList();
        var fraction = DatasetLoader.split(all, 0.1, 42);
        assertEquals(10, fraction.eval().size()); // ceil(0.1 · 91) = ceil(9.1)
        assertEquals(81, fraction.train().size());
        var union = new HashSet<>(fraction.train());
        union.addAll(fraction.eval());
        assertEquals(new HashSet<>(all), union);
        assertEquals(fraction, DatasetLoader.split(all, 0.1, 42));
        assertNotEquals(fraction, DatasetLoader.split(all, 0.1, 43));
        assertEquals(5, DatasetLoader.split(all, 5, 42).eval().size()); // an integer count
        assertEquals(all, DatasetLoader.split(all, 0, 42).train());
        assertThrows(ConfigException.class, () -> DatasetLoader.split(all, 91, 42));
    }
}
