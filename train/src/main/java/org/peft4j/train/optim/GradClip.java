package org.peft4j.train.optim;

import java.util.List;

/// Global-norm gradient clipping and a finite check over named gradients.
/// Reference: `torch.nn.utils.clip_grad_norm_` (norm type 2), as HF Trainer calls it with `max_grad_norm`.
public final class GradClip {
    private GradClip() {}

    /// Scales every gradient by min(1, maxNorm / (norm + 1e-6)) and returns the norm before clipping,
    /// norm = sqrt(Σ g²) over all tensors, accumulated in double in list order (bit-reproducible).
    /// A NaN or infinite gradient makes the norm NaN/Inf; the gradients are then left as they are (check with
    /// [#firstNonFinite] to name the culprit).
    public static double clipGlobalNorm(List<float[]> grads, double maxNorm) {
        double ss = 0;
        for (float[] g : grads)
            for (float x : g) ss += (double) x * x;
        double norm = Math.sqrt(ss);
        double coef = maxNorm / (norm + 1e-6);
        if (coef < 1) {
            float c = (float) coef;
            for (float[] g : grads)
                for (int i = 0; i < g.length; i++) g[i] *= c;
        }
        return norm;
    }

    /// null when every element is finite, else "name[index] = value" for the first offending element.
    /// names.get(i) names tensors.get(i).
    public static String firstNonFinite(List<String> names, List<float[]> tensors) {
        for (int t = 0; t < tensors.size(); t++) {
            float[] a = tensors.get(t);
            for (int i = 0; i < a.length; i++)
                if (!Float.isFinite(a[i])) return names.get(t) + "[" + i + "] = " + a[i];
        }
        return null;
    }

    /// Throws, naming the first non-finite element, e.g. before an optimizer step.
    public static void requireFinite(String what, List<String> names, List<float[]> tensors) {
        String bad = firstNonFinite(names, tensors);
        if (bad != null)
            throw new org.peft4j.core.Peft4jException(what + " is not finite: " + bad
                    + "; lower the learning rate, enable gradient clipping (max_grad_norm) or check the data for empty rows");
    }
}
