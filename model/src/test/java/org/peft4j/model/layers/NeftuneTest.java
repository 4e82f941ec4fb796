package org.peft4j.model.layers;

import org.junit.jupiter.api.Test;
import org.peft4j.testkit.Shared;

import java.nio.file.Files;
import java.util.SplittableRandom;
import java.util.regex.Pattern;

import static org.junit.jupiter.api.Assertions.*;

/// NEFTune against ../shared/docs/vectors/neftune_vectors.json: the float32 magnitude bit for bit (as torch computes
/// it); the noise itself depends on the RNG, so its distribution is checked: |noise| ≤ mag and E[noise²] = mag²/3.
class NeftuneTest {
    @Test
    void magnitudeMatchesTorchFloat32Bits() throws Exception {
        String json = Files.readString(Shared.require("docs/vectors/neftune_vectors.json"));
        var m = Pattern.compile("\"alpha\": ([0-9.]+),\\s*\"batch\": \\d+,\\s*\"seq_len_padded\": (\\d+),\\s*\"hidden\": (\\d+),"
                + "\\s*\"mag_exact\": \"[^\"]+\",\\s*\"mag_torch_f32_hex\": \"([0-9a-f]{8})\"").matcher(json);
        int cases = 0;
        while (m.find()) {
            float alpha = Float.parseFloat(m.group(1));
            int L = Integer.parseInt(m.group(2)), d = Integer.parseInt(m.group(3));
            int expected = Integer.parseUnsignedInt(m.group(4), 16);
            float mag = Neftune.magnitude(alpha, L, d);
            assertEquals(Integer.toHexString(expected), Integer.toHexString(Float.floatToRawIntBits(mag)),
                    "mag for alpha " + alpha + ", L " + L + ", d " + d);
            cases++;
        }
        assertEquals(5, cases, "the vector file's 5 settings were all parsed");
    }

    @Test
    void noiseIsBoundedWithTheUniformVariance() {
        int B = 1, L = 64, d = 64, n = B * L * d;                      // the vector file's empirical_check setting
        float[] x = new float[n];
        Neftune.forward(x, B, L, d, 5f, true, new SplittableRandom(42));
        float mag = Neftune.magnitude(5f, L, d);
        assertEquals(0.078125f, mag);
        double ms = 0;
        for (float e : x) { assertTrue(Math.abs(e) <= mag, "|noise| ≤ mag"); ms += (double) e * e; }
        ms /= n;
        // mean of n i.i.d. squares of U(−mag, mag): sd = mag²·sqrt(4/45)/sqrt(n) ≈ 9.5e-6 here; 5 sd.
        double sd = mag * mag * Math.sqrt(4.0 / 45) / Math.sqrt(n);
        assertEquals(mag * mag / 3.0, ms, 5 * sd);
    }

    @Test
    void noNoiseInEvalAndSameSeedSameNoise() {
        float[] x = {1f, 2f, 3f, 4f}, y = x.clone();
        Neftune.forward(y, 1, 2, 2, 5f, false, new SplittableRandom(1));
        assertArrayEquals(x, y, "eval mode adds nothing");
        float[] a = x.clone(), b = x.clone();
        Neftune.forward(a, 1, 2, 2, 5f, true, new SplittableRandom(1));
        Neftune.forward(b, 1, 2, 2, 5f, true, new SplittableRandom(1));
        assertArrayEquals(a, b);
        assertFalse(java.util.Arrays.equals(x, a));
    }
}
