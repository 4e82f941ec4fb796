package org.peft4j.train.optim;

import java.util.List;

/// Stochastic gradient descent with optional momentum and (coupled, L2) weight decay.
/// Reference: `torch.optim.SGD` (dampening 0, nesterov false): g ← g + wd·p; buf ← g on the first step, else
/// buf ← μ·buf + g; p ← p − lr·buf. With μ = 0 no buffer is kept.
public final class Sgd {
    private final List<float[]> params; // each (n_i), updated in place
    private final List<float[]> grads;  // each (n_i), read only
    private final float[][] buf;        // each (n_i), or null without momentum
    private final double momentum, weightDecay;
    private long step;

    public Sgd(List<float[]> params, List<float[]> grads, double momentum, double weightDecay) {
        if (params.size() != grads.size())
            throw new IllegalArgumentException("SGD got " + params.size() + " parameters but " + grads.size() + " gradients");
        if (!(momentum >= 0 && momentum < 1)) throw new IllegalArgumentException("SGD momentum must be in [0, 1), got " + momentum);
        this.params = List.copyOf(params);
        this.grads = List.copyOf(grads);
        this.momentum = momentum;
        this.weightDecay = weightDecay;
        buf = momentum == 0 ? null : new float[params.size()][];
        for (int i = 0; i < params.size(); i++) {
            if (params.get(i).length != grads.get(i).length)
                throw new IllegalArgumentException("SGD parameter " + i + " has " + params.get(i).length
                        + " elements but its gradient has " + grads.get(i).length);
            if (buf != null) buf[i] = new float[params.get(i).length];
        }
    }

    public long step() { return step; }

    /// Momentum buffers, live, for checkpoints (null without momentum).
    public float[][] momentumBuffers() { return buf; }

    public void step(double lr) {
        boolean first = step == 0;
        step++;
        float flr = (float) lr, wd = (float) weightDecay, mu = (float) momentum;
        for (int t = 0; t < params.size(); t++) {
            float[] p = params.get(t), g = grads.get(t), b = buf == null ? null : buf[t];
            for (int i = 0; i < p.length; i++) {
                float d = g[i] + wd * p[i];
                if (b != null) d = b[i] = first ? d : mu * b[i] + d;
                p[i] -= flr * d;
            }
        }
    }
}
