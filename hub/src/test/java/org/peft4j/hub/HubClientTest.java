package org.peft4j.hub;

import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.peft4j.core.Peft4jException;
import org.peft4j.core.Peft4jException.ConfigException;
import org.peft4j.core.Peft4jException.FormatException;

import java.io.IOException;
import java.net.ServerSocket;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.Set;
import java.util.stream.Stream;

import static org.junit.jupiter.api.Assertions.*;

/// [HubClient] against [FakeHub] on the loopback: the huggingface_hub cache layout, no second download,
/// resume with Range, offline and unreachable fallbacks, checksums, and the error messages.
class HubClientTest {
    static final String REPO = "tiny-org/tiny-llama";
    static final String COMMIT = "0123456789abcdef0123456789abcdef01234567";
    static final String TOKEN = "hf_testtoken";
    static final int MODEL_BYTES = 300_000; // several 1 MiB-chunk-free reads, enough to resume in the middle

    @TempDir Path tmp;
    Path cache;
    FakeHub hub;
    byte[] model;

    @BeforeEach
    void serve() throws IOException {
        Path folder = Files.createDirectories(tmp.resolve("repo"));
        model = new byte[MODEL_BYTES];
        new Random(42).nextBytes(model);
        Files.write(folder.resolve("model.safetensors"), model);
        Files.writeString(folder.resolve("config.json"), "{\"model_type\": \"llama\", \"hidden_size\": 64}\n");
        Files.writeString(folder.resolve("tokenizer_config.json"), "{\"bos_token\": \"<s>\"}\n");
        Files.createDirectories(folder.resolve("extra"));
        Files.writeString(folder.resolve("extra/notes.safetensors"), "not really tensors, but matches *.safetensors at depth 2");
        Files.write(folder.resolve("pytorch_model.bin"), new byte[1000]);
        Files.writeString(folder.resolve("README.md"), "# tiny\n");
        hub = new FakeHub(REPO, COMMIT, folder, Set.of("model.safetensors", "pytorch_model.bin"));
        cache = tmp.resolve("hf-home/hub");
    }

    @AfterEach
    void stop() { hub.close(); }

    HubClient client(String token, boolean offline) { return new HubClient(new HubConfig(hub.endpoint(), token, cache, offline)); }

    Path storage() { return cache.resolve("models--tiny-org--tiny-llama"); }

    @Test
    void downloadsIntoTheHuggingfaceHubLayout() throws IOException {
        hub.requiredToken = TOKEN;
        List<long[]> updates = new ArrayList<>();
        Path snap = client(TOKEN, false).snapshot(REPO, null, null, (done, total) -> updates.add(new long[]{done, total}));

        assertEquals(storage().resolve("snapshots").resolve(COMMIT), snap);
        assertEquals(COMMIT, Files.readString(storage().resolve("refs/main")));
        String sha = FakeHub.sha256(model);
        String configSha1 = FakeHub.gitSha1(hub.files.get("config.json"));
        assertTrue(Files.isRegularFile(storage().resolve("blobs").resolve(sha)), "LFS blob is named by its sha256");
        assertTrue(Files.isRegularFile(storage().resolve("blobs").resolve(configSha1)), "plain blob is named by its git sha1");
        assertEquals(Path.of("../../blobs/" + sha), Files.readSymbolicLink(snap.resolve("model.safetensors")));
        assertEquals(Path.of("../../blobs/" + configSha1), Files.readSymbolicLink(snap.resolve("config.json")));
        assertEquals(Path.of("../../../blobs/" + FakeHub.gitSha1(hub.files.get("extra/notes.safetensors"))),
                Files.readSymbolicLink(snap.resolve("extra/notes.safetensors")));
        for (String f : List.of("model.safetensors", "config.json", "tokenizer_config.json", "extra/notes.safetensors"))
            assertArrayEquals(hub.files.get(f), Files.readAllBytes(snap.resolve(f)), f);
        assertFalse(Files.exists(snap.resolve("pytorch_model.bin")), "*.bin is not in the default allow patterns");
        assertFalse(Files.exists(snap.resolve("README.md")));
        try (Stream<Path> blobs = Files.list(storage().resolve("blobs"))) {
            assertEquals(4, blobs.filter(p -> !p.toString().endsWith(".incomplete")).count());
        }
        try (Stream<Path> blobs = Files.list(storage().resolve("blobs"))) {
            assertTrue(blobs.noneMatch(p -> p.toString().endsWith(".incomplete")), "no .incomplete left behind");
        }

        // The token goes to the Hub as a Bearer, never to the CDN (signed URLs, another origin).
        assertFalse(hub.requests("hub").isEmpty());
        for (var r : hub.requests("hub")) assertEquals("Bearer " + TOKEN, r.authorization(), r.toString());
        List<FakeHub.Request> cdn = hub.requests("cdn");
        assertEquals(1, cdn.size(), "one GET of the LFS file from the CDN: " + cdn);
        assertNull(cdn.getFirst().authorization());
        // HEAD first for every file, on the commit the listing named.
        assertEquals(4, hub.requests("hub").stream().filter(r -> r.method().equals("HEAD") && r.path().contains("/resolve/" + COMMIT + "/")).count());

        long[] last = updates.getLast();
        assertTrue(updates.stream().anyMatch(u -> u[0] == MODEL_BYTES && u[1] == MODEL_BYTES), "progress reached the model's size");
        assertEquals(last[0], last[1]);
    }

    @Test
    void secondCallDownloadsNothing() {
        HubClient c = client(null, false);
        Path first = c.snapshot(REPO);
        int before = hub.log.size();
        assertFalse(hub.fileRequests().isEmpty());
        hub.log.clear();
        Path second = c.snapshot(REPO);
        assertEquals(first, second);
        assertEquals(List.of(), hub.fileRequests(), "no HEAD or GET of files once the snapshot is complete");
        assertEquals(1, hub.log.size(), "only the revision listing: " + hub.log + " (first call made " + before + ")");
    }

    @Test
    void resumesAnIncompleteBlobWithARangeRequest() throws IOException {
        String sha = FakeHub.sha256(model);
        int partial = 123_457;
        Path incomplete = Files.createDirectories(storage().resolve("blobs")).resolve(sha + ".incomplete");
        Files.write(incomplete, java.util.Arrays.copyOf(model, partial));
        List<Long> dones = new ArrayList<>();

        Path snap = client(null, false).snapshot(REPO, "main", List.of("model.safetensors"), (done, total) -> dones.add(done));

        List<FakeHub.Request> cdn = hub.requests("cdn");
        assertEquals(1, cdn.size(), cdn.toString());
        assertEquals("bytes=" + partial + "-", cdn.getFirst().range());
        assertEquals(partial, dones.getFirst(), "progress starts at the resumed size");
        assertArrayEquals(model, Files.readAllBytes(snap.resolve("model.safetensors")));
        assertFalse(Files.exists(incomplete));
        assertFalse(Files.exists(snap.resolve("config.json")), "allow patterns select the files");
    }

    @Test
    void aBrokenStreamResumesWhereItStopped() throws IOException {
        hub.dropOnceAfter = 100_000;
        Path snap = client(null, false).snapshot(REPO, "main", List.of("model.safetensors"), null);
        List<FakeHub.Request> cdn = hub.requests("cdn");
        assertEquals(2, cdn.size(), cdn.toString());
        assertNull(cdn.get(0).range());
        // The client saw at most the 100,000 bytes sent before the hang-up; it asks for the rest only.
        long resumedAt = Long.parseLong(cdn.get(1).range().replaceAll("^bytes=(\\d+)-$", "$1"));
        assertTrue(resumedAt > 0 && resumedAt <= 100_000, cdn.get(1).range());
        assertArrayEquals(model, Files.readAllBytes(snap.resolve("model.safetensors")));
    }

    @Test
    void restartsWhenTheServerIgnoresRange() throws IOException {
        hub.ignoreRange = true;
        String sha = FakeHub.sha256(model);
        Path incomplete = Files.createDirectories(storage().resolve("blobs")).resolve(sha + ".incomplete");
        Files.write(incomplete, java.util.Arrays.copyOf(model, 5000));
        Path snap = client(null, false).snapshot(REPO, "main", List.of("model.safetensors"), null);
        assertEquals("bytes=5000-", hub.requests("cdn").getFirst().range());
        assertArrayEquals(model, Files.readAllBytes(snap.resolve("model.safetensors")), "a 200 answer replaces, not appends to, the partial file");
    }

    @Test
    void checksumMismatchIsDetectedAndTheDownloadDeleted() {
        hub.corrupt.add("model.safetensors");
        var e = assertThrows(FormatException.class, () -> client(null, false).snapshot(REPO));
        String sha = FakeHub.sha256(model);
        assertTrue(e.getMessage().contains("Checksum mismatch") && e.getMessage().contains("sha256 " + sha)
                && e.getMessage().contains("run again"), e.getMessage());
        assertFalse(Files.exists(storage().resolve("blobs").resolve(sha)));
        assertFalse(Files.exists(storage().resolve("blobs").resolve(sha + ".incomplete")));
        assertFalse(Files.exists(storage().resolve("snapshots").resolve(COMMIT).resolve("model.safetensors")));

        hub.corrupt.clear();
        hub.corrupt.add("config.json");
        cache = tmp.resolve("fresh-cache"); // the first attempt already cached config.json
        var g = assertThrows(FormatException.class, () -> client(null, false).snapshot(REPO));
        assertTrue(g.getMessage().contains("git blob sha1 " + FakeHub.gitSha1(hub.files.get("config.json"))), g.getMessage());
    }

    @Test
    void offlineResolvesFromTheCacheWithoutNetwork() {
        var missing = assertThrows(Peft4jException.class, () -> client(null, true).snapshot(REPO));
        assertTrue(missing.getMessage().contains("HF_HUB_OFFLINE") && missing.getMessage().contains(REPO)
                && missing.getMessage().contains(storage().resolve("refs/main").toString()), missing.getMessage());
        assertEquals(List.of(), hub.log, "offline means no request at all");

        Path online = client(null, false).snapshot(REPO);
        hub.log.clear();
        assertEquals(online, client(null, true).snapshot(REPO));
        assertEquals(online, client(null, true).snapshot(REPO, COMMIT, null, null), "a commit hash resolves without refs");
        assertEquals(List.of(), hub.log);

        var rev = assertThrows(Peft4jException.class, () -> client(null, true).snapshot(REPO, "v2", null, null));
        assertTrue(rev.getMessage().contains("'" + REPO + "'@v2 is not in the cache"), rev.getMessage());
    }

    @Test
    void unreachableEndpointFallsBackToTheCacheOrSaysWhatToDo() throws IOException {
        int closedPort;
        try (ServerSocket s = new ServerSocket(0, 1, java.net.InetAddress.getLoopbackAddress())) { closedPort = s.getLocalPort(); }
        HubClient dead = new HubClient(new HubConfig("http://127.0.0.1:" + closedPort, null, cache, false));

        var e = assertThrows(Peft4jException.class, () -> dead.snapshot(REPO));
        assertTrue(e.getMessage().contains("cannot be reached") && e.getMessage().contains("HF_ENDPOINT")
                && e.getMessage().contains("HF_HUB_OFFLINE=1"), e.getMessage());

        Path online = client(null, false).snapshot(REPO);
        assertEquals(online, dead.snapshot(REPO));
    }

    @Test
    void unauthorizedSaysToSetHfToken() {
        hub.requiredToken = TOKEN;
        var none = assertThrows(ConfigException.class, () -> client(null, false).snapshot(REPO));
        assertTrue(none.getMessage().contains("HF_TOKEN") && none.getMessage().contains("no token was sent")
                && none.getMessage().contains("HTTP 401"), none.getMessage());
        var wrong = assertThrows(ConfigException.class, () -> client("hf_wrong", false).snapshot(REPO));
        assertTrue(wrong.getMessage().contains("token from HF_TOKEN") && wrong.getMessage().contains("was sent"), wrong.getMessage());
        assertEquals("Bearer hf_wrong", hub.log.getLast().authorization());
    }

    @Test
    void notFoundNamesTheRepoOrRevision() {
        var repo = assertThrows(ConfigException.class, () -> client(null, false).snapshot("tiny-org/nope"));
        assertTrue(repo.getMessage().contains("'tiny-org/nope' was not found") && repo.getMessage().contains("HTTP 404"), repo.getMessage());
        var rev = assertThrows(ConfigException.class, () -> client(null, false).snapshot(REPO, "nope", null, null));
        assertTrue(rev.getMessage().contains("Revision 'nope' does not exist"), rev.getMessage());
        var up = assertThrows(ConfigException.class, () -> client(null, false).snapshot(REPO, "../../escape", null, null));
        assertTrue(up.getMessage().contains("'../../escape'"), up.getMessage());
        var id = assertThrows(ConfigException.class, () -> client(null, false).snapshot("no-slash"));
        assertTrue(id.getMessage().contains("org/name"), id.getMessage());
        var none = assertThrows(ConfigException.class, () -> client(null, false).snapshot(REPO, "main", List.of("*.gguf"), null));
        assertTrue(none.getMessage().contains("No file") && none.getMessage().contains("model.safetensors"), none.getMessage());
    }

    @Test
    void danglingSnapshotLinkIsDownloadedAgain() throws IOException {
        Path snap = client(null, false).snapshot(REPO);
        Files.delete(storage().resolve("blobs").resolve(FakeHub.sha256(model)));
        hub.log.clear();
        assertEquals(snap, client(null, false).snapshot(REPO));
        assertEquals(1, hub.requests("cdn").size());
        assertArrayEquals(model, Files.readAllBytes(snap.resolve("model.safetensors")));
    }

    @Test
    void gitBlobIdMatchesGit() {
        // `printf 'hello\n' | git hash-object --stdin` and the empty blob: ids git itself prints.
        assertEquals("ce013625030ba8dba906f756967f9e9ca394464a", FakeHub.gitSha1("hello\n".getBytes(StandardCharsets.UTF_8)));
        assertEquals("e69de29bb2d1d6434b8b29ae775ad8c2e48c5391", FakeHub.gitSha1(new byte[0]));
    }
}
