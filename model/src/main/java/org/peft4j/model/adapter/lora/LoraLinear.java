package org.peft4j.model.adapter.lora;

import org.peft4j.core.Gemm;
import org.peft4j.core.kernels.PanelGemm;
import org.peft4j.core.kernels.ScalarGemm;
import org.peft4j.core.Peft4jException.ConfigException;

import java.util.random.RandomGenerator;

/// LoRA on one frozen linear layer: y = x·W0ᵀ + b + s·(drop(x)·Aᵀ)·Bᵀ, s = alpha/r (or alpha/√r with rsLoRA).
/// Reference: PEFT `tuners/lora/layer.py` `Linear.forward`, `get_delta_weight`, `reset_lora_parameters` (specs §2.3).
/// The base layer (y = x·W0ᵀ + b and its dx) is the caller's; dropout is [Dropout]; DoRA is [DoraLinear].
///
/// Shapes as PEFT stores them: A = lora_A.weight (r, K), B = lora_B.weight (M, r), W0 (M, K); x (N, K), y (N, M).
public final class LoraLinear {
    private static final PanelGemm PANEL = PanelGemm.INSTANCE;

    private LoraLinear() {}

    /// Adds the adapter into y, which holds the base output: h = xd·Aᵀ, then y += s·h·Bᵀ.
    /// y: (N, M)   h: (N, r), kept for backward   xd: (N, K) = drop(x), kept for backward   a: (r, K)   b: (M, r)
    public static void forward(Gemm gemm, float[] y, float[] h, float[] xd, float[] a, float[] b, float s,
                               int N, int K, int M, int r) {
        forward(gemm, y, h, xd, a, b, s, 0, N, K, M, r);
    }

    /// As above over rows [row0, row0 + N) of y, h and xd (a run of batch rows that share this adapter).
    public static void forward(Gemm gemm, float[] y, float[] h, float[] xd, float[] a, float[] b, float s,
                               int row0, int N, int K, int M, int r) {
        gemm.sgemm(false, true, N, r, K, 1f, xd, row0 * K, K, a, 0, K, 0f, h, row0 * r, r);  // h = xd·Aᵀ
        gemm.sgemm(false, true, N, M, r, s, h, row0 * r, r, b, 0, r, 1f, y, row0 * M, M);    // y += s·h·Bᵀ
    }

    /// Forward mirrored: dB += s·dyᵀ·h, dh = s·dy·B, dA += dhᵀ·xd, dxd += dh·A. The first three run on
    /// [PanelGemm] (on `gemm` when it is the scalar reference), the last on `gemm`.
    /// Adds into dA, dB and dxd (+=); dxd is the gradient of drop(x) (route it through [Dropout#backward], or pass
    /// dx itself when there is no dropout), or null when x needs no gradient.
    /// dxd: (N, K)   dA: (r, K)   dB: (M, r)   dh: (N, r) scratch, overwritten   dy: (N, M)
    public static void backward(Gemm gemm, float[] dxd, float[] dA, float[] dB, float[] dh, float[] dy,
                                float[] xd, float[] h, float[] a, float[] b, float s, int N, int K, int M, int r) {
        if (gemm instanceof ScalarGemm) {   // the reference stays plain loops
            gemm.sgemm(true, false, M, r, N, s, dy, 0, M, h, 0, r, 1f, dB, 0, r);
            gemm.sgemm(false, false, N, r, M, s, dy, 0, M, b, 0, r, 0f, dh, 0, r);
            gemm.sgemm(true, false, r, K, N, 1f, dh, 0, r, xd, 0, K, 1f, dA, 0, K);
        } else {                            // one side is r wide, the depth long: in-place panels beat packing
            PANEL.sgemmParallel(true, M, r, N, s, dy, 0, M, h, 0, r, 1f, dB, 0, r);    // dB += s·dyᵀ·h
            PANEL.sgemmParallel(false, N, r, M, s, dy, 0, M, b, 0, r, 0f, dh, 0, r);   // dh = s·dy·B
            PANEL.sgemmParallel(true, r, K, N, 1f, dh, 0, r, xd, 0, K, 1f, dA, 0, K);  // dA += dhᵀ·xd
        }
        if (dxd != null)
            gemm.sgemm(false, false, N, K, r, 1f, dh, 0, r, a, 0, K, 1f, dxd, 0, K); // dxd += dh·A
    }

    /// W ← W + s·B·A, in place: afterwards x·Wᵀ equals the unmerged output up to float rounding.
    /// w: (M, K)   a: (r, K)   b: (M, r)
    public static void merge(Gemm gemm, float[] w, float[] a, float[] b, float s, int M, int K, int r) {
        gemm.sgemm(false, false, M, K, r, s, b, 0, r, a, 0, K, 1f, w, 0, K);
    }

    /// W ← W − s·B·A, the inverse of [#merge] up to float rounding.
    public static void unmerge(Gemm gemm, float[] w, float[] a, float[] b, float s, int M, int K, int r) {
        gemm.sgemm(false, false, M, K, r, -s, b, 0, r, a, 0, K, 1f, w, 0, K);
    }

    /// Fresh adapter weights as PEFT's `reset_lora_parameters`, from an explicit seeded stream.
    /// PEFT's numbers come from torch's generator and cannot be reproduced; the distributions are the same.
    /// a: (r, K)   b: (M, r)
    public static void init(float[] a, float[] b, LoraConfig.Init init, RandomGenerator rng, int K, int M, int r) {
        switch (init) {
            case KAIMING_UNIFORM -> { kaimingUniform(a, rng, K); java.util.Arrays.fill(b, 0, M * r, 0f); }
            case GAUSSIAN -> {
                for (int i = 0; i < r * K; i++) a[i] = (float) rng.nextGaussian(0, 1.0 / r);
                java.util.Arrays.fill(b, 0, M * r, 0f);
            }
            case NO_INIT -> { kaimingUniform(a, rng, K); kaimingUniform(b, rng, r); } // nn.Linear's own init
            case PISSA -> throw new ConfigException("PiSSA initialises A and B from the base weight; call Pissa.init with it");
        }
    }

    /// torch.nn.init.kaiming_uniform_(w, a = √5): U(−bound, bound), bound = √(6 / ((1 + a²)·fanIn)) = 1/√fanIn.
    public static void kaimingUniform(float[] w, RandomGenerator rng, int fanIn) {
        if (fanIn <= 0) throw new ConfigException("kaiming_uniform needs fan_in > 0, got " + fanIn);
        double a = Math.sqrt(5);
        double bound = Math.sqrt(6.0 / ((1 + a * a) * fanIn));
        for (int i = 0; i < w.length; i++) w[i] = (float) rng.nextDouble(-bound, bound);
    }
}
