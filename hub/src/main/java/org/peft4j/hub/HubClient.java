package org.peft4j.hub;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import org.peft4j.core.Peft4jException;
import org.peft4j.core.Peft4jException.ConfigException;
import org.peft4j.core.Peft4jException.FormatException;

import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpHeaders;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.channels.FileChannel;
import java.nio.channels.FileLock;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.InvalidPathException;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Objects;
import java.util.regex.Pattern;
import java.util.stream.Stream;

/// Downloads a model repository from the Hugging Face Hub into the huggingface_hub cache, so that Python tools and
/// peft4j share one cache. The protocol and layout follow huggingface_hub's `snapshot_download` / `hf_hub_download`
/// (`_snapshot_download.py`, `file_download.py`); the cache layout is documented in [RepoCache], the byte transfer
/// (resume, checksums) in [Download]. Loading the downloaded files is left to `formats` and `tokenizer`.
public final class HubClient {
    private static final System.Logger LOG = System.getLogger(HubClient.class.getName());

    /// What a causal LM needs for fine-tuning: config, safetensors weights and the tokenizer. Pickled (`*.bin`, `*.pt`),
    /// TensorFlow (`*.h5`) and ONNX weights are never fetched.
    public static final List<String> DEFAULT_ALLOW_PATTERNS = List.of(
            "config.json", "generation_config.json", "*.safetensors", "model.safetensors.index.json",
            "tokenizer.json", "tokenizer.model", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja");

    /// huggingface_hub's `REPO_ID_REGEX` with the org required: `org/name`, word characters, `-` and `.`.
    private static final Pattern REPO_ID = Pattern.compile("^[\\w.-]{1,96}/[\\w.-]{1,96}$");
    private static final Duration HEAD_TIMEOUT = Duration.ofSeconds(10); // huggingface_hub DEFAULT_ETAG_TIMEOUT
    private static final int MAX_REDIRECTS = 10;
    private static final ObjectMapper JSON = new ObjectMapper();

    private final HubConfig config;
    private final HttpClient http;

    public HubClient(HubConfig config) {
        this.config = config;
        // Redirects are followed by hand: HEAD follows only relative ones, GET drops the token when the host changes.
        this.http = HttpClient.newBuilder()
                .version(HttpClient.Version.HTTP_1_1)
                .followRedirects(HttpClient.Redirect.NEVER)
                .connectTimeout(HEAD_TIMEOUT)
                .build();
    }

    public HubConfig config() { return config; }

    /// True for `org/name` that is not an existing local path, i.e. what `--model_name_or_path` should fetch.
    public static boolean looksLikeRepoId(String s) {
        if (s == null || !REPO_ID.matcher(s).matches()) return false;
        if (s.contains("--") || s.contains("..") || s.startsWith(".") || s.startsWith("-") || s.endsWith(".") || s.endsWith("-")) return false;
        try {
            return !Files.exists(Path.of(s));
        } catch (InvalidPathException e) {
            return false;
        }
    }

    /// `snapshot(repoId, "main", DEFAULT_ALLOW_PATTERNS, Progress.NONE)`.
    public Path snapshot(String repoId) { return snapshot(repoId, "main", DEFAULT_ALLOW_PATTERNS, Progress.NONE); }

    /// Makes `snapshots/{commit}` of `repoId` at `revision` hold every file matching `allowPatterns`, downloading
    /// only what the cache lacks, and returns that folder. Offline, or when the Hub cannot be reached, returns the
    /// cached snapshot that `refs/{revision}` points at.
    ///
    /// @param revision      branch, tag or commit hash; null means `main`
    /// @param allowPatterns fnmatch patterns over repo paths; null means [#DEFAULT_ALLOW_PATTERNS]
    /// @param progress      called per file as bytes arrive; null means none
    public Path snapshot(String repoId, String revision, List<String> allowPatterns, Progress progress) {
        if (repoId == null || !REPO_ID.matcher(repoId).matches())
            throw new ConfigException("'" + repoId + "' is not a Hub repo id of the form org/name (letters, digits, '-', '_', '.'); "
                    + "give an existing local folder or a repo id such as meta-llama/Llama-3.2-1B.");
        String rev = revision == null || revision.isBlank() ? "main" : revision;
        if (rev.startsWith("/") || rev.contains("\\") || Stream.of(rev.split("/", -1)).anyMatch(p -> p.isEmpty() || p.equals(".") || p.equals("..")))
            throw new ConfigException("Revision '" + rev + "' is not a branch, tag or commit name; give one such as main, v1.0 or refs/pr/1.");
        List<String> patterns = allowPatterns == null ? DEFAULT_ALLOW_PATTERNS : allowPatterns;
        Progress bar = progress == null ? Progress.NONE : progress;
        RepoCache cache = new RepoCache(config.cacheDir(), repoId);
        if (config.offline()) return cached(cache, repoId, rev, patterns, "HF_HUB_OFFLINE is set", null);

        RepoInfo info;
        try {
            info = repoInfo(repoId, rev);
        } catch (Unreachable e) {
            // As huggingface_hub: without a connection, a cached snapshot of this revision is good enough.
            Path snap = cached(cache, repoId, rev, patterns, "the Hub at " + config.endpoint() + " cannot be reached", e);
            LOG.log(System.Logger.Level.WARNING, "Hub unreachable ({0}); using cached snapshot {1}", e.getMessage(), snap);
            return snap;
        }
        RepoCache.checkCommit(info.commit, "the revision listing of '" + repoId + "'@" + rev);
        List<String> files = new ArrayList<>();
        for (String f : info.files) if (Glob.matchesAny(f, patterns)) files.add(RepoCache.checkRepoPath(repoId, f));
        if (files.isEmpty())
            throw new ConfigException("No file of '" + repoId + "'@" + rev + " matches " + patterns + " (it has " + preview(info.files)
                    + "); is it a model repo with safetensors weights? Pass other allow patterns or convert the checkpoint.");
        try {
            cache.writeRef(rev, info.commit);
            for (String f : files) file(cache, repoId, info.commit, f, bar);
        } catch (IOException e) {
            throw new UncheckedIOException("Cannot write the Hub cache under " + cache.storage + ": " + e.getMessage()
                    + "; check free space and permissions, or set HF_HUB_CACHE to a writable folder.", e);
        }
        return cache.snapshot(info.commit);
    }

    // ---- step 1: which commit, which files -------------------------------------------------------------------

    private record RepoInfo(String commit, List<String> files) { }

    /// `GET {endpoint}/api/models/{repo_id}/revision/{revision}` → `sha` and `siblings[].rfilename`.
    private RepoInfo repoInfo(String repoId, String revision) throws Unreachable {
        URI uri = URI.create(config.endpoint() + "/api/models/" + repoId + "/revision/" + encode(revision, false));
        HttpResponse<InputStream> r = send(request(uri, true).GET().build(), "the file list of '" + repoId + "'@" + revision);
        for (int hop = 0; hop < MAX_REDIRECTS && r.statusCode() >= 300 && r.statusCode() < 400 && r.headers().firstValue("Location").isPresent(); hop++) {
            closeQuietly(r.body()); // a renamed repo: follow, with the token only while on the endpoint's host
            uri = uri.resolve(r.headers().firstValue("Location").get());
            r = send(request(uri, sameOrigin(uri, URI.create(config.endpoint()))).GET().build(), "the file list of '" + repoId + "'@" + revision);
        }
        try (InputStream body = r.body()) {
            if (r.statusCode() != 200) throw httpError(r.statusCode(), r.headers(), body, repoId, revision, null, uri);
            JsonNode root = JSON.readTree(body);
            JsonNode siblings = root.path("siblings");
            if (!root.path("sha").isTextual() || !siblings.isArray())
                throw new FormatException("The Hub's answer for " + uri + " has no 'sha' and 'siblings'; check HF_ENDPOINT points at a Hugging Face Hub.");
            List<String> files = new ArrayList<>();
            for (JsonNode s : siblings) files.add(s.path("rfilename").asText());
            return new RepoInfo(root.get("sha").asText(), files);
        } catch (IOException e) {
            throw new FormatException("Cannot read the Hub's answer for " + uri + ": " + e.getMessage() + "; check HF_ENDPOINT points at a Hugging Face Hub.", e);
        }
    }

    // ---- step 2: one file ------------------------------------------------------------------------------------

    /// What a HEAD on `resolve/` says about one file. Reference: huggingface_hub `get_hf_file_metadata`.
    /// @param location where to GET it: the CDN URL of an LFS redirect, else the resolve URL
    /// @param size     bytes, from `X-Linked-Size`, else `Content-Length` of a non-redirect
    record FileMetadata(String commit, String etag, long size, URI location) { }

    /// `hf_hub_download` with a commit revision: an existing pointer is returned without asking the network.
    private void file(RepoCache cache, String repoId, String commit, String filename, Progress bar) throws IOException {
        Path pointer = cache.pointer(commit, filename);
        if (Files.exists(pointer)) return; // follows the symlink: a dangling one is downloaded again
        FileMetadata meta = head(repoId, commit, filename);
        Path blob = cache.blob(meta.etag);
        if (!Files.exists(blob)) {
            Files.createDirectories(blob.getParent());
            Files.createDirectories(cache.locks);
            // Two processes downloading one blob would both append to its .incomplete: take the per-etag lock.
            try (FileChannel lockFile = FileChannel.open(cache.lock(meta.etag), StandardOpenOption.CREATE, StandardOpenOption.WRITE);
                 FileLock ignored = lockFile.lock()) {
                if (!Files.exists(blob)) {
                    LOG.log(System.Logger.Level.INFO, "Downloading {0}/{1} ({2} bytes)", repoId, filename, meta.size);
                    new Download(this, repoId, commit, filename, meta, cache.incomplete(meta.etag), bar).run();
                    RepoCache.move(cache.incomplete(meta.etag), blob);
                }
            }
        }
        RepoCache.link(blob, pointer);
    }

    /// HEAD `{endpoint}/{repo_id}/resolve/{commit}/{filename}` with `Accept-Encoding: identity` (the real size),
    /// following relative redirects (a renamed repo) but not absolute ones (the LFS CDN).
    private FileMetadata head(String repoId, String commit, String filename) {
        URI uri = URI.create(config.endpoint() + "/" + repoId + "/resolve/" + encode(commit, false) + "/" + encode(filename, true));
        String what = "'" + filename + "' of '" + repoId + "'@" + commit;
        for (int hop = 0; ; hop++) {
            HttpRequest req = request(uri, true).method("HEAD", HttpRequest.BodyPublishers.noBody())
                    .header("Accept-Encoding", "identity").timeout(HEAD_TIMEOUT).build();
            HttpResponse<InputStream> r;
            try {
                r = send(req, what);
            } catch (Unreachable e) {
                throw e.toException();
            }
            closeQuietly(r.body());
            int status = r.statusCode();
            HttpHeaders h = r.headers();
            boolean redirect = status >= 300 && status < 400;
            if (redirect) {
                String location = h.firstValue("Location").orElse(null);
                if (location == null)
                    throw new FormatException("The Hub redirected HEAD " + uri + " (HTTP " + status + ") without a Location; check HF_ENDPOINT.");
                URI target = uri.resolve(location);
                if (URI.create(location).getHost() == null && hop < MAX_REDIRECTS) { uri = target; continue; }
                return metadata(h, true, target, what);
            }
            if (status != 200) throw httpError(status, h, null, repoId, commit, filename, uri);
            return metadata(h, false, uri, what);
        }
    }

    private static FileMetadata metadata(HttpHeaders h, boolean redirect, URI location, String what) {
        String commit = h.firstValue("X-Repo-Commit").orElse(null);
        if (commit == null)
            throw new FormatException("The answer for " + what + " has no X-Repo-Commit header, so " + location.getHost()
                    + " does not look like a Hugging Face Hub; check HF_ENDPOINT and any proxy or firewall in between.");
        String etag = h.firstValue("X-Linked-Etag").or(() -> h.firstValue("ETag")).map(HubClient::normalizeEtag).orElseThrow(() ->
                new FormatException("The Hub sent no ETag for " + what + ", so its download cannot be named or verified; check HF_ENDPOINT."));
        String size = h.firstValue("X-Linked-Size").orElse(redirect ? null : h.firstValue("Content-Length").orElse(null));
        if (size == null)
            throw new FormatException("The Hub sent no X-Linked-Size or Content-Length for " + what + "; check HF_ENDPOINT.");
        long bytes;
        try {
            bytes = Long.parseLong(size.strip());
        } catch (NumberFormatException e) {
            throw new FormatException("The Hub sent size '" + size + "' for " + what + ", not a number; check HF_ENDPOINT.");
        }
        return new FileMetadata(commit, RepoCache.checkEtag(etag, what), bytes, location);
    }

    /// `W/"abc"` and `"abc"` both become `abc` (huggingface_hub `_normalize_etag`).
    static String normalizeEtag(String etag) {
        String e = etag.strip();
        if (e.startsWith("W/")) e = e.substring(2);
        if (e.length() >= 2 && e.startsWith("\"") && e.endsWith("\"")) e = e.substring(1, e.length() - 1);
        return e;
    }

    // ---- offline: the cache alone ----------------------------------------------------------------------------

    private Path cached(RepoCache cache, String repoId, String revision, List<String> patterns, String why, Unreachable cause) {
        String how = cause == null
                ? "download it once with network access (unset HF_HUB_OFFLINE), or point HF_HUB_CACHE/HF_HOME at a cache that holds it."
                : "check the network or proxy, set HF_ENDPOINT to a reachable Hub mirror, or set HF_HUB_OFFLINE=1 with a cache that holds it (HF_HUB_CACHE/HF_HOME).";
        String prefix = why + (cause == null ? "" : " (" + cause.getMessage() + ")") + ", and ";
        String commit = cache.readRef(revision);
        if (commit == null)
            throw missing(prefix + "'" + repoId + "'@" + revision + " is not in the cache: " + cache.ref(revision) + " does not exist; " + how, cause);
        Path snap = cache.snapshot(commit);
        if (!Files.isDirectory(snap))
            throw missing(prefix + "the cached " + cache.ref(revision) + " names commit " + commit + " but " + snap + " does not exist; " + how, cause);
        List<String> broken = new ArrayList<>();
        int present = 0;
        try (Stream<Path> walk = Files.walk(snap)) {
            for (Path p : (Iterable<Path>) walk::iterator) {
                if (Files.isDirectory(p)) continue;
                String rel = snap.relativize(p).toString().replace('\\', '/');
                if (!Glob.matchesAny(rel, patterns)) continue;
                if (Files.isRegularFile(p)) present++; else broken.add(rel);
            }
        } catch (IOException e) {
            throw new UncheckedIOException("Cannot list the cached snapshot " + snap, e);
        }
        if (!broken.isEmpty())
            throw missing(prefix + "the cached snapshot " + snap + " has links to missing blobs: " + broken + "; " + how, cause);
        if (present == 0)
            throw missing(prefix + "the cached snapshot " + snap + " holds no file matching " + patterns + "; " + how, cause);
        return snap;
    }

    private static Peft4jException missing(String message, Unreachable cause) {
        return cause == null ? new Peft4jException(message) : new Peft4jException(message, cause);
    }

    // ---- HTTP ------------------------------------------------------------------------------------------------

    /// Thrown where the endpoint cannot be reached at all (DNS, refused, timeout): the one failure that may fall back
    /// to the cache. Checked, so every caller decides.
    static final class Unreachable extends Exception {
        final URI uri;
        final String what;

        Unreachable(URI uri, String what, IOException cause) {
            super(cause.getClass().getSimpleName() + (cause.getMessage() == null ? "" : ": " + cause.getMessage()), cause);
            this.uri = uri;
            this.what = what;
        }

        Peft4jException toException() {
            return new Peft4jException("Cannot reach " + uri.getScheme() + "://" + uri.getAuthority() + " to fetch " + what + " (" + getMessage()
                    + "); check the network or proxy, set HF_ENDPOINT to a reachable Hub mirror, or set HF_HUB_OFFLINE=1 to use a cached copy.", this);
        }
    }

    /// A request with our headers; `auth` adds `Authorization: Bearer` when a token is configured.
    HttpRequest.Builder request(URI uri, boolean auth) {
        HttpRequest.Builder b = HttpRequest.newBuilder(uri).header("User-Agent", "peft4j-hub/0.1 (huggingface_hub-compatible)");
        if (auth && config.token() != null) b.header("Authorization", "Bearer " + config.token());
        return b;
    }

    HttpResponse<InputStream> send(HttpRequest req, String what) throws Unreachable {
        try {
            return http.send(req, HttpResponse.BodyHandlers.ofInputStream());
        } catch (IOException e) {
            throw new Unreachable(req.uri(), what, e);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new Peft4jException("Interrupted while fetching " + what + " from " + req.uri() + "; run again to resume.", e);
        }
    }

    /// The Hub's error statuses, refined by its `X-Error-Code` header as huggingface_hub's `hf_raise_for_status` does.
    Peft4jException httpError(int status, HttpHeaders h, InputStream body, String repoId, String revision, String filename, URI uri) {
        String code = h.firstValue("X-Error-Code").orElse("");
        String detail = h.firstValue("X-Error-Message").orElseGet(() -> snippet(body));
        String tail = " (HTTP " + status + (code.isEmpty() ? "" : ", " + code) + (detail.isEmpty() ? "" : ": " + detail) + ", " + uri + ")";
        String tokenState = config.token() == null
                ? "no token was sent; set HF_TOKEN (or save one to $HF_HOME/token with `hf auth login`)"
                : "the token from HF_TOKEN / $HF_HOME/token was sent; check it is valid and has read access";
        String repo = "'" + repoId + "'";
        if (code.equals("GatedRepo") || status == 403)
            return new ConfigException("Access to " + repo + " is restricted (gated or private)" + tail + "; accept its terms at "
                    + config.endpoint() + "/" + repoId + " and " + tokenState + ".");
        if (code.equals("RepoNotFound") || status == 401)
            return new ConfigException("Repository " + repo + " was not found or needs authentication" + tail + "; check the repo id, and if it is private or gated, "
                    + tokenState + ".");
        if (code.equals("RevisionNotFound"))
            return new ConfigException("Revision '" + revision + "' does not exist in " + repo + tail + "; check the branch, tag or commit (default: main).");
        if (code.equals("EntryNotFound"))
            return new ConfigException("File '" + filename + "' does not exist in " + repo + "@" + revision + tail + "; the repo changed while downloading, run again.");
        if (status == 404)
            return new ConfigException("Repository " + repo + " or its revision '" + revision + "' was not found" + tail
                    + "; check the repo id and revision, and HF_ENDPOINT (" + config.endpoint() + ").");
        if (status == 429 || status >= 500)
            return new Peft4jException("The Hub is unavailable or rate-limiting" + tail + "; try again later, or set HF_HUB_OFFLINE=1 to use a cached copy.");
        return new Peft4jException("The Hub refused the request" + tail + "; check HF_ENDPOINT (" + config.endpoint() + ") and HF_TOKEN.");
    }

    static boolean sameOrigin(URI a, URI b) {
        return Objects.equals(a.getScheme(), b.getScheme()) && Objects.equals(a.getHost(), b.getHost()) && port(a) == port(b);
    }

    private static int port(URI u) {
        return u.getPort() != -1 ? u.getPort() : "https".equals(u.getScheme()) ? 443 : 80;
    }

    private static String snippet(InputStream body) {
        if (body == null) return "";
        try (body) {
            String s = new String(body.readNBytes(300), StandardCharsets.UTF_8).strip();
            // The Hub answers errors with {"error": "..."}; show the message itself when it does.
            try {
                JsonNode n = JSON.readTree(s);
                if (n != null && n.path("error").isTextual()) return n.get("error").asText();
            } catch (IOException notJson) { /* plain text */ }
            return s.replaceAll("\\s+", " ");
        } catch (IOException e) {
            return "";
        }
    }

    static void closeQuietly(InputStream in) {
        try { in.close(); } catch (IOException ignored) { }
    }

    /// Python's `urllib.parse.quote`: keep unreserved characters (and `/` when `keepSlash`), percent-encode UTF-8 bytes.
    static String encode(String s, boolean keepSlash) {
        StringBuilder out = new StringBuilder();
        for (byte b : s.getBytes(StandardCharsets.UTF_8)) {
            int c = b & 0xff;
            if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.' || c == '~'
                    || (keepSlash && c == '/')) out.append((char) c);
            else out.append('%').append(Character.toUpperCase(Character.forDigit(c >> 4, 16))).append(Character.toUpperCase(Character.forDigit(c & 15, 16)));
        }
        return out.toString();
    }

    private static String preview(List<String> files) {
        return files.size() <= 8 ? files.toString() : files.subList(0, 8) + " and " + (files.size() - 8) + " more";
    }
}
