package org.peft4j.train.optim;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.regex.Pattern;

/// Optimizer state in a file-backed memory mapping, the CPU counterpart of bitsandbytes' paged (CUDA unified memory)
/// optimizer buffers (specs.md §1.6): the operating system pages state between RAM and the file, so a run whose state
/// does not fit in RAM slows down instead of being killed. Numerics are the owner's; this class only places bytes.
///
/// Layout: one temporary file `peft4j-optim-*.state` in a chosen directory, mapped READ_WRITE once, cut into
/// page-aligned regions (one per parameter tensor, sizes fixed at construction). The file is deleted on [#close].
///
/// **The budget.** `budgetBytes` bounds how much of this state the process keeps mapped-resident *between tensor
/// updates*. The owner calls [#updated] after writing a region; regions are then released oldest-first with
/// `MemorySegment.unload()` (Linux `madvise(MADV_DONTNEED)`) until the regions still counted resident sum to at most
/// the budget. A released region's data stays in the page cache and the file: the kernel writes dirty pages back and
/// reclaims them when memory is short, and the next step's access faults them in again. So:
/// - `budgetBytes = Long.MAX_VALUE`: nothing is released (a plain shared mapping; the kernel alone decides);
/// - `budgetBytes = 0`: every region is released right after its update, so at most one tensor's state
///   (the one being updated) is in the resident set at a time;
/// - in between: a sliding window of the most recently updated regions, at most `budgetBytes` in total
///   (a single region larger than the budget is released at once).
/// The budget is not a hard limit on RSS while a region is being updated, and page-cache pages are charged to the
/// process's cgroup until reclaimed; see [#residentBytes] for what is actually mapped in.
public final class PagedState implements AutoCloseable {
    static final long PAGE = 4096;

    private final Path file;
    private final Arena arena;
    private final MemorySegment mapping;
    private final MemorySegment[] regions;   // (tensors) page-aligned slices of `mapping`
    private final long budgetBytes;
    private final boolean[] counted;         // (tensors) region is in the resident window
    private final int[] window;              // ring buffer of counted regions, oldest at `head`
    private int head, size;
    private long resident;

    /// Maps a new temporary file in `dir` holding one region per entry of `regionBytes` (each rounded up to 4 KiB).
    /// `budgetBytes` >= 0; Long.MAX_VALUE disables releasing.
    public PagedState(Path dir, long[] regionBytes, long budgetBytes) {
        if (budgetBytes < 0) throw new IllegalArgumentException("paged optimizer budget must be >= 0 bytes, got " + budgetBytes);
        long total = 0;
        long[] offsets = new long[regionBytes.length];
        for (int i = 0; i < regionBytes.length; i++) {
            if (regionBytes[i] < 0) throw new IllegalArgumentException("region " + i + " has negative size " + regionBytes[i]);
            offsets[i] = total;
            total = Math.addExact(total, roundUp(Math.max(regionBytes[i], 1)));
        }
        try {
            Files.createDirectories(dir);
            long free = Files.getFileStore(dir).getUsableSpace();
            if (free < total)
                throw new IllegalStateException("paged optimizer state needs " + total / (1 << 20) + " MiB in " + dir + " but only "
                        + free / (1 << 20) + " MiB are free; choose another directory (paged_state_dir) or a non-paged optimizer");
            file = Files.createTempFile(dir, "peft4j-optim-", ".state");
        } catch (IOException e) {
            throw new UncheckedIOException("cannot create paged optimizer state in " + dir + ": " + e.getMessage(), e);
        }
        arena = Arena.ofShared();
        try (FileChannel ch = FileChannel.open(file, StandardOpenOption.READ, StandardOpenOption.WRITE)) {
            mapping = ch.map(FileChannel.MapMode.READ_WRITE, 0, total, arena);   // grows the (sparse) file to `total`
        } catch (IOException | RuntimeException e) {
            arena.close();
            deleteQuietly(file);
            throw new UncheckedIOException("cannot map " + total + " bytes of " + file + ": " + e.getMessage(),
                    e instanceof IOException io ? io : new IOException(e));
        }
        regions = new MemorySegment[regionBytes.length];
        for (int i = 0; i < regions.length; i++) regions[i] = mapping.asSlice(offsets[i], regionBytes[i]);
        this.budgetBytes = budgetBytes;
        counted = new boolean[regions.length];
        window = new int[Math.max(1, regions.length)];
    }

    /// Region i, zero-filled at creation.
    public MemorySegment region(int i) { return regions[i]; }

    public int regions() { return regions.length; }

    /// Called after region i was written: counts it resident and releases the oldest regions beyond the budget.
    public void updated(int i) {
        if (budgetBytes == Long.MAX_VALUE) return;
        if (!counted[i]) {
            counted[i] = true;
            resident += regions[i].byteSize();
            window[(head + size++) % window.length] = i;
        }
        while (resident > budgetBytes && size > 0) {
            int j = window[head];
            head = (head + 1) % window.length;
            size--;
            counted[j] = false;
            resident -= regions[j].byteSize();
            regions[j].unload();
        }
    }

    public long budgetBytes() { return budgetBytes; }

    /// Bytes of the file mapping, all regions page-rounded.
    public long capacityBytes() { return mapping.byteSize(); }

    /// What the budget bookkeeping counts as resident now (≤ budget after each [#updated]).
    public long windowBytes() { return resident; }

    public Path file() { return file; }

    /// Bytes of this mapping in the process's resident set, from `/proc/self/smaps` (Linux); -1 where unavailable.
    public long residentBytes() {
        Path smaps = Path.of("/proc/self/smaps");
        if (!Files.isReadable(smaps)) return -1;
        String name = file.toAbsolutePath().toString();
        long kb = 0;
        boolean inside = false;
        try {
            for (String line : Files.readAllLines(smaps)) {
                if (HEADER.matcher(line).lookingAt()) inside = line.endsWith(name);
                else if (inside && line.startsWith("Rss:")) kb += Long.parseLong(line.substring(4).trim().split("\\s+")[0]);
            }
        } catch (IOException e) {
            return -1;
        }
        return kb * 1024;
    }

    /// `7f…-7f… rw-s 00000000 fd:01 1234   /path` lines start a mapping; the lines after it are `Key:  value kB`.
    private static final Pattern HEADER = Pattern.compile("[0-9a-f]+-[0-9a-f]+ ");

    /// Unmaps and deletes the file. The regions must not be used afterwards.
    @Override
    public void close() {
        if (arena.scope().isAlive()) arena.close();
        deleteQuietly(file);
    }

    private static long roundUp(long n) { return (n + PAGE - 1) / PAGE * PAGE; }

    private static void deleteQuietly(Path p) {
        try { Files.deleteIfExists(p); } catch (IOException ignored) { /* a leftover temp file is harmless */ }
    }
}
