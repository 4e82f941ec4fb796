package org.peft4j.core;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;

import static org.junit.jupiter.api.Assertions.*;

/// MachineMemory against hand-written /proc/meminfo and cgroup files (v1 and v2, limited and not), and the override
/// property the plan's refusal tests use.
class MachineMemoryTest {
    static final String MEMINFO = "MemTotal:       24683548 kB\nMemFree:        21943712 kB\nMemAvailable:   23828300 kB\nCached:          2057012 kB\n";

    @Test
    void meminfoGivesTotalAndAvailable() {
        MachineMemory m = MachineMemory.fromMeminfo(MEMINFO);
        assertEquals(24683548L * 1024, m.total());
        assertEquals(23828300L * 1024, m.available());
        // a kernel before 3.14: MemFree + Cached
        MachineMemory old = MachineMemory.fromMeminfo("MemTotal: 1000 kB\nMemFree: 300 kB\nCached: 200 kB\n");
        assertEquals(500L * 1024, old.available());
    }

    @Test
    void aCgroupV2LimitLowersBoth(@TempDir Path root) throws Exception {
        Path g = Files.createDirectories(root.resolve("user.slice/job"));
        Files.writeString(g.resolve("memory.max"), "4294967296\n");
        Files.writeString(g.resolve("memory.current"), "1073741824\n");
        Files.writeString(g.resolve("memory.stat"), "anon 805306368\ninactive_file 268435456\nactive_file 0\n");
        MachineMemory m = MachineMemory.fromMeminfo(MEMINFO).limitedBy("0::/user.slice/job\n", root);
        assertEquals(4L << 30, m.total());
        assertEquals((4L << 30) - ((1L << 30) - (256L << 20)), m.available(), "limit - (usage - inactive file cache)");
        assertTrue(m.source().startsWith("cgroup v2 "), m.source());

        Files.writeString(g.resolve("memory.max"), "max\n");
        assertEquals(MachineMemory.fromMeminfo(MEMINFO), MachineMemory.fromMeminfo(MEMINFO).limitedBy("0::/user.slice/job\n", root), "no limit");
    }

    @Test
    void aCgroupV1LimitAtTheContainerRoot(@TempDir Path root) throws Exception {
        // inside a container /proc/self/cgroup names the host's path, which is not mounted: the memory root is read
        Path mem = Files.createDirectories(root.resolve("memory"));
        Files.writeString(mem.resolve("memory.limit_in_bytes"), "2147483648\n");
        Files.writeString(mem.resolve("memory.usage_in_bytes"), "536870912\n");
        Files.writeString(mem.resolve("memory.stat"), "cache 0\ntotal_inactive_file 0\n");
        MachineMemory m = MachineMemory.fromMeminfo(MEMINFO).limitedBy("4:memory:/process_api/f75f\n3:cpuset:/\n", root);
        assertEquals(2L << 30, m.total());
        assertEquals(3L << 29, m.available());
        Files.writeString(mem.resolve("memory.limit_in_bytes"), "9223372036854771712\n");   // v1's "no limit"
        assertEquals(24683548L * 1024, MachineMemory.fromMeminfo(MEMINFO).limitedBy("4:memory:/x\n", root).total());
    }

    @Test
    void thePropertyOverridesTheMachine() {
        try {
            System.setProperty(MachineMemory.AVAILABLE_PROPERTY, "3g");
            MachineMemory m = MachineMemory.read();
            assertEquals(3L << 30, m.available());
            assertEquals(3L << 30, m.total());
            assertTrue(m.source().contains(MachineMemory.AVAILABLE_PROPERTY));
            System.setProperty(MachineMemory.AVAILABLE_PROPERTY, "lots");
            var e = assertThrows(Peft4jException.ConfigException.class, MachineMemory::read);
            assertTrue(e.getMessage().contains("'lots'") && e.getMessage().contains("4g"), e.getMessage());
        } finally {
            System.clearProperty(MachineMemory.AVAILABLE_PROPERTY);
        }
        MachineMemory real = MachineMemory.read();
        assertTrue(real.available() > 0 && real.available() <= real.total(), real.toString());
    }

    @Test
    void byteCountsReadLikeXmx() {
        assertEquals(1536L << 20, MachineMemory.bytes("1536m", "x"));
        assertEquals(12345, MachineMemory.bytes("12345", "x"));
        assertEquals(2L << 40, MachineMemory.bytes("2T", "x"));
        assertThrows(Peft4jException.ConfigException.class, () -> MachineMemory.bytes("-1", "x"));
        assertThrows(Peft4jException.ConfigException.class, () -> MachineMemory.bytes("", "x"));
    }
}
