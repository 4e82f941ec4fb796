package org.peft4j.train.engine;

import org.peft4j.core.DType;
import org.peft4j.core.Peft4jException.ConfigException;
import org.peft4j.formats.safetensors.SafeTensors;
import org.peft4j.model.adapter.lora.Dropout;
import org.peft4j.model.layers.ValueHead;
import org.peft4j.train.data.Batcher;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;

/// One step of reward modelling (LLaMA-Factory's `stage: rm`) on a [TrainModel]: a batch of P pairs becomes 2P rows,
/// the P chosen sequences then the P rejected ones (as stage dpo); the decoder's final-normed hidden state at each
/// row's last non-pad token goes through TRL's value head ([ValueHead]: dropout 0.1 in training, TRL's default
/// `summary_dropout_prob`, then Linear(hidden, 1)); the pairwise loss −logσ(r_chosen − r_rejected) is averaged over
/// the pairs of the accumulated step. The head (`v_head.summary.weight`, `v_head.summary.bias`) is a trainable
/// parameter of the model besides the adapter (LoRA) or the weights (full, freeze); it is saved as LLaMA-Factory saves
/// it ([#save]: `value_head.safetensors`, its `fix_valuehead_checkpoint`). Accuracy (chosen > rejected, LLaMA-Factory's
/// `ComputeAccuracy`) is summed in [Totals].
public final class RewardObjective implements SequenceObjective {
    /// LLaMA-Factory's `V_HEAD_SAFE_WEIGHTS_NAME`.
    public static final String FILE = "value_head.safetensors";
    public static final String WEIGHT = "v_head.summary.weight", BIAS = "v_head.summary.bias";
    /// TRL ValueHead: `summary_dropout_prob` defaults to 0.1 when the model config has none.
    public static final float DROPOUT = 0.1f;

    private final TrainModel model;
    private final int C, maxPairs;
    private final long seed;
    private final float[] w, b, dw, db;
    private final float[] x, xd, mask, dxd, dx, dnormed;   // (2P, C) gathered states; (B·Tmax·C) gradient at the norm
    private final double[] values, dvalues, losses;
    private final int[] last;                               // (2P) flat position of each row's last token
    private int P, T;
    private boolean dropped;
    private Batcher.Batch batch;
    private long lastTokens;

    /// A value head initialised as torch's nn.Linear (weight and bias uniform in ±1/√hidden), seeded by `seed`, or read
    /// from `initial` (a `value_head.safetensors`, LLaMA-Factory's file) when not null. Registers the head as
    /// parameters of `model`.
    public RewardObjective(TrainModel model, long seed, Path initial) {
        if (model.B % 2 != 0) throw new IllegalArgumentException("reward pairs come as two rows; the model's batch " + model.B + " is odd");
        this.model = model;
        this.seed = seed;
        C = model.config.hiddenSize();
        maxPairs = model.B / 2;
        w = new float[C]; b = new float[1]; dw = new float[C]; db = new float[1];
        if (initial != null) read(initial, w, b);
        else {
            // torch nn.Linear.reset_parameters: kaiming_uniform_(a=√5) gives bound 1/√fan_in, the bias the same bound
            double bound = 1 / Math.sqrt(C);
            var rng = new SplittableRandom(seed * 0x9E3779B97F4A7C15L + 0x7A11);
            for (int c = 0; c < C; c++) w[c] = (float) rng.nextDouble(-bound, bound);
            b[0] = (float) rng.nextDouble(-bound, bound);
        }
        // full tuning: lm_head gets no gradient through the value head (a tied lm_head is the trained embedding)
        if (!model.config.tieWordEmbeddings()) model.freezeParam(org.peft4j.model.llama.LlamaWeights.LM_HEAD);
        model.addHeadParam(new Param(WEIGHT, new long[] {1, C}, w, dw));
        model.addHeadParam(new Param(BIAS, new long[] {1}, b, db));
        int R = model.B;
        x = new float[R * C]; xd = new float[R * C]; mask = new float[R * C]; dxd = new float[R * C]; dx = new float[R * C];
        dnormed = new float[model.B * model.Tmax * C];
        values = new double[R]; dvalues = new double[R]; losses = new double[maxPairs];
        last = new int[R];
    }

    /// The head's weight (C) and bias (1), the arrays the optimizer updates.
    public float[] weight() { return w; }
    public float[] bias() { return b; }

    /// The rewards of the last [#forward]: the P chosen values, then the P rejected ones.
    public double[] values() { return values; }

    @Override public int maxUnits() { return maxPairs; }

    @Override public long lastTokens() { return lastTokens; }

    /// LLaMA-Factory's PairwiseTrainer keeps the model in training mode: LoRA dropout and the head's dropout apply.
    @Override public boolean dropoutInTraining() { return true; }

    @Override
    public double forward(Units data, int[] ids, int padId, boolean training, long step, Totals totals, double[] refCache) {
        Batcher.Batch bt = SequenceObjective.batch(data, ids, padId);
        batch = bt;
        P = bt.B() / 2;
        T = bt.T();
        if (P < 1 || P > maxPairs) throw new IllegalArgumentException("a pair batch has P in [1, " + maxPairs + "] pairs; got " + P);
        int R = 2 * P;
        lastTokens = 0;
        for (int len : bt.lengths()) lastTokens += len;
        float[] h = model.forwardNormed(bt.inputIds(), R, T, training, step);
        // LLaMA-Factory: values.gather(index = attention_mask.sum(-1) - 1), the last non-pad token of each row
        for (int r = 0; r < R; r++) {
            last[r] = r * T + bt.lengths()[r] - 1;
            System.arraycopy(h, last[r] * C, x, r * C, C);
        }
        dropped = training && DROPOUT > 0;
        if (dropped) {
            // one stream per (seed, step, first unit of the batch): a micro-batch's mask does not depend on the others
            long z = (seed * 0x9E3779B97F4A7C15L + step) * 0xBF58476D1CE4E5B9L + ids[0] + 1;
            Dropout.forward(xd, mask, x, DROPOUT, new SplittableRandom(z), R * C);
        }
        float[] in = dropped ? xd : x;
        ValueHead.forward(values, in, w, b, R, C);
        double loss = ValueHead.pairwiseForward(losses, values, P);
        if (totals != null) {
            totals.loss += loss;
            totals.units += P;
            totals.rankedPairs += P;
            for (int p = 0; p < P; p++) totals.correct += values[p] > values[P + p] ? 1 : 0;
        }
        return loss;
    }

    /// Backward of the last [#forward]: `scale` = dLoss/d(sum of its pair losses), 1/(pairs in the accumulated step).
    @Override
    public void backward(double scale, long step) {
        int R = 2 * P;
        ValueHead.pairwiseBackward(dvalues, values, P, scale);
        Arrays.fill(dxd, 0, R * C, 0f);
        ValueHead.backward(dxd, dw, db, dvalues, dropped ? xd : x, w, R, C);
        float[] g = dxd;
        if (dropped) {
            Arrays.fill(dx, 0, R * C, 0f);
            Dropout.backward(dx, dxd, mask, R * C);
            g = dx;
        }
        Arrays.fill(dnormed, 0, R * T * C, 0f);
        for (int r = 0; r < R; r++) System.arraycopy(g, r * C, dnormed, last[r] * C, C);
        model.backwardNormed(batch.inputIds(), dnormed, step);
    }

    /// Writes `value_head.safetensors` into `dir` (float32, LLaMA-Factory's tensor names and shapes: weight (1, C),
    /// bias (1)), as its FixValueHeadModelCallback does beside the adapter or model of every save.
    public void save(Path dir) {
        try {
            Files.createDirectories(dir);
        } catch (java.io.IOException e) {
            throw new java.io.UncheckedIOException(e);
        }
        SafeTensors.write(dir.resolve(FILE), List.of(SafeTensors.Entry.ofFloats(WEIGHT, new long[] {1, C}, w, DType.F32),
                SafeTensors.Entry.ofFloats(BIAS, new long[] {1}, b, DType.F32)), Map.of("format", "pt"));
    }

    /// Reads a value head written by LLaMA-Factory or [#save] into w (C) and b (1).
    public static void read(Path file, float[] w, float[] b) {
        if (!Files.isRegularFile(file)) throw new ConfigException("value head " + file + " not found; a reward model folder holds " + FILE + " beside its adapter or weights");
        SafeTensors st = SafeTensors.open(file);
        try {
            for (String n : List.of(WEIGHT, BIAS))
                if (!st.contains(n)) throw new ConfigException(file + " has no tensor " + n + "; it is not a value head written by LLaMA-Factory or peft4j");
            float[] fw = st.readFloats(WEIGHT), fb = st.readFloats(BIAS);
            if (fw.length != w.length || fb.length != 1)
                throw new ConfigException(file + " holds a value head for hidden size " + fw.length + ", this model's is " + w.length + "; use the head trained on this model");
            System.arraycopy(fw, 0, w, 0, w.length);
            b[0] = fb[0];
        } finally {
            st.close();
        }
    }
}
