package org.peft4j.train.optim;

import org.peft4j.core.Peft4jException.ConfigException;
import org.peft4j.train.engine.Param;

import java.util.List;
import java.util.Locale;

/// Adam-mini (Zhang et al. 2024, arXiv:2406.16793): Adam's first moment per element, but one second-moment value
/// per block of parameters, the mean of g² over the block. LLaMA-Factory's `use_adam_mini` builds
/// `adam_mini.Adam_mini(named_parameters, dim = hidden_size, n_heads = num_attention_heads, n_kv_heads = ...)`
/// (LLaMA-Factory src/llamafactory/train/trainer_utils.py `_create_adam_mini_optimizer`). The partition follows
/// zyushun/Adam-mini adam_mini/adam_mini.py `Adam_mini.__init__` / `step` (v1.1), matched on the lower-cased tensor
/// name, first match wins:
///
/// | name contains | block (one v value each) |
/// |---|---|
/// | `bias` | one element (plain Adam) |
/// | `q_proj`, `k_proj`, `wq`, `wk`, `query`, `key` | one head: dim·dim / n_heads consecutive elements |
/// | `embed`, `embd`, `wte`, `lm_head`, `output`, `final_layer`, `v_proj`, `wv`, `value`, `o_proj`, `wo`, `attn.proj`, `mlp`, `feed_forward`, `linear` | one row (output neuron / token) |
/// | anything else (the RMSNorm weights) | the whole tensor |
///
/// Weight decay is 0 for names containing `norm`, `ln` or `bias`. For each block with mean square ḡ²:
/// ```
/// v ← β2·v + (1 − β2)·mean(g²)        p ← p·(1 − lr·wd)        m ← m + (1 − β1)·(g − m)
/// p ← p − lr · m · (1/(1 − β1ᵗ)) / (√v / √(1 − β2ᵗ) + eps)
/// ```
/// State: n floats of m per tensor and one float of v per block (for a Llama MLP matrix, `rows` values instead of
/// rows·cols). Allocates nothing per step.
public final class AdamMini {
    /// How a tensor is partitioned; `block` = elements per second-moment value.
    public enum Kind { ELEMENT, HEAD, ROW, TENSOR }

    private final List<Param> params;
    private final float[][] m, v;
    private final int[] block;
    private final Kind[] kinds;
    private final boolean[] decays;
    private final AdamW.Config config;
    private long step;

    /// `hidden` and `heads`: the model's hidden_size and num_attention_heads (a q/k head is hidden²/heads elements).
    public AdamMini(List<Param> params, AdamW.Config config, int hidden, int heads) {
        this.params = List.copyOf(params);
        this.config = config;
        int n = params.size();
        m = new float[n][];
        v = new float[n][];
        block = new int[n];
        kinds = new Kind[n];
        decays = new boolean[n];
        for (int i = 0; i < n; i++) {
            Param p = params.get(i);
            int len = p.data().length;
            Kind k = kindOf(p.name());
            int b = switch (k) {
                case ELEMENT -> 1;
                case HEAD -> {
                    if ((long) hidden * hidden % heads != 0)
                        throw new ConfigException("use_adam_mini: hidden_size² " + (long) hidden * hidden + " is not a multiple of num_attention_heads " + heads);
                    yield (int) ((long) hidden * hidden / heads);
                }
                case ROW -> (int) (len / p.shape()[0]);
                case TENSOR -> len;
            };
            if (b < 1 || len % b != 0)
                throw new ConfigException("use_adam_mini: '" + p.name() + "' has " + len + " elements, not a whole number of Adam-mini blocks of "
                        + b + " (one per head: hidden_size²/num_attention_heads); Adam-mini cannot partition this tensor, drop use_adam_mini");
            kinds[i] = k;
            block[i] = b;
            decays[i] = decays(p.name());
            m[i] = new float[len];
            v[i] = new float[len / b];
        }
    }

    /// The partition of a tensor by its name (zyushun/Adam-mini `Adam_mini.step`, the order of its name checks).
    public static Kind kindOf(String name) {
        String n = name.toLowerCase(Locale.ROOT);
        if (n.contains("bias")) return Kind.ELEMENT;
        for (String s : List.of("k_proj", "q_proj", "wq", "wk", "query", "key")) if (n.contains(s)) return Kind.HEAD;
        for (String s : List.of("embed", "embd", "wte", "lm_head", "output", "final_layer", "v_proj", "wv", "value",
                "o_proj", "wo", "attn.proj", "feed_forward", "linear", "mlp")) if (n.contains(s)) return Kind.ROW;
        return Kind.TENSOR;
    }

    /// Second-moment values Adam-mini keeps for a tensor (`estimate`).
    public static long vCount(String name, long[] shape, int hidden, int heads) {
        long n = 1;
        for (long d : shape) n *= d;
        return switch (kindOf(name)) {
            case ELEMENT -> n;
            case HEAD -> n / Math.max(1, (long) hidden * hidden / heads);
            case ROW -> shape[0];
            case TENSOR -> 1;
        };
    }

    /// Adam-mini: no weight decay on norms and biases (`"norm" in name or "ln" in name or "bias" in name`).
    static boolean decays(String name) {
        String n = name.toLowerCase(Locale.ROOT);
        return !(n.contains("norm") || n.contains("ln") || n.contains("bias"));
    }

    public long step() { return step; }

    /// Second-moment values kept (for `estimate` and the tests).
    public long vValues() { long s = 0; for (float[] x : v) s += x.length; return s; }

    public Kind kind(int i) { return kinds[i]; }

    public void step(double lr) {
        step++;
        double bc1 = 1 - Math.pow(config.beta1(), step), bc2 = Math.sqrt(1 - Math.pow(config.beta2(), step));
        float b2 = (float) config.beta2(), ob2 = (float) (1 - config.beta2()), ob1 = (float) (1 - config.beta1());
        float eps = (float) config.eps(), invBc1 = (float) (1 / bc1), bc2f = (float) bc2, lrf = (float) lr;
        for (int t = 0; t < m.length; t++) {
            float[] p = params.get(t).data(), g = params.get(t).grad(), mt = m[t], vt = v[t];
            int b = block[t];
            float decay = decays[t] && config.weightDecay() > 0 ? (float) (1 - lr * config.weightDecay()) : 1f;
            for (int k = 0; k < vt.length; k++) {
                int from = k * b, to = from + b;
                double sq = 0;
                for (int i = from; i < to; i++) sq += (double) g[i] * g[i];
                float vk = b2 * vt[k] + ob2 * (float) (sq / b);
                vt[k] = vk;
                float h = (float) Math.sqrt(vk) / bc2f + eps;
                float stepSize = invBc1 / h;
                for (int i = from; i < to; i++) {
                    float mi = mt[i] + ob1 * (g[i] - mt[i]);
                    mt[i] = mi;
                    p[i] = p[i] * decay - lrf * (mi * stepSize);
                }
            }
        }
    }

    /// Live view for saving: per tensor its m (n) and v (one per block).
    public AdamW.State state() { return new AdamW.State(step, List.of(m), List.of(v)); }

    public void load(AdamW.State s) {
        if (s.m().size() != m.length) throw new ConfigException("Adam-mini state has " + s.m().size() + " tensors, this run has " + m.length
                + "; resume with the same trainable parameters as the checkpoint");
        for (int i = 0; i < m.length; i++) {
            if (s.m().get(i).length != m[i].length || s.v().get(i).length != v[i].length)
                throw new ConfigException("Adam-mini state tensor " + i + " does not match '" + params.get(i).name() + "'; the checkpoint belongs to another model or optimizer");
            System.arraycopy(s.m().get(i), 0, m[i], 0, m[i].length);
            System.arraycopy(s.v().get(i), 0, v[i], 0, v[i].length);
        }
        step = s.step();
    }
}
