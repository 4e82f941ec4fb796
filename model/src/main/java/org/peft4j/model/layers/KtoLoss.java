package org.peft4j.model.layers;

import org.peft4j.core.Peft4jException.ConfigException;

/// The loss of LLaMA-Factory's `stage: kto` (Kahneman–Tversky optimisation) over one micro-batch of N examples, each
/// an answer labelled desirable or undesirable (`kto_tag`), from the policy's and the reference's log-probability sums
/// ([SequenceLogps]) of the answers and of the "KL" sequences (each prompt with another example's answer). As
/// [PreferenceLoss], everything is double on N numbers: [#forward] is the reference, [#backward] its hand-written
/// derivative (checked by finite differences and against reference/preference_losses.py).
///
/// Sources, cited beside each formula: TRL `KTOTrainer.kto_loss` (as LLaMA-Factory's `CustomKTOTrainer` calls it) and
/// LLaMA-Factory `CustomKTOTrainer.get_batch_loss_metrics` (the mean over the micro-batch and the `pref_ftx` term).
/// Notation: p, p₀ = policy / reference log-probability sums of an example's answer; β = `pref_beta`;
/// w_d, w_u = `kto_chosen_weight`, `kto_rejected_weight`.
public final class KtoLoss {
    private KtoLoss() {}

    /// `pref_beta`, `kto_chosen_weight` (desirable), `kto_rejected_weight` (undesirable), `pref_ftx`.
    public record Config(double beta, double desirableWeight, double undesirableWeight, double ftx) {
        public Config {
            if (!(beta > 0)) throw new ConfigException("pref_beta must be > 0, got " + beta);
            if (!(desirableWeight >= 0) || !(undesirableWeight >= 0) || Double.isInfinite(desirableWeight) || Double.isInfinite(undesirableWeight))
                throw new ConfigException("kto_chosen_weight and kto_rejected_weight must be finite and >= 0, got "
                        + desirableWeight + " and " + undesirableWeight);
            if (!(ftx >= 0) || Double.isInfinite(ftx)) throw new ConfigException("pref_ftx must be finite and >= 0, got " + ftx);
        }
    }

    /// The KL estimate of a micro-batch, a constant of the gradient (TRL: `KL = (policy_KL_logps −
    /// reference_KL_logps).mean().detach()`, then `.clamp(min=0)`): max(0, mean(pKL − p₀KL)) over N KL sequences.
    public static double kl(double[] policyKl, double[] referenceKl, int N) {
        double s = 0;
        for (int i = 0; i < N; i++) s += policyKl[i] - referenceKl[i];
        return Math.max(0, s / N);
    }

    /// Per-example losses into `losses` and rewards β·(p − p₀) into `rewards` (N); returns N × the micro-batch loss,
    /// i.e. the sum a trainer divides by the examples of its accumulated step. With n_c desirable examples:
    /// - desirable: w_d·(1 − σ(β·((p − p₀) − KL)));  undesirable: w_u·(1 − σ(β·(KL − (p − p₀))))   (TRL kto_loss)
    /// - micro-batch loss = mean of these (`losses.nanmean()`), plus, when pref_ftx > 1e-6 and n_c > 0,
    ///   ftx · mean_c(−p_c / len_c) / n_c · N   (LLaMA-Factory get_batch_loss_metrics, "remember to rescale", as written)
    /// `lengths`: labelled tokens of each answer.
    public static double forward(double[] losses, double[] rewards, Config cfg, double[] p, double[] p0, int[] lengths,
                                 boolean[] desirable, double kl, int N) {
        double beta = cfg.beta(), sum = 0, sft = 0;
        int nc = 0;
        for (int i = 0; i < N; i++) {
            double ratio = p[i] - p0[i];
            double l = desirable[i] ? cfg.desirableWeight() * (1 - PreferenceLoss.sigmoid(beta * (ratio - kl)))
                    : cfg.undesirableWeight() * (1 - PreferenceLoss.sigmoid(beta * (kl - ratio)));
            losses[i] = l;
            rewards[i] = beta * ratio;
            sum += l;
            if (desirable[i]) { nc++; sft += -p[i] / checkedLength(lengths[i]); }
        }
        if (cfg.ftx() > 1e-6 && nc > 0) sum += (double) N * N / ((double) nc * nc) * cfg.ftx() * sft;
        return sum;
    }

    /// d(scale · [#forward]'s return)/dp into `dp` (N). KL is a constant (detached), the reference gets no gradient.
    public static void backward(double[] dp, Config cfg, double[] p, double[] p0, int[] lengths, boolean[] desirable,
                                double kl, int N, double scale) {
        double beta = cfg.beta();
        int nc = 0;
        for (int i = 0; i < N; i++) if (desirable[i]) nc++;
        double ftxFactor = cfg.ftx() > 1e-6 && nc > 0 ? (double) N * N / ((double) nc * nc) * cfg.ftx() : 0;
        for (int i = 0; i < N; i++) {
            double ratio = p[i] - p0[i], d;
            if (desirable[i]) {
                // d/dp w_d·(1 − σ(u)), u = β·(p − p₀ − KL): −w_d·β·σ(u)·σ(−u)
                double u = beta * (ratio - kl);
                d = -cfg.desirableWeight() * beta * PreferenceLoss.sigmoid(u) * PreferenceLoss.sigmoid(-u)
                        - ftxFactor / checkedLength(lengths[i]);
            } else {
                // d/dp w_u·(1 − σ(v)), v = β·(KL − (p − p₀)): +w_u·β·σ(v)·σ(−v)
                double v = beta * (kl - ratio);
                d = cfg.undesirableWeight() * beta * PreferenceLoss.sigmoid(v) * PreferenceLoss.sigmoid(-v);
            }
            dp[i] = scale * d;
        }
    }

    private static int checkedLength(int n) {
        if (n <= 0) throw new IllegalArgumentException("an answer with no labelled token has no mean log-probability");
        return n;
    }
}
