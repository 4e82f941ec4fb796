package org.peft4j.cli;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Path;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/// `peft4j webui`'s options: help, and the refusals that come before a server starts (the board itself is tested in
/// the board module).
class WebuiCommandTest {
    @Test
    void helpListsTheOptions() {
        CliTest.Out o = CliTest.run(null, "webui", "--help");
        assertEquals(0, o.code(), o.stderr());
        for (String opt : new String[] {"--host", "--port", "--saves", "--data", "--models"}) assertTrue(o.stdout().contains(opt), o.stdout());
    }

    @Test
    void badSettingsAreReportedNotThrown(@TempDir Path tmp) {
        CliTest.Out port = CliTest.run(null, "webui", "--port", "70000", "--saves", tmp.resolve("s").toString());
        assertEquals(1, port.code());
        assertTrue(port.stderr().contains("--port must be in [0, 65535], got 70000"), port.stderr());
        CliTest.Out data = CliTest.run(null, "webui", "--port", "0", "--saves", tmp.resolve("s").toString(), "--data", tmp.resolve("nope").toString());
        assertEquals(1, data.code());
        assertTrue(data.stderr().contains("does not exist; pass --data DIR with a dataset_info.json"), data.stderr());
    }
}
