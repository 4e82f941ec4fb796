package org.peft4j.bench;

import org.junit.jupiter.api.Test;

import java.util.List;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.*;

/// The phase split read from a class-load log (lines as `-Xlog:class+load:file=…:uptime` writes them).
class TtftBenchTest {
    @Test
    void phasesAreTheGapsBetweenTheMarkersFirstLoads() {
        List<String> log = List.of(
                "[0.010s] java.lang.Object source: shared objects file",
                "[0.200s] org.peft4j.cli.Main source: shared objects file",
                "[0.250s] org.peft4j.cli.Main$$Lambda/0x01 source: org.peft4j.cli.Main",
                "[0.700s] org.peft4j.model.Models source: file:/x/peft4j-model.jar",
                "[0.900s] org.peft4j.model.Models source: file:/x/again.jar",
                "[1.500s] org.peft4j.model.generate.Generator source: file:/x/peft4j-model.jar",
                "[2.000s] org.peft4j.train.generate.Completion source: file:/x/peft4j-train.jar");
        Map<String, Double> p = TtftBench.phases(log, 2.25);
        assertEquals(List.of("JVM start", "command line", "model load (tokenizer in parallel)", "encode + first forward", "exit (and process start)"),
                List.copyOf(p.keySet()));
        assertEquals(0.2, p.get("JVM start"), 1e-9);
        assertEquals(0.5, p.get("command line"), 1e-9);
        assertEquals(0.8, p.get("model load (tokenizer in parallel)"), 1e-9);
        assertEquals(0.5, p.get("encode + first forward"), 1e-9);
        assertEquals(0.25, p.get("exit (and process start)"), 1e-9);
    }

    @Test
    void aMissingMarkerGivesItsTimeToTheNextPhase() {
        List<String> log = List.of("[0.300s] org.peft4j.cli.Main source: shared objects file",
                "[1.300s] org.peft4j.model.generate.Generator source: file:/x.jar");
        Map<String, Double> p = TtftBench.phases(log, 1.5);
        assertFalse(p.containsKey("command line"));
        assertEquals(1.0, p.get("model load (tokenizer in parallel)"), 1e-9);
        assertEquals(0.2, p.get("exit (and process start)"), 1e-9);
    }
}
