package org.peft4j.core;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Locale;

/// The memory this machine can give a new process: total and available from `/proc/meminfo` (MemTotal,
/// MemAvailable), lowered to a cgroup's limit when the process runs in one (v2 `memory.max` / `memory.current`, v1
/// `memory.limit_in_bytes` / `memory.usage_in_bytes`, less the cgroup's inactive file cache, which the kernel reclaims
/// first, as `docker stats` counts it). The launcher's plan ([#read]) compares a run's planned memory with
/// `available` before anything is loaded.
///
/// Tests and demonstrations set `-Dpeft4j.test.availableMemory=BYTES` (and optionally `peft4j.test.totalMemory`),
/// which replace what the machine reports.
///
/// @param total     bytes of RAM (or the cgroup limit when lower)
/// @param available bytes a new process can take without swapping or meeting the OOM killer
/// @param source    where the numbers came from, for messages ("/proc/meminfo", "cgroup v2 /sys/fs/cgroup/...", ...)
public record MachineMemory(long total, long available, String source) {
    public static final String AVAILABLE_PROPERTY = "peft4j.test.availableMemory";
    public static final String TOTAL_PROPERTY = "peft4j.test.totalMemory";

    /// This machine's memory (the override properties first); `source` "unknown" with both values Long.MAX_VALUE when
    /// neither /proc/meminfo nor an override can be read (not Linux).
    public static MachineMemory read() {
        String avail = System.getProperty(AVAILABLE_PROPERTY);
        if (avail != null) {
            long a = bytes(avail, AVAILABLE_PROPERTY);
            String total = System.getProperty(TOTAL_PROPERTY);
            return new MachineMemory(total != null ? bytes(total, TOTAL_PROPERTY) : a, a, "-D" + AVAILABLE_PROPERTY);
        }
        String meminfo = text(Path.of("/proc/meminfo"));
        if (meminfo == null) return new MachineMemory(Long.MAX_VALUE, Long.MAX_VALUE, "unknown");
        MachineMemory m = fromMeminfo(meminfo);
        String cgroups = text(Path.of("/proc/self/cgroup"));
        return cgroups == null ? m : m.limitedBy(cgroups, Path.of("/sys/fs/cgroup"));
    }

    /// MemTotal and MemAvailable (kB) of a `/proc/meminfo` text; kernels before 3.14 lack MemAvailable: MemFree +
    /// Cached then.
    static MachineMemory fromMeminfo(String meminfo) {
        long total = kb(meminfo, "MemTotal"), avail = kb(meminfo, "MemAvailable");
        if (avail < 0) avail = Math.max(0, kb(meminfo, "MemFree")) + Math.max(0, kb(meminfo, "Cached"));
        if (total < 0) throw new Peft4jException("/proc/meminfo has no MemTotal line");
        return new MachineMemory(total, Math.min(avail, total), "/proc/meminfo");
    }

    /// This memory lowered to the limit of the cgroup named in `cgroups` (the text of /proc/self/cgroup), its files
    /// under `root`: v2 first (the `0::/path` line), then v1's memory controller. A limit of "max" or near 2^63 is none.
    MachineMemory limitedBy(String cgroups, Path root) {
        for (String line : cgroups.split("\n")) {
            String[] f = line.split(":", 3);
            if (f.length < 3) continue;
            boolean v2 = f[0].equals("0") && f[1].isEmpty(), v1 = java.util.Arrays.asList(f[1].split(",")).contains("memory");
            if (!v2 && !v1) continue;
            Path base = v2 ? root : root.resolve("memory");
            for (Path dir : new Path[] {base.resolve(f[2].replaceFirst("^/", "")), base}) {   // the own group; in a container, its root
                String limit = text(dir.resolve(v2 ? "memory.max" : "memory.limit_in_bytes"));
                String usage = text(dir.resolve(v2 ? "memory.current" : "memory.usage_in_bytes"));
                if (limit == null || usage == null) continue;
                limit = limit.strip();
                if (limit.equals("max") || Long.parseLong(limit) >= (1L << 60)) break;   // no limit
                long lim = Long.parseLong(limit), used = Long.parseLong(usage.strip());
                String stat = text(dir.resolve("memory.stat"));
                long inactive = stat == null ? 0 : Math.max(0, statValue(stat, v2 ? "inactive_file" : "total_inactive_file"));
                long avail = Math.max(0, lim - Math.max(0, used - inactive));
                if (lim < total || avail < available)
                    return new MachineMemory(Math.min(total, lim), Math.min(available, avail), (v2 ? "cgroup v2 " : "cgroup v1 ") + dir);
                return this;
            }
        }
        return this;
    }

    /// A byte count: a plain number, or one with a k, m, g or t suffix (binary, as -Xmx reads them).
    static long bytes(String s, String what) {
        String t = s.strip().toLowerCase(Locale.ROOT);
        int shift = switch (t.isEmpty() ? ' ' : t.charAt(t.length() - 1)) {
            case 'k' -> 10; case 'm' -> 20; case 'g' -> 30; case 't' -> 40; default -> 0;
        };
        try {
            long n = Long.parseLong(shift == 0 ? t : t.substring(0, t.length() - 1));
            if (n < 0) throw new NumberFormatException();
            return Math.multiplyExact(n, 1L << shift);
        } catch (NumberFormatException | ArithmeticException e) {
            throw new Peft4jException.ConfigException(what + " must be a byte count such as 4294967296 or 4g, got '" + s + "'");
        }
    }

    private static long kb(String meminfo, String key) {
        for (String line : meminfo.split("\n"))
            if (line.startsWith(key + ":")) return 1024 * Long.parseLong(line.substring(key.length() + 1).strip().split("\\s+")[0]);
        return -1;
    }

    private static long statValue(String stat, String key) {
        for (String line : stat.split("\n")) {
            String[] f = line.strip().split("\\s+");
            if (f.length == 2 && f[0].equals(key)) return Long.parseLong(f[1]);
        }
        return -1;
    }

    private static String text(Path p) {
        try {
            return Files.readString(p);
        } catch (IOException | SecurityException e) {
            return null;
        }
    }
}
