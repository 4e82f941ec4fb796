package org.peft4j.train.optim;

import org.junit.jupiter.api.Test;
import org.peft4j.core.Peft4jException;

import java.util.List;

import static org.junit.jupiter.api.Assertions.*;

/// clipGlobalNorm against a direct computation of torch's clip_grad_norm_, and the named finite check.
class GradClipTest {
    @Test
    void clipsToMaxNormAndReturnsPreClipNorm() {
        float[] a = {3f, 0f}, b = {4f, 12f, 0f};                         // norm sqrt(9 + 16 + 144) = 13
        double norm = GradClip.clipGlobalNorm(List.of(a, b), 1.0);
        assertEquals(13.0, norm, 0.0);
        float c = (float) (1.0 / (13.0 + 1e-6));                          // torch: max_norm / (total + 1e-6)
        assertArrayEquals(new float[]{3f * c, 0f}, a);
        assertArrayEquals(new float[]{4f * c, 12f * c, 0f}, b);
        double after = Math.sqrt((double) a[0] * a[0] + (double) b[0] * b[0] + (double) b[1] * b[1]);
        assertEquals(1.0, after, 1e-6, "clipped norm is max_norm (less the 1e-6 guard)");
    }

    @Test
    void belowMaxNormLeavesGradientsUntouched() {
        float[] a = {0.3f, -0.4f};
        assertEquals(0.5, GradClip.clipGlobalNorm(List.of(a), 1.0), 1e-7);
        assertArrayEquals(new float[]{0.3f, -0.4f}, a);
    }

    @Test
    void nonFiniteIsNamed() {
        float[] ok = {1f, 2f}, bad = {0f, Float.NaN};
        assertNull(GradClip.firstNonFinite(List.of("a", "b"), List.of(ok, ok)));
        assertEquals("lora_B[1] = NaN", GradClip.firstNonFinite(List.of("lora_A", "lora_B"), List.of(ok, bad)));
        var e = assertThrows(Peft4jException.class, () -> GradClip.requireFinite("gradient", List.of("q_proj.lora_A"),
                List.of(new float[]{Float.POSITIVE_INFINITY})));
        assertTrue(e.getMessage().contains("q_proj.lora_A[0] = Infinity"), e.getMessage());
        assertTrue(Double.isNaN(GradClip.clipGlobalNorm(List.of(bad), 1.0)));
    }
}
