package org.peft4j.hub;

import org.peft4j.core.Peft4jException.ConfigException;

import java.io.IOException;
import java.net.URI;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Locale;
import java.util.Map;
import java.util.Set;

/// Where the Hub is and where its files are cached: the one place the `HF_*` environment is read.
/// Reference: huggingface_hub `constants.py` (HF_ENDPOINT, HF_HOME, HF_HUB_CACHE, HF_TOKEN_PATH, HF_HUB_OFFLINE).
///
/// @param endpoint base URL without a trailing slash, e.g. `https://huggingface.co`
/// @param token    bearer token, or null for anonymous access
/// @param cacheDir the hub cache, holding `models--{org}--{name}` folders
/// @param offline  true: never touch the network, resolve from `cacheDir` only
public record HubConfig(String endpoint, String token, Path cacheDir, boolean offline) {
    public static final String DEFAULT_ENDPOINT = "https://huggingface.co";

    /// huggingface_hub's `ENV_VARS_TRUE_VALUES`, compared upper-cased.
    private static final Set<String> TRUE_VALUES = Set.of("1", "ON", "YES", "TRUE");

    public HubConfig {
        if (endpoint == null || endpoint.isBlank())
            throw new ConfigException("Hub endpoint is empty; set HF_ENDPOINT to a URL such as " + DEFAULT_ENDPOINT + " or unset it.");
        while (endpoint.endsWith("/")) endpoint = endpoint.substring(0, endpoint.length() - 1);
        URI uri;
        try {
            uri = URI.create(endpoint);
        } catch (IllegalArgumentException e) {
            throw new ConfigException("Hub endpoint '" + endpoint + "' is not a URL; set HF_ENDPOINT to a URL such as " + DEFAULT_ENDPOINT + ".", e);
        }
        if (!("http".equals(uri.getScheme()) || "https".equals(uri.getScheme())) || uri.getHost() == null)
            throw new ConfigException("Hub endpoint '" + endpoint + "' must be an http(s) URL with a host; set HF_ENDPOINT to a URL such as " + DEFAULT_ENDPOINT + ".");
        if (token != null && token.isBlank()) token = null;
        if (token != null) token = token.strip();
        if (cacheDir == null) throw new ConfigException("Hub cache folder is null; set HF_HUB_CACHE or HF_HOME.");
    }

    /// Reads the process environment, as huggingface_hub does at import time.
    public static HubConfig fromEnvironment() {
        return fromEnvironment(System.getenv(), Path.of(System.getProperty("user.home")));
    }

    /// The same resolution over an explicit environment and home folder, so it can be tested.
    /// - endpoint: `HF_ENDPOINT`, else https://huggingface.co
    /// - HF_HOME: `HF_HOME`, else `$XDG_CACHE_HOME/huggingface`, else `~/.cache/huggingface`
    /// - cache: `HF_HUB_CACHE`, else legacy `HUGGINGFACE_HUB_CACHE`, else `$HF_HOME/hub`
    /// - token: `HF_TOKEN`, else the file `HF_TOKEN_PATH` (default `$HF_HOME/token`), if it exists
    /// - offline: `HF_HUB_OFFLINE` (or legacy `TRANSFORMERS_OFFLINE`) is 1/ON/YES/TRUE
    public static HubConfig fromEnvironment(Map<String, String> env, Path home) {
        String endpoint = nonEmpty(env.get("HF_ENDPOINT"));
        Path hfHome = path(nonEmpty(env.get("HF_HOME")), home);
        if (hfHome == null) {
            Path xdg = path(nonEmpty(env.get("XDG_CACHE_HOME")), home);
            hfHome = (xdg != null ? xdg : home.resolve(".cache")).resolve("huggingface");
        }
        Path cache = path(nonEmpty(env.get("HF_HUB_CACHE")), home);
        if (cache == null) cache = path(nonEmpty(env.get("HUGGINGFACE_HUB_CACHE")), home);
        if (cache == null) cache = hfHome.resolve("hub");

        String token = nonEmpty(env.get("HF_TOKEN"));
        if (token == null) {
            Path tokenPath = path(nonEmpty(env.get("HF_TOKEN_PATH")), home);
            if (tokenPath == null) tokenPath = hfHome.resolve("token");
            token = readToken(tokenPath);
        }
        String offline = nonEmpty(env.get("HF_HUB_OFFLINE"));
        if (offline == null) offline = nonEmpty(env.get("TRANSFORMERS_OFFLINE"));
        boolean isOffline = offline != null && TRUE_VALUES.contains(offline.strip().toUpperCase(Locale.ROOT));
        return new HubConfig(endpoint != null ? endpoint : DEFAULT_ENDPOINT, token, cache, isOffline);
    }

    /// The same endpoint and cache with another offline flag.
    public HubConfig withOffline(boolean offline) { return new HubConfig(endpoint, token, cacheDir, offline); }

    @Override
    public String toString() {
        // Never print the token itself: resolved configs are logged and saved.
        return "HubConfig[endpoint=" + endpoint + ", token=" + (token == null ? "none" : "set") + ", cacheDir=" + cacheDir + ", offline=" + offline + "]";
    }

    private static String readToken(Path tokenPath) {
        if (!Files.isRegularFile(tokenPath)) return null;
        try {
            return nonEmpty(Files.readString(tokenPath, StandardCharsets.UTF_8).strip());
        } catch (IOException e) {
            throw new ConfigException("Cannot read the Hub token file " + tokenPath + " (" + e.getMessage() + "); fix its permissions, delete it, or set HF_TOKEN.", e);
        }
    }

    private static String nonEmpty(String s) { return s == null || s.isBlank() ? null : s; }

    /// `~` expansion as in `os.path.expanduser`; `$VAR` expansion is left to the shell.
    private static Path path(String s, Path home) {
        if (s == null) return null;
        if (s.equals("~")) return home;
        if (s.startsWith("~/")) return home.resolve(s.substring(2));
        return Path.of(s);
    }
}
