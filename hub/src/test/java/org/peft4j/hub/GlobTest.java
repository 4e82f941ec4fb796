package org.peft4j.hub;

import org.junit.jupiter.api.Test;

import java.util.List;

import static org.junit.jupiter.api.Assertions.*;

/// Allow patterns behave as Python's `fnmatch.fnmatchcase` in huggingface_hub's `filter_repo_objects`;
/// each expectation below is what `fnmatch.fnmatchcase(path, pattern)` returns.
class GlobTest {
    @Test
    void fnmatchSemantics() {
        assertTrue(Glob.matchesAny("model-00001-of-00002.safetensors", List.of("*.safetensors")));
        assertTrue(Glob.matchesAny("sub/dir/x.safetensors", List.of("*.safetensors")), "* crosses /");
        assertFalse(Glob.matchesAny("sub/config.json", List.of("config.json")));
        assertFalse(Glob.matchesAny("model.safetensors.index.json", List.of("*.safetensors")));
        assertTrue(Glob.matchesAny("original/params.json", List.of("original/")), "a trailing / means the folder");
        assertTrue(Glob.matchesAny("a1.txt", List.of("a?.txt")));
        assertTrue(Glob.matchesAny("b.txt", List.of("[!a].txt")));
        assertFalse(Glob.matchesAny("a.txt", List.of("[!a].txt")));
        assertTrue(Glob.matchesAny("c.txt", List.of("[a-c].txt")));
        assertFalse(Glob.matchesAny("Config.json", List.of("config.json")), "case-sensitive");
        assertTrue(Glob.matchesAny("x(1)+.json", List.of("x(1)+.json")), "regex characters are literal");
        assertFalse(Glob.matchesAny("pytorch_model.bin", HubClient.DEFAULT_ALLOW_PATTERNS));
        assertTrue(Glob.matchesAny("tokenizer.model", HubClient.DEFAULT_ALLOW_PATTERNS));
    }

    @Test
    void looksLikeRepoId() {
        assertTrue(HubClient.looksLikeRepoId("meta-llama/Llama-3.2-1B"));
        assertTrue(HubClient.looksLikeRepoId("Qwen/Qwen2.5-0.5B-Instruct"));
        assertFalse(HubClient.looksLikeRepoId("src/test"), "an existing local folder (the module's own) is a path");
        assertFalse(HubClient.looksLikeRepoId("gpt2"));
        assertFalse(HubClient.looksLikeRepoId("a/b/c"));
        assertFalse(HubClient.looksLikeRepoId("/abs/path"));
        assertFalse(HubClient.looksLikeRepoId("../up"));
        assertFalse(HubClient.looksLikeRepoId("org/na--me"));
        assertFalse(HubClient.looksLikeRepoId("org/"));
        assertFalse(HubClient.looksLikeRepoId(null));
    }
}
