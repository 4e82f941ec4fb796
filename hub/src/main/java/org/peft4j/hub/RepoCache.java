package org.peft4j.hub;

import org.peft4j.core.Peft4jException.FormatException;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.FileAlreadyExistsException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.regex.Pattern;

/// One repository's folder in the huggingface_hub cache, laid out exactly as huggingface_hub lays it out:
/// ```
/// {cache}/models--{org}--{name}/
///     blobs/{etag}                     file contents, named by git-sha1 or LFS sha256
///     blobs/{etag}.incomplete          a download in progress, resumed with a Range request
///     snapshots/{commit}/{filename}    relative symlink to ../../blobs/{etag} (a copy where symlinks fail)
///     refs/{revision}                  the commit hash the branch or tag last resolved to
/// ```
/// Reference: huggingface_hub `file_download.py` (`repo_folder_name`, `_create_symlink`,
/// `_cache_commit_hash_for_specific_revision`, `_get_pointer_path`).
final class RepoCache {
    static final Pattern COMMIT_HASH = Pattern.compile("^[0-9a-f]{40}$");

    final Path storage;   // {cache}/models--{org}--{name}
    final Path locks;     // {cache}/.locks/models--{org}--{name}

    RepoCache(Path cacheDir, String repoId) {
        String folder = "models--" + repoId.replace("/", "--");
        this.storage = cacheDir.resolve(folder);
        this.locks = cacheDir.resolve(".locks").resolve(folder);
    }

    Path blob(String etag) { return storage.resolve("blobs").resolve(etag); }

    Path incomplete(String etag) { return storage.resolve("blobs").resolve(etag + ".incomplete"); }

    Path lock(String etag) { return locks.resolve(etag + ".lock"); }

    Path snapshot(String commit) { return storage.resolve("snapshots").resolve(commit); }

    /// `snapshots/{commit}/{filename}`; the filename is a repo path checked by [#checkRepoPath].
    Path pointer(String commit, String filename) { return snapshot(commit).resolve(filename); }

    Path ref(String revision) { return storage.resolve("refs").resolve(revision); }

    /// The commit a revision stands for in the cache: itself when it is a commit hash, else the content of
    /// `refs/{revision}`; null when neither is known.
    String readRef(String revision) {
        if (COMMIT_HASH.matcher(revision).matches()) return revision;
        Path ref = ref(revision);
        if (!Files.isRegularFile(ref)) return null;
        try {
            String commit = Files.readString(ref, StandardCharsets.UTF_8).strip();
            if (!COMMIT_HASH.matcher(commit).matches())
                throw new FormatException("Cache ref " + ref + " holds '" + commit + "', not a 40-hex commit hash; delete that file and download again.");
            return commit;
        } catch (IOException e) {
            throw new UncheckedIOException("Cannot read cache ref " + ref, e);
        }
    }

    /// Records that `revision` (a branch or tag) now points at `commit`; atomic, so readers never see half a ref.
    void writeRef(String revision, String commit) throws IOException {
        if (revision.equals(commit)) return;
        Path ref = ref(revision);
        if (Files.isRegularFile(ref) && Files.readString(ref, StandardCharsets.UTF_8).equals(commit)) return;
        Files.createDirectories(ref.getParent());
        Path tmp = Files.createTempFile(ref.getParent(), ref.getFileName().toString(), ".tmp");
        Files.writeString(tmp, commit, StandardCharsets.UTF_8);
        move(tmp, ref);
    }

    /// Makes `pointer` a relative symlink to `blob`, or a copy of it where the file system refuses symlinks.
    static void link(Path blob, Path pointer) throws IOException {
        Files.createDirectories(pointer.getParent());
        Files.deleteIfExists(pointer);
        Path relative = pointer.getParent().toAbsolutePath().relativize(blob.toAbsolutePath());
        try {
            Files.createSymbolicLink(pointer, relative);
        } catch (FileAlreadyExistsException e) {
            // Another process linked it between delete and create; fine if it points at the same blob.
            if (!Files.isSameFile(pointer, blob)) throw e;
        } catch (UnsupportedOperationException | IOException e) {
            Files.copy(blob, pointer, StandardCopyOption.REPLACE_EXISTING);
        }
    }

    /// Atomic rename within one folder tree; a plain replace where the file system cannot do it atomically.
    static void move(Path from, Path to) throws IOException {
        try {
            Files.move(from, to, StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
        } catch (java.nio.file.AtomicMoveNotSupportedException e) {
            Files.move(from, to, StandardCopyOption.REPLACE_EXISTING);
        }
    }

    /// A repo path from the server must stay inside the snapshot folder (huggingface_hub `_validate_relative_filename`).
    static String checkRepoPath(String repoId, String filename) {
        boolean bad = filename.isEmpty() || filename.startsWith("/") || filename.contains("\\") || filename.contains("\0");
        for (String part : filename.split("/", -1)) bad |= part.isEmpty() || part.equals(".") || part.equals("..");
        if (bad) throw new FormatException("The Hub listed a file '" + filename + "' in '" + repoId
                + "' whose path would leave the snapshot folder; refusing to download it. Check HF_ENDPOINT points at a trusted Hub.");
        return filename;
    }

    /// An ETag becomes a file name in `blobs/`, so it must be one plain name.
    static String checkEtag(String etag, String what) {
        if (etag.isEmpty() || etag.contains("/") || etag.contains("\\") || etag.startsWith(".") || etag.contains("\0"))
            throw new FormatException("The Hub sent ETag '" + etag + "' for " + what + ", which cannot name a cache blob; check HF_ENDPOINT points at a Hugging Face Hub.");
        return etag;
    }

    /// A commit from the server becomes a folder name in `snapshots/`.
    static String checkCommit(String commit, String what) {
        if (commit == null || !COMMIT_HASH.matcher(commit).matches())
            throw new FormatException("The Hub answered " + what + " with commit '" + commit
                    + "', not a 40-hex commit hash; check HF_ENDPOINT points at a Hugging Face Hub (or a mirror of one).");
        return commit;
    }
}
