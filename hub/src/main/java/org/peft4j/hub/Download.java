package org.peft4j.hub;

import org.peft4j.core.Peft4jException;
import org.peft4j.core.Peft4jException.FormatException;
import org.peft4j.hub.HubClient.FileMetadata;

import java.io.IOException;
import java.io.InputStream;
import java.net.URI;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.HexFormat;
import java.util.Objects;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/// Moves one file's bytes into `blobs/{etag}.incomplete`: resumes an existing partial file with `Range: bytes=N-`,
/// retries a broken stream from where it stopped, and verifies the result against the ETag before the caller renames
/// it into place. Reference: huggingface_hub `http_get` (resume, the 200-instead-of-206 reset, size check).
///
/// Checksums: an LFS ETag is the sha256 of the file; a 40-hex ETag of a plain git file is its git blob id,
/// sha1("blob {size}\0" + bytes). Any other ETag (a mirror's) is checked by size only.
final class Download {
    private static final System.Logger LOG = System.getLogger(Download.class.getName());
    private static final int MAX_ATTEMPTS = 5;                 // huggingface_hub http_get _nb_retries
    private static final int CHUNK = 1 << 20;                  // bytes per read and per progress update
    private static final int MAX_REDIRECTS = 10;
    private static final Pattern SHA256 = Pattern.compile("^[0-9a-f]{64}$");
    private static final Pattern SHA1 = Pattern.compile("^[0-9a-f]{40}$");
    private static final Pattern CONTENT_RANGE = Pattern.compile("^bytes (\\d+)-\\d+/(\\d+|\\*)$");

    private final HubClient client;
    private final String repoId, commit, filename;
    private final String what;            // "'model.safetensors' of 'org/name'@commit", for messages
    private final FileMetadata meta;
    private final Path incomplete;
    private final Progress bar;
    private final URI endpoint;
    private MessageDigest digest;         // null when the ETag is not a checksum we know

    Download(HubClient client, String repoId, String commit, String filename, FileMetadata meta, Path incomplete, Progress bar) {
        this.client = client;
        this.repoId = repoId;
        this.commit = commit;
        this.filename = filename;
        this.what = "'" + filename + "' of '" + repoId + "'@" + commit;
        this.meta = meta;
        this.incomplete = incomplete;
        this.bar = bar;
        this.endpoint = URI.create(client.config().endpoint());
    }

    void run() throws IOException {
        long have = Files.exists(incomplete) ? Files.size(incomplete) : 0;
        if (have > meta.size()) {
            LOG.log(System.Logger.Level.WARNING, "{0} is larger than {1} ({2} bytes); starting over", incomplete, what, meta.size());
            Files.delete(incomplete);
            have = 0;
        }
        resetDigest();
        digestPrefix(have);
        bar.update(have, meta.size());
        try (FileChannel out = FileChannel.open(incomplete, StandardOpenOption.CREATE, StandardOpenOption.WRITE)) {
            out.position(have);
            for (int attempt = 1; have < meta.size(); attempt++) {
                try {
                    have = fetch(out, have);
                } catch (IOException | HubClient.Unreachable e) {
                    long now = out.position();
                    if (attempt >= MAX_ATTEMPTS)
                        throw new Peft4jException("Downloading " + what + " broke off at " + now + " of " + meta.size() + " bytes after "
                                + attempt + " attempts (" + e.getMessage() + "); run again to resume from " + incomplete
                                + ", or set HF_ENDPOINT to a reachable Hub mirror.", e);
                    LOG.log(System.Logger.Level.WARNING, "Download of {0} broke off at {1} bytes ({2}); resuming", what, now, e.getMessage());
                    have = now;
                }
            }
            out.force(false);
        }
        verify();
    }

    /// One GET from `have` onwards; returns the new size on disk.
    private long fetch(FileChannel out, long have) throws IOException, HubClient.Unreachable {
        URI uri = meta.location();
        HttpResponse<InputStream> r = null;
        for (int hop = 0; hop <= MAX_REDIRECTS; hop++) {
            // huggingface_hub sends the token to the Hub only, never to the LFS CDN, whose URLs are signed.
            HttpRequest.Builder b = client.request(uri, HubClient.sameOrigin(uri, endpoint)).GET().header("Accept-Encoding", "identity");
            if (have > 0) b.header("Range", "bytes=" + have + "-");
            r = client.send(b.build(), what);
            int status = r.statusCode();
            if (status < 300 || status >= 400) break;
            HubClient.closeQuietly(r.body());
            String location = r.headers().firstValue("Location").orElseThrow(() ->
                    new FormatException("The Hub redirected GET " + what + " (HTTP " + status + ") without a Location; check HF_ENDPOINT."));
            uri = uri.resolve(location);
            if (hop == MAX_REDIRECTS)
                throw new FormatException("Downloading " + what + " was redirected more than " + MAX_REDIRECTS + " times (last " + uri + "); check HF_ENDPOINT.");
        }
        int status = Objects.requireNonNull(r).statusCode();
        try (InputStream body = r.body()) {
            if (status == 206) {
                Matcher m = CONTENT_RANGE.matcher(r.headers().firstValue("Content-Range").orElse(""));
                if (!m.matches() || Long.parseLong(m.group(1)) != have) return restart(out, "a 206 with Content-Range '" + r.headers().firstValue("Content-Range").orElse("") + "'");
            } else if (status == 200) {
                if (have > 0) have = restart(out, "HTTP 200 to a Range request"); // the server ignored Range
            } else if (status == 416) {
                return restart(out, "HTTP 416 to 'Range: bytes=" + have + "-'");
            } else {
                throw client.httpError(status, r.headers(), body, repoId, commit, filename, uri);
            }
            byte[] buf = new byte[CHUNK];
            for (int n; (n = body.read(buf)) > 0; ) {
                if (have + n > meta.size())
                    throw new FormatException("The Hub sent more than the announced " + meta.size() + " bytes for " + what
                            + " from " + uri + "; delete " + incomplete + " and run again.");
                out.write(ByteBuffer.wrap(buf, 0, n));
                if (digest != null) digest.update(buf, 0, n);
                have += n;
                bar.update(have, meta.size());
            }
        }
        if (have < meta.size()) throw new IOException("connection closed at " + have + " of " + meta.size() + " bytes");
        return have;
    }

    /// Drops the partial file so the next request fetches from byte 0.
    private long restart(FileChannel out, String why) throws IOException {
        LOG.log(System.Logger.Level.INFO, "Restarting {0} from byte 0: {1}", what, why);
        out.truncate(0);
        out.position(0);
        resetDigest();
        bar.update(0, meta.size());
        return 0;
    }

    private void resetDigest() {
        try {
            if (SHA256.matcher(meta.etag()).matches()) digest = MessageDigest.getInstance("SHA-256");
            else if (SHA1.matcher(meta.etag()).matches()) {
                digest = MessageDigest.getInstance("SHA-1");
                digest.update(("blob " + meta.size() + "\0").getBytes(StandardCharsets.US_ASCII));
            } else digest = null;
        } catch (NoSuchAlgorithmException e) {
            throw new AssertionError("every JDK has SHA-1 and SHA-256", e);
        }
    }

    /// The resumed bytes already on disk enter the checksum too, so a corrupt partial file is caught.
    private void digestPrefix(long have) throws IOException {
        if (digest == null || have == 0) return;
        try (InputStream in = Files.newInputStream(incomplete)) {
            byte[] buf = new byte[CHUNK];
            long left = have;
            for (int n; left > 0 && (n = in.read(buf, 0, (int) Math.min(buf.length, left))) > 0; left -= n) digest.update(buf, 0, n);
        }
    }

    private void verify() throws IOException {
        long size = Files.size(incomplete);
        String got = digest == null ? null : HexFormat.of().formatHex(digest.digest());
        if (size == meta.size() && (got == null || got.equals(meta.etag()))) return;
        Files.deleteIfExists(incomplete);
        String kind = digest == null ? "size" : SHA256.matcher(meta.etag()).matches() ? "sha256" : "git blob sha1";
        throw new FormatException("Checksum mismatch for " + what + ": expected " + kind + " " + (got == null ? meta.size() + " bytes" : meta.etag())
                + " (from the Hub's ETag), got " + (got == null ? size + " bytes" : got) + " over " + size + " bytes; the corrupt download "
                + incomplete + " was deleted, run again to download it afresh (if it repeats, a proxy or HF_ENDPOINT mirror is altering files).");
    }
}
