package org.peft4j.train.optim;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import org.junit.jupiter.api.Test;

import java.io.InputStream;

import static org.junit.jupiter.api.Assertions.*;

/// Every schedule against reference/optim_reference.py's numpy transcription of transformers' lambdas
/// (fixture optim/schedules.json), including steps past the end.
class LrScheduleTest {
    /// Both sides evaluate the same double formulas; only cos/pow may differ in the last ulp between libm and Java.
    static final double TOL = 1e-12;

    @Test
    void matchesTransformersLambdas() throws Exception {
        JsonNode fx;
        try (InputStream in = getClass().getResourceAsStream("/optim/schedules.json")) {
            assertNotNull(in, "missing test resource optim/schedules.json; run python3 reference/optim_reference.py");
            fx = new ObjectMapper().readTree(in);
        }
        int checked = 0;
        for (JsonNode c : fx.get("cases")) {
            LrSchedule sch = LrSchedule.of(c.get("kind").asText(), c.get("lr").asDouble(), c.get("steps").asInt(),
                    c.get("warmup_steps").asInt(), c.get("warmup_ratio").asDouble());
            if (!c.get("num_cycles").isNull()) sch = sch.withNumCycles(c.get("num_cycles").asDouble());
            String what = c.get("kind").asText() + " steps " + c.get("steps") + " warmup " + c.get("warmup_steps")
                    + " ratio " + c.get("warmup_ratio") + " cycles " + c.get("num_cycles");
            assertEquals(c.get("warmup_resolved").asInt(), sch.warmupSteps(), what + ": warmup steps");
            JsonNode f = c.get("factors");
            for (int s = 0; s < f.size(); s++) {
                assertEquals(f.get(s).asDouble(), sch.factor(s), TOL, what + " at step " + s);
                assertEquals(f.get(s).asDouble() * c.get("lr").asDouble(), sch.lr(s), TOL * c.get("lr").asDouble(), what + " lr at step " + s);
                checked++;
            }
        }
        assertTrue(checked > 500, "checked " + checked + " values");
    }

    @Test
    void firstStepOfAWarmupIsZeroAndNamesAreValidated() {
        assertEquals(0.0, LrSchedule.of("linear", 1e-3, 100, 10, 0).lr(0));
        assertEquals(1e-3, LrSchedule.of("constant", 1e-3, 100, 10, 0).lr(0));
        var e = assertThrows(IllegalArgumentException.class, () -> LrSchedule.of("cosine_annealing", 1e-3, 100, 0, 0));
        assertTrue(e.getMessage().contains("cosine_with_restarts"));
    }
}
