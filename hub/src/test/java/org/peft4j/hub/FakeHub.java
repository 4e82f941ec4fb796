package org.peft4j.hub;

import com.sun.net.httpserver.Headers;
import com.sun.net.httpserver.HttpExchange;
import com.sun.net.httpserver.HttpServer;

import java.io.IOException;
import java.io.OutputStream;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/// A Hugging Face Hub on the loopback serving one model folder, answering as huggingface.co does:
/// - `GET /api/models/{repo}/revision/{rev}` → `{"sha", "siblings": [{"rfilename"}]}`
/// - `HEAD|GET /{repo}/resolve/{rev}/{file}`: plain files with a git-sha1 `ETag`; LFS files as a 302 to the CDN
///   with `X-Linked-Etag` (sha256) and `X-Linked-Size`; every answer carries `X-Repo-Commit`
/// - the CDN, a second server (another origin, as cdn-lfs.hf.co is): `GET /cdn/{sha256}`
/// - `Range: bytes=N-` answered with 206; a required token answered with 401 `X-Error-Code: RepoNotFound`
/// Every request is recorded so tests can count downloads.
final class FakeHub implements AutoCloseable {
    record Request(String server, String method, String path, String range, String authorization) { }

    final String repoId;
    final String commit;
    final Map<String, byte[]> files = new LinkedHashMap<>();
    final Set<String> lfs = new HashSet<>();
    final List<Request> log = new CopyOnWriteArrayList<>();
    volatile String requiredToken;          // null: public repo
    volatile boolean ignoreRange;           // answer Range requests with the whole file (200), as some proxies do
    final Set<String> corrupt = new HashSet<>(); // files whose bytes are served with one byte flipped
    volatile int dropOnceAfter = -1;        // > 0: the next body announces its full length, sends this many bytes, and hangs up

    private final HttpServer hub;
    private final HttpServer cdn;

    FakeHub(String repoId, String commit, Path folder, Set<String> lfsFiles) throws IOException {
        this.repoId = repoId;
        this.commit = commit;
        try (var walk = Files.walk(folder)) {
            for (Path p : walk.filter(Files::isRegularFile).sorted().toList())
                files.put(folder.relativize(p).toString().replace('\\', '/'), Files.readAllBytes(p));
        }
        lfs.addAll(lfsFiles);
        hub = HttpServer.create(new InetSocketAddress(InetAddress.getLoopbackAddress(), 0), 0);
        cdn = HttpServer.create(new InetSocketAddress(InetAddress.getLoopbackAddress(), 0), 0);
        hub.createContext("/", this::hub);
        cdn.createContext("/", this::cdn);
        hub.start();
        cdn.start();
    }

    String endpoint() { return "http://127.0.0.1:" + hub.getAddress().getPort(); }

    List<Request> requests(String server) { return log.stream().filter(r -> r.server.equals(server)).toList(); }

    /// Requests that move file bytes or ask for file metadata: everything but the repo listing.
    List<Request> fileRequests() { return log.stream().filter(r -> !r.path.startsWith("/api/")).toList(); }

    static String sha256(byte[] b) { return hex("SHA-256", new byte[0], b); }

    static String gitSha1(byte[] b) { return hex("SHA-1", ("blob " + b.length + "\0").getBytes(StandardCharsets.US_ASCII), b); }

    @Override
    public void close() {
        hub.stop(0);
        cdn.stop(0);
    }

    // ---- handlers -------------------------------------------------------------------------------------------

    private static final Pattern API = Pattern.compile("^/api/models/([^/]+/[^/]+)/revision/([^/]+)$");
    private static final Pattern RESOLVE = Pattern.compile("^/([^/]+/[^/]+)/resolve/([^/]+)/(.+)$");

    private void hub(HttpExchange x) throws IOException {
        try (x) {
            record(x, "hub");
            String path = x.getRequestURI().getPath();
            Headers out = x.getResponseHeaders();
            out.set("X-Repo-Commit", commit);
            if (requiredToken != null && !("Bearer " + requiredToken).equals(x.getRequestHeaders().getFirst("Authorization"))) {
                out.set("X-Error-Code", "RepoNotFound");
                out.set("X-Error-Message", "Invalid username or password.");
                send(x, 401, "{\"error\":\"Invalid username or password.\"}".getBytes(StandardCharsets.UTF_8));
                return;
            }
            Matcher api = API.matcher(path);
            Matcher resolve = RESOLVE.matcher(path);
            String repo = api.matches() ? api.group(1) : resolve.matches() ? resolve.group(1) : null;
            String rev = api.matches() ? api.group(2) : resolve.matches() ? resolve.group(2) : null;
            if (repo == null || !repo.equals(repoId)) {
                out.set("X-Error-Code", "RepoNotFound");
                send(x, 404, "{\"error\":\"Repository not found\"}".getBytes(StandardCharsets.UTF_8));
                return;
            }
            if (!rev.equals("main") && !rev.equals(commit)) {
                out.set("X-Error-Code", "RevisionNotFound");
                send(x, 404, ("{\"error\":\"Invalid rev id: " + rev + "\"}").getBytes(StandardCharsets.UTF_8));
                return;
            }
            if (api.matches()) {
                StringBuilder json = new StringBuilder("{\"id\":\"" + repoId + "\",\"sha\":\"" + commit + "\",\"siblings\":[");
                List<String> names = new ArrayList<>(files.keySet());
                for (int i = 0; i < names.size(); i++) json.append(i == 0 ? "" : ",").append("{\"rfilename\":\"").append(names.get(i)).append("\"}");
                out.set("Content-Type", "application/json");
                send(x, 200, json.append("]}").toString().getBytes(StandardCharsets.UTF_8));
                return;
            }
            String file = resolve.group(3);
            byte[] bytes = files.get(file);
            if (bytes == null) {
                out.set("X-Error-Code", "EntryNotFound");
                send(x, 404, "{\"error\":\"Entry not found\"}".getBytes(StandardCharsets.UTF_8));
                return;
            }
            if (lfs.contains(file)) {
                // The real Hub: ETag is the pointer file's git id, X-Linked-Etag the LFS object's sha256.
                String sha = sha256(bytes);
                out.set("ETag", "\"" + gitSha1(("version https://git-lfs.github.com/spec/v1\noid sha256:" + sha + "\n").getBytes(StandardCharsets.UTF_8)) + "\"");
                out.set("X-Linked-Etag", "\"" + sha + "\"");
                out.set("X-Linked-Size", Long.toString(bytes.length));
                out.set("Location", "http://127.0.0.1:" + cdn.getAddress().getPort() + "/cdn/" + sha + "?file=" + file);
                send(x, 302, new byte[0]);
                return;
            }
            out.set("ETag", "\"" + gitSha1(bytes) + "\"");
            serveBytes(x, file, bytes);
        }
    }

    private void cdn(HttpExchange x) throws IOException {
        try (x) {
            record(x, "cdn");
            String query = x.getRequestURI().getQuery();
            String file = query == null ? "" : query.replaceFirst("^file=", "");
            byte[] bytes = files.get(file);
            if (bytes == null || !x.getRequestURI().getPath().equals("/cdn/" + sha256(bytes))) {
                send(x, 404, new byte[0]);
                return;
            }
            serveBytes(x, file, bytes);
        }
    }

    private void serveBytes(HttpExchange x, String file, byte[] bytes) throws IOException {
        if (corrupt.contains(file)) {
            bytes = bytes.clone();
            bytes[bytes.length / 2] ^= 0x5a;
        }
        String range = x.getRequestHeaders().getFirst("Range");
        int from = 0;
        if (range != null && !ignoreRange) {
            Matcher m = Pattern.compile("^bytes=(\\d+)-$").matcher(range);
            if (!m.matches() || Integer.parseInt(m.group(1)) >= bytes.length) {
                x.getResponseHeaders().set("Content-Range", "bytes */" + bytes.length);
                send(x, 416, new byte[0]);
                return;
            }
            from = Integer.parseInt(m.group(1));
            x.getResponseHeaders().set("Content-Range", "bytes " + from + "-" + (bytes.length - 1) + "/" + bytes.length);
        }
        byte[] body = java.util.Arrays.copyOfRange(bytes, from, bytes.length);
        int drop = dropOnceAfter;
        if (drop > 0 && drop < body.length && !x.getRequestMethod().equals("HEAD")) {
            dropOnceAfter = -1;
            x.sendResponseHeaders(from > 0 ? 206 : 200, body.length);
            x.getResponseBody().write(body, 0, drop);
            x.getResponseBody().flush();
            throw new IOException("FakeHub: connection dropped after " + drop + " bytes, as asked"); // the server closes the socket
        }
        send(x, from > 0 ? 206 : 200, body);
    }

    private static void send(HttpExchange x, int status, byte[] body) throws IOException {
        if (x.getRequestMethod().equals("HEAD")) {
            x.getResponseHeaders().set("Content-Length", Integer.toString(body.length));
            x.sendResponseHeaders(status, -1);
            return;
        }
        x.sendResponseHeaders(status, body.length == 0 ? -1 : body.length);
        try (OutputStream os = x.getResponseBody()) {
            os.write(body);
        }
    }

    private void record(HttpExchange x, String server) {
        Headers h = x.getRequestHeaders();
        log.add(new Request(server, x.getRequestMethod(), x.getRequestURI().getPath(), h.getFirst("Range"), h.getFirst("Authorization")));
    }

    private static String hex(String algorithm, byte[] prefix, byte[] b) {
        try {
            MessageDigest md = MessageDigest.getInstance(algorithm);
            md.update(prefix);
            return java.util.HexFormat.of().formatHex(md.digest(b));
        } catch (java.security.NoSuchAlgorithmException e) {
            throw new AssertionError(e);
        }
    }
}
