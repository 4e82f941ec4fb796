package org.peft4j.testkit;

import java.util.SplittableRandom;
import java.util.function.DoubleSupplier;

import static org.junit.jupiter.api.Assertions.fail;

/// Central finite differences against a hand-written backward (ggml `test-backend-ops`, tinygrad `helper_test_op`).
///
/// The ops compute in float, so there is no double-precision forward to difference. What keeps the check sharp:
/// - the op is reduced to a scalar `loss = Σ r·f(x)` with a fixed random r, accumulated in double in a fixed order,
///   so outputs a perturbation does not touch cancel exactly and only the touched ones add float rounding;
/// - the step is large for float, h = [#STEP]·max(1, |x|), the divisor is the difference of the two perturbed
///   float values actually used, not 2h, and two central differences are combined by Richardson extrapolation,
///   (4·D(h) − D(2h)) / 3, which cancels the h² truncation term so that a large h costs no accuracy;
/// - the error is relative, `|a − n| / max(|a|, |n|, floor)`, floor = [#FLOOR] of the largest analytic gradient of
///   that tensor, so a near-zero gradient is judged on the tensor's scale instead of its own noise.
/// Every element of every checked tensor is perturbed, so keep shapes small (hundreds of elements).
public final class GradCheck {
    /// Step relative to max(1, |x|). Float rounding of an O(1) loss term is ~6e-8, which divided by 2h = 2e-2 gives
    /// ~3e-6 of noise per touched output, and grows as 1/h for smaller steps; after extrapolation the truncation
    /// error is O(h⁴) ≈ 1e-8. (Plain central differences at this step measured 3.5e-3 on the composite chain,
    /// and at 1e-3 they measured 1.5e-2 on attention's small gradients, one term or the other dominating.)
    public static final double STEP = 1e-2;
    /// Largest accepted relative error. Correct backwards measure at most 7.5e-4 in GradCheckTest (float rounding
    /// of the forward); a wrong term (a missing factor, a dropped branch, a sign) is off by O(0.1..1), so 1e-2
    /// separates the two by an order of magnitude on each side.
    public static final double TOLERANCE = 1e-2;
    /// Elements whose gradient is below 1% of the tensor's largest are compared on that scale: their own relative
    /// error is dominated by rounding noise, not by the backward.
    public static final double FLOOR = 1e-2;

    private GradCheck() {}

    /// One input of the op under test. value is perturbed in place during the check and restored; grad is the
    /// array the backward adds into (zeroed by the check), or null for an input that gets no gradient.
    public record Param(String name, float[] value, float[] grad) {}

    /// Recomputes the op's output from the current param values (and keeps whatever its backward needs).
    @FunctionalInterface public interface Forward { float[] run(); }

    /// Adds the gradients of `Σ dout·output` into the params' grad arrays.
    @FunctionalInterface public interface Backward { void run(float[] dout); }

    /// The worst element seen: param name, flat index, analytic and numeric gradient, relative error.
    public record Worst(String param, int index, double analytic, double numeric, double error) {
        @Override public String toString() {
            return String.format("%s[%d]: analytic %.8g numeric %.8g (relative error %.3g)", param, index, analytic, numeric, error);
        }
    }

    /// Central difference (L(x+h) − L(x−h)) / (x₊ − x₋) at element j, dividing by the float points actually used.
    private static double slope(DoubleSupplier loss, float[] x, int j, double h) {
        float x0 = x[j], xp = (float) (x0 + h), xm = (float) (x0 - h);
        x[j] = xp;
        double lp = loss.getAsDouble();
        x[j] = xm;
        double lm = loss.getAsDouble();
        x[j] = x0;
        return (lp - lm) / ((double) xp - xm);
    }

    /// Checks a tensor-valued op: loss = Σ r·forward() with r ~ U(−1, 1) from a fixed seed, dout = r.
    /// Fails (AssertionError) naming the op and the worst element; returns the worst element otherwise.
    public static Worst check(String op, Forward forward, Backward backward, Param... params) {
        float[] probe = forward.run();
        float[] r = new float[probe.length];
        SplittableRandom rng = new SplittableRandom(0x6EAD_C4EC_4L);
        for (int i = 0; i < r.length; i++) r[i] = (float) rng.nextDouble(-1, 1);
        DoubleSupplier loss = () -> {
            float[] out = forward.run();
            double s = 0;
            for (int i = 0; i < out.length; i++) s += (double) r[i] * out[i];
            return s;
        };
        return checkScalar(op, loss, () -> backward.run(r), params);
    }

    /// Checks a scalar loss (e.g. a composite ending in cross-entropy): backward adds dLoss/dparam into the grads.
    public static Worst checkScalar(String op, DoubleSupplier loss, Runnable backward, Param... params) {
        for (Param p : params) if (p.grad() != null) java.util.Arrays.fill(p.grad(), 0f);
        loss.getAsDouble();
        backward.run();
        Worst worst = new Worst("-", -1, 0, 0, 0);
        for (Param p : params) {
            if (p.grad() == null) continue;
            float[] x = p.value(), a = p.grad().clone();
            double scale = 0;
            for (float g : a) scale = Math.max(scale, Math.abs(g));
            double floor = Math.max(FLOOR * scale, 1e-30);
            for (int j = 0; j < x.length; j++) {
                double h = STEP * Math.max(1.0, Math.abs(x[j]));
                double numeric = (4 * slope(loss, x, j, h) - slope(loss, x, j, 2 * h)) / 3;
                double err = Math.abs(a[j] - numeric) / Math.max(Math.max(Math.abs(a[j]), Math.abs(numeric)), floor);
                if (worst.index() < 0 || !Double.isNaN(worst.error()) && !(err <= worst.error())) worst = new Worst(p.name(), j, a[j], numeric, err);
            }
        }
        loss.getAsDouble(); // leave the op's saved state as it was for the unperturbed inputs
        if (!(worst.error() <= TOLERANCE))
            fail(op + ": analytic gradient disagrees with central differences (tolerance " + TOLERANCE + "); worst " + worst);
        return worst;
    }
}
