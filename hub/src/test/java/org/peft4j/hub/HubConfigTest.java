package org.peft4j.hub;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.peft4j.core.Peft4jException.ConfigException;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.*;

/// The environment resolution of huggingface_hub `constants.py`, over injected environments.
class HubConfigTest {
    @TempDir Path home;

    @Test
    void defaultsFollowHuggingfaceHub() {
        HubConfig c = HubConfig.fromEnvironment(Map.of(), home);
        assertEquals("https://huggingface.co", c.endpoint());
        assertEquals(home.resolve(".cache/huggingface/hub"), c.cacheDir());
        assertNull(c.token());
        assertFalse(c.offline());
        assertEquals(Path.of("/x/huggingface/hub"), HubConfig.fromEnvironment(Map.of("XDG_CACHE_HOME", "/x"), home).cacheDir());
    }

    @Test
    void hfHomeHubCacheEndpointAndOffline() {
        var env = Map.of("HF_HOME", "/data/hf", "HF_ENDPOINT", "http://mirror.local:8080/", "HF_HUB_OFFLINE", "1");
        HubConfig c = HubConfig.fromEnvironment(env, home);
        assertEquals("http://mirror.local:8080", c.endpoint(), "trailing slash stripped");
        assertEquals(Path.of("/data/hf/hub"), c.cacheDir());
        assertTrue(c.offline());
        assertEquals(Path.of("/cache"), HubConfig.fromEnvironment(Map.of("HF_HOME", "/data/hf", "HF_HUB_CACHE", "/cache"), home).cacheDir());
        assertEquals(home.resolve("c"), HubConfig.fromEnvironment(Map.of("HF_HUB_CACHE", "~/c"), home).cacheDir());
        for (String on : new String[]{"1", "true", "YES", "On"}) assertTrue(HubConfig.fromEnvironment(Map.of("HF_HUB_OFFLINE", on), home).offline(), on);
        for (String off : new String[]{"0", "false", "no", ""}) assertFalse(HubConfig.fromEnvironment(Map.of("HF_HUB_OFFLINE", off), home).offline(), off);
    }

    @Test
    void tokenFromEnvironmentThenTokenFile() throws IOException {
        Path hfHome = Files.createDirectories(home.resolve("hf"));
        assertNull(HubConfig.fromEnvironment(Map.of("HF_HOME", hfHome.toString()), home).token());
        Files.writeString(hfHome.resolve("token"), "hf_fromfile\n");
        assertEquals("hf_fromfile", HubConfig.fromEnvironment(Map.of("HF_HOME", hfHome.toString()), home).token());
        assertEquals("hf_env", HubConfig.fromEnvironment(Map.of("HF_HOME", hfHome.toString(), "HF_TOKEN", "hf_env"), home).token());
        assertFalse(new HubConfig("https://huggingface.co", "hf_secret", home, false).toString().contains("hf_secret"), "never print the token");
    }

    @Test
    void badEndpointSaysWhatToSet() {
        var e = assertThrows(ConfigException.class, () -> HubConfig.fromEnvironment(Map.of("HF_ENDPOINT", "huggingface.co"), home));
        assertTrue(e.getMessage().contains("HF_ENDPOINT") && e.getMessage().contains("huggingface.co"), e.getMessage());
    }
}
