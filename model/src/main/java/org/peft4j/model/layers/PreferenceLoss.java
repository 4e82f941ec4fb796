package org.peft4j.model.layers;

import org.peft4j.core.Peft4jException.ConfigException;

/// The pairwise preference losses of LLaMA-Factory's `stage: dpo` (`pref_loss`), per pair of sequences (chosen,
/// rejected) from their log-probability sums ([SequenceLogps]) and, for the DPO family, the reference model's.
/// Everything is in double on P numbers, so there is no vector kernel and no separate scalar twin: [#forward] is the
/// reference, [#backward] its hand-written derivative (checked by finite differences in the tests).
///
/// Notation: c, r = the policy's chosen / rejected log-probabilities; c₀, r₀ = the reference's; β = `pref_beta`.
/// IPO, ORPO and SimPO use the mean per labelled token (c = Σ / n), DPO and hinge the sum, as LLaMA-Factory's
/// `CustomDPOTrainer.concatenated_forward` (`if loss_type in ["ipo", "orpo", "simpo"]: all_logps /= valid_length`).
public final class PreferenceLoss {
    private PreferenceLoss() {}

    /// `pref_loss`. SIGMOID, HINGE and IPO compare against a reference model; ORPO and SimPO need none.
    public enum Kind {
        SIGMOID, HINGE, IPO, ORPO, SIMPO;

        public boolean needsReference() { return this == SIGMOID || this == HINGE || this == IPO; }

        /// Log-probabilities averaged over the labelled tokens of each sequence (else summed).
        public boolean averaged() { return this == IPO || this == ORPO || this == SIMPO; }

        public static Kind of(String name) {
            for (Kind k : values()) if (k.name().equalsIgnoreCase(name)) return k;
            throw new ConfigException("pref_loss '" + name + "' is not supported; use sigmoid, hinge, ipo, orpo or simpo");
        }
    }

    /// `pref_beta`, `pref_ftx` (weight of an SFT term −c/n on the chosen answer), `dpo_label_smoothing` (SIGMOID only),
    /// `simpo_gamma` (SimPO's target margin).
    public record Config(Kind kind, double beta, double ftx, double labelSmoothing, double simpoGamma) {
        public Config {
            if (!(beta > 0)) throw new ConfigException("pref_beta must be > 0, got " + beta);
            if (labelSmoothing < 0 || labelSmoothing > 0.5) throw new ConfigException("dpo_label_smoothing must be in [0, 0.5], got " + labelSmoothing);
            if (ftx < 0) throw new ConfigException("pref_ftx must be >= 0, got " + ftx);
        }
    }

    /// What [#forward] computes per pair, P pairs: the loss, the rewards (β·(c − c₀), or β·c without a reference, as
    /// TRL and LLaMA-Factory report them) and the log-probabilities the loss used (summed or averaged).
    public record Out(double[] losses, double[] rewardsChosen, double[] rewardsRejected, double[] logpsChosen, double[] logpsRejected) {
        public static Out allocate(int P) {
            return new Out(new double[P], new double[P], new double[P], new double[P], new double[P]);
        }
    }

    /// Per-pair losses into `out`; returns their sum. pc, pr: (P) policy log-probability sums; nc, nr: (P) labelled
    /// tokens; rc, rr: (P) the reference's sums (null without a reference).
    public static double forward(Out out, Config cfg, double[] pc, double[] pr, int[] nc, int[] nr, double[] rc, double[] rr, int P) {
        Kind k = cfg.kind();
        if (k.needsReference() && (rc == null || rr == null)) throw new IllegalArgumentException(k + " needs reference log-probabilities");
        double beta = cfg.beta(), total = 0;
        for (int p = 0; p < P; p++) {
            double c = logp(pc[p], nc[p], k), r = logp(pr[p], nr[p], k);
            double loss = switch (k) {
                case SIGMOID, HINGE, IPO -> {
                    // TRL DPOTrainer.dpo_loss: logits = (c − r) − (c₀ − r₀)
                    double z = (c - r) - (logp(rc[p], nc[p], k) - logp(rr[p], nr[p], k));
                    yield switch (k) {
                        // sigmoid: −(1 − ε)·logσ(βz) − ε·logσ(−βz)   (TRL `loss_type == "sigmoid"`, label_smoothing ε)
                        case SIGMOID -> -(1 - cfg.labelSmoothing()) * logSigmoid(beta * z) - cfg.labelSmoothing() * logSigmoid(-beta * z);
                        // hinge: relu(1 − βz)   (TRL `loss_type == "hinge"`, SLiC)
                        case HINGE -> Math.max(0, 1 - beta * z);
                        // ipo: (z − 1/(2β))²   (TRL `loss_type == "ipo"`, IPO paper eq. 17)
                        default -> (z - 1 / (2 * beta)) * (z - 1 / (2 * beta));
                    };
                }
                // LLaMA-Factory CustomDPOTrainer.odds_ratio_loss: log_odds = (c − r) − (log(1 − e^c) − log(1 − e^r)),
                // loss = −c + β·(−logσ(log_odds))
                case ORPO -> -c + beta * -logSigmoid(logOdds(c, r));
                // LLaMA-Factory CustomDPOTrainer.simpo_loss: −logσ(β·((c − r) − γ/β))
                case SIMPO -> -logSigmoid(beta * ((c - r) - cfg.simpoGamma() / beta));
            };
            // LLaMA-Factory get_batch_loss_metrics: losses += ftx · (−c_sum / n_c)
            if (cfg.ftx() > 1e-6) loss += cfg.ftx() * -(pc[p] / nc[p]);
            out.losses()[p] = loss;
            out.logpsChosen()[p] = c;
            out.logpsRejected()[p] = r;
            out.rewardsChosen()[p] = beta * (k.needsReference() ? c - logp(rc[p], nc[p], k) : c);
            out.rewardsRejected()[p] = beta * (k.needsReference() ? r - logp(rr[p], nr[p], k) : r);
            total += loss;
        }
        return total;
    }

    /// d(Σ_p scale·loss_p)/d pc and d pr, written into dpc, dpr: (P). The reference gets no gradient.
    public static void backward(double[] dpc, double[] dpr, Config cfg, double[] pc, double[] pr, int[] nc, int[] nr,
                                double[] rc, double[] rr, int P, double scale) {
        Kind k = cfg.kind();
        double beta = cfg.beta();
        for (int p = 0; p < P; p++) {
            double c = logp(pc[p], nc[p], k), r = logp(pr[p], nr[p], k);
            double dc, dr;   // d loss / d c, d r (of the averaged or summed values)
            switch (k) {
                case SIGMOID, HINGE, IPO -> {
                    double z = (c - r) - (logp(rc[p], nc[p], k) - logp(rr[p], nr[p], k)), dz;
                    if (k == Kind.SIGMOID) {
                        // d/dz −logσ(βz) = −β·σ(−βz);  d/dz −logσ(−βz) = β·σ(βz)
                        double e = cfg.labelSmoothing();
                        dz = -(1 - e) * beta * sigmoid(-beta * z) + e * beta * sigmoid(beta * z);
                    } else if (k == Kind.HINGE) dz = 1 - beta * z > 0 ? -beta : 0;
                    else dz = 2 * (z - 1 / (2 * beta));
                    dc = dz;
                    dr = -dz;
                }
                case ORPO -> {
                    // d log_odds/dc = 1/(1 − e^c), d log_odds/dr = −1/(1 − e^r); d(−logσ(x))/dx = −σ(−x)
                    double g = -sigmoid(-logOdds(c, r)) * beta;
                    dc = -1 + g / -Math.expm1(c);
                    dr = -g / -Math.expm1(r);
                }
                case SIMPO -> {
                    double u = beta * ((c - r) - cfg.simpoGamma() / beta), g = -sigmoid(-u) * beta;
                    dc = g;
                    dr = -g;
                }
                default -> throw new AssertionError(k);
            }
            // averaged log-probabilities: d(Σ/n)/dΣ = 1/n
            double dsc = k.averaged() ? dc / nc[p] : dc, dsr = k.averaged() ? dr / nr[p] : dr;
            if (cfg.ftx() > 1e-6) dsc += -cfg.ftx() / nc[p];
            dpc[p] = scale * dsc;
            dpr[p] = scale * dsr;
        }
    }

    private static double logp(double sum, int n, Kind k) {
        if (!k.averaged()) return sum;
        if (n <= 0) throw new IllegalArgumentException("a sequence with no labelled token has no mean log-probability");
        return sum / n;
    }

    /// log(p/(1−p)) of c minus that of r, with log(1 − e^x) as log(−expm1(x)) (exact near x = 0).
    private static double logOdds(double c, double r) {
        return (c - r) - (Math.log(-Math.expm1(c)) - Math.log(-Math.expm1(r)));
    }

    /// log σ(x) = −log(1 + e^{−x}), stable for both signs.
    static double logSigmoid(double x) { return x >= 0 ? -Math.log1p(Math.exp(-x)) : x - Math.log1p(Math.exp(x)); }

    static double sigmoid(double x) { return x >= 0 ? 1 / (1 + Math.exp(-x)) : Math.exp(x) / (1 + Math.exp(x)); }
}
