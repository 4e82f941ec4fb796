package org.peft4j.model.adapter.ptuning;

import org.peft4j.model.adapter.lora.LoraLinear;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.List;
import java.util.random.RandomGenerator;

/// PEFT's PromptEncoder (P-tuning, `tuners/p_tuning/model.py`), with an explicit forward and backward: the virtual
/// tokens' embeddings are an encoder's output over n trained input vectors `embedding.weight` (n, C), during training
/// only (PEFT saves the output as `prompt_embeddings`; inference needs no encoder).
///
/// - MLP (PEFT's default): out = L₂(relu(L₁(relu(L₀(E))))), L₀: C→H, L₁: H→H, L₂: H→C (`mlp_head.0/2/4`).
/// - LSTM: a bidirectional torch.nn.LSTM of `numLayers` layers (hidden H each way, zero initial states), then
///   out = M₁(relu(M₀(Y))), M₀: 2H→2H, M₁: 2H→C (`mlp_head.0/2`). One cell, torch's gate order (i, f, g, o):
///   a = W_ih·x_t + b_ih + W_hh·h_{t−1} + b_hh; i, f, o = σ(a_i, a_f, a_o), g = tanh(a_g);
///   c_t = f·c_{t−1} + i·g, h_t = o·tanh(c_t). The reverse direction runs t = n−1 … 0; layer l+1 reads [h→; h←].
///
/// PEFT feeds one row of the indices 0 … n−1 (`prompt_tokens[:1]`) and expands the output over the batch, so the
/// encoder runs once per forward. All buffers are allocated here; [#forward] and [#backward] allocate nothing.
/// Initialisation as torch's modules: embedding N(0, 1); Linear weight and bias U(±1/√in); LSTM U(±1/√H).
public final class PromptEncoder {
    /// One trainable tensor: PEFT's parameter name under `prompt_encoder.<adapter>.`, its shape, values and gradient.
    public record Tensor(String name, long[] shape, float[] data, float[] grad) {}

    public final PromptEncoderConfig config;
    /// Virtual tokens n, token dim C, encoder hidden size H.
    public final int n, C, H;
    private final List<Tensor> tensors = new ArrayList<>();
    private final float[] emb, dEmb;      // (n, C) embedding.weight and its gradient
    private final float[] dx0;            // (n, C) dL/d(embedding.weight) of the running backward

    // LSTM: (layers)(2 directions) cells; each layer's output (n, 2H) and its gradient; null for MLP
    private final Cell[][] lstm;
    private final float[][] lstmOut, dLstmOut;
    private final float[] dh, dc, da;     // (H), (H), (4H) backward-through-time scratch

    // The MLP head: linears, each one's input (head 0 reads emb or the last LSTM layer's output; head i > 0 reads
    // relu(head i−1), kept for relu's backward), the gradients of those inputs, and the output (n, C).
    private final Linear[] head;
    private final float[][] headIn, dHeadIn;
    private final float[] out;

    /// A new encoder initialised as PEFT's modules are (from `rng`) for a model of hidden size `tokenDim`.
    public PromptEncoder(PromptEncoderConfig config, int tokenDim, RandomGenerator rng) {
        this.config = config;
        this.n = config.numVirtualTokens(); this.C = tokenDim; this.H = config.hiddenSize(tokenDim);
        emb = new float[n * C]; dEmb = new float[n * C]; dx0 = new float[n * C];
        for (int i = 0; i < emb.length; i++) emb[i] = (float) rng.nextGaussian();
        tensors.add(new Tensor("embedding.weight", new long[]{n, C}, emb, dEmb));
        if (config.lstm()) {
            int L = config.numLayers();
            lstm = new Cell[L][2];
            lstmOut = new float[L][n * 2 * H]; dLstmOut = new float[L][n * 2 * H];
            for (int l = 0; l < L; l++)
                for (int d = 0; d < 2; d++) {
                    Cell c = lstm[l][d] = new Cell(l == 0 ? C : 2 * H, H, n, rng);
                    String s = "_l" + l + (d == 1 ? "_reverse" : "");
                    tensors.add(new Tensor("lstm_head.weight_ih" + s, new long[]{4 * H, c.in}, c.wih, c.dwih));
                    tensors.add(new Tensor("lstm_head.weight_hh" + s, new long[]{4 * H, H}, c.whh, c.dwhh));
                    tensors.add(new Tensor("lstm_head.bias_ih" + s, new long[]{4 * H}, c.bih, c.dbih));
                    tensors.add(new Tensor("lstm_head.bias_hh" + s, new long[]{4 * H}, c.bhh, c.dbhh));
                }
            dh = new float[H]; dc = new float[H]; da = new float[4 * H];
            head = new Linear[]{new Linear(2 * H, 2 * H, rng), new Linear(2 * H, C, rng)};
            headIn = new float[][]{lstmOut[L - 1], new float[n * 2 * H]};
            dHeadIn = new float[][]{dLstmOut[L - 1], new float[n * 2 * H]};
        } else {
            lstm = null; lstmOut = dLstmOut = null; dh = dc = da = null;
            head = new Linear[]{new Linear(C, H, rng), new Linear(H, H, rng), new Linear(H, C, rng)};
            headIn = new float[][]{emb, new float[n * H], new float[n * H]};
            dHeadIn = new float[][]{dx0, new float[n * H], new float[n * H]};
        }
        for (int i = 0; i < head.length; i++) {   // nn.Sequential: the linears at even indices, ReLUs between
            Linear m = head[i];
            tensors.add(new Tensor("mlp_head." + 2 * i + ".weight", new long[]{m.out, m.in}, m.w, m.dw));
            tensors.add(new Tensor("mlp_head." + 2 * i + ".bias", new long[]{m.out}, m.b, m.db));
        }
        out = new float[n * C];
    }

    /// The trainable tensors in PEFT's `named_parameters` order (embedding, lstm_head, mlp_head).
    public List<Tensor> tensors() { return Collections.unmodifiableList(tensors); }

    /// The names and shapes of [#tensors] without building the encoder (memory estimates).
    public static List<java.util.Map.Entry<String, long[]>> shapes(PromptEncoderConfig config, int tokenDim) {
        int n = config.numVirtualTokens(), C = tokenDim, H = config.hiddenSize(tokenDim);
        List<java.util.Map.Entry<String, long[]>> out = new ArrayList<>();
        out.add(java.util.Map.entry("embedding.weight", new long[]{n, C}));
        int[][] head;
        if (config.lstm()) {
            for (int l = 0; l < config.numLayers(); l++)
                for (String s : new String[]{"_l" + l, "_l" + l + "_reverse"}) {
                    out.add(java.util.Map.entry("lstm_head.weight_ih" + s, new long[]{4L * H, l == 0 ? C : 2L * H}));
                    out.add(java.util.Map.entry("lstm_head.weight_hh" + s, new long[]{4L * H, H}));
                    out.add(java.util.Map.entry("lstm_head.bias_ih" + s, new long[]{4L * H}));
                    out.add(java.util.Map.entry("lstm_head.bias_hh" + s, new long[]{4L * H}));
                }
            head = new int[][]{{2 * H, 2 * H}, {2 * H, C}};
        } else head = new int[][]{{C, H}, {H, H}, {H, C}};
        for (int i = 0; i < head.length; i++) {
            out.add(java.util.Map.entry("mlp_head." + 2 * i + ".weight", new long[]{head[i][1], head[i][0]}));
            out.add(java.util.Map.entry("mlp_head." + 2 * i + ".bias", new long[]{head[i][1]}));
        }
        return out;
    }

    /// The virtual tokens' embeddings (n, C) of the last [#forward].
    public float[] output() { return out; }

    /// out = encoder(embedding.weight), from the current parameters; keeps what [#backward] needs.
    public float[] forward() {
        if (lstm != null)
            for (int l = 0; l < lstm.length; l++)
                for (int d = 0; d < 2; d++) lstm[l][d].forward(lstmOut[l], d, l == 0 ? emb : lstmOut[l - 1], d == 1);
        int last = head.length - 1;
        for (int i = 0; i < last; i++) {
            head[i].forward(headIn[i + 1], headIn[i], n);
            for (int j = 0; j < headIn[i + 1].length; j++) headIn[i + 1][j] = Math.max(headIn[i + 1][j], 0f);   // relu
        }
        head[last].forward(out, headIn[last], n);
        return out;
    }

    /// Adds the gradients of Σ dOut·out (dOut (n, C), the virtual tokens' embedding gradient) into every tensor's
    /// grad; the forward mirrored line by line. Call after the [#forward] whose output the gradient is of.
    public void backward(float[] dOut) {
        int last = head.length - 1;
        head[last].backward(dHeadIn[last], dOut, headIn[last], n);
        for (int i = last - 1; i >= 0; i--) {
            for (int j = 0; j < dHeadIn[i + 1].length; j++) if (headIn[i + 1][j] <= 0) dHeadIn[i + 1][j] = 0;   // relu'
            head[i].backward(dHeadIn[i], dHeadIn[i + 1], headIn[i], n);
        }
        if (lstm != null)   // dHeadIn[0] is the last layer's output gradient
            for (int l = lstm.length - 1; l >= 0; l--) {
                float[] x = l == 0 ? emb : lstmOut[l - 1], dx = l == 0 ? dx0 : dLstmOut[l - 1];
                Arrays.fill(dx, 0, n * lstm[l][0].in, 0f);
                for (int d = 0; d < 2; d++) lstm[l][d].backward(dx, dLstmOut[l], lstmOut[l], d, x, d == 1, dh, dc, da);
            }
        for (int j = 0; j < dEmb.length; j++) dEmb[j] += dx0[j];
    }


    /// torch.nn.Linear: y = x·Wᵀ + b, x (n, in), W (out, in).
    private static final class Linear {
        final int in, out;
        final float[] w, b, dw, db;

        Linear(int in, int out, RandomGenerator rng) {
            this.in = in; this.out = out;
            w = new float[out * in]; b = new float[out]; dw = new float[w.length]; db = new float[out];
            LoraLinear.kaimingUniform(w, rng, in);   // nn.Linear.reset_parameters: kaiming_uniform(a = √5) = U(±1/√in)
            LoraLinear.kaimingUniform(b, rng, in);   // and the bias U(±1/√fan_in)
        }

        void forward(float[] y, float[] x, int n) {
            for (int t = 0; t < n; t++)
                for (int o = 0; o < out; o++) {
                    double s = b[o];
                    for (int k = 0; k < in; k++) s += (double) w[o * in + k] * x[t * in + k];
                    y[t * out + o] = (float) s;
                }
        }

        /// dW += dyᵀ·x, db += Σ dy, dx = dy·W (overwritten).
        void backward(float[] dx, float[] dy, float[] x, int n) {
            for (int o = 0; o < out; o++) {
                double sb = 0;
                for (int t = 0; t < n; t++) sb += dy[t * out + o];
                db[o] += (float) sb;
                for (int k = 0; k < in; k++) {
                    double s = 0;
                    for (int t = 0; t < n; t++) s += (double) dy[t * out + o] * x[t * in + k];
                    dw[o * in + k] += (float) s;
                }
            }
            for (int t = 0; t < n; t++)
                for (int k = 0; k < in; k++) {
                    double s = 0;
                    for (int o = 0; o < out; o++) s += (double) dy[t * out + o] * w[o * in + k];
                    dx[t * in + k] = (float) s;
                }
        }
    }

    /// One direction of one torch.nn.LSTM layer over the n steps: weights W_ih (4H, in), W_hh (4H, H), biases (4H),
    /// kept per step: the gates after their nonlinearity (n, 4H) and the cell state c and tanh(c) (n, H).
    private static final class Cell {
        final int in, H;
        final float[] wih, whh, bih, bhh, dwih, dwhh, dbih, dbhh;
        final float[] gates, cell, tanhCell;

        Cell(int in, int H, int n, RandomGenerator rng) {
            this.in = in; this.H = H;
            wih = new float[4 * H * in]; whh = new float[4 * H * H]; bih = new float[4 * H]; bhh = new float[4 * H];
            for (float[] p : List.of(wih, whh, bih, bhh)) LoraLinear.kaimingUniform(p, rng, H);   // LSTM.reset_parameters: U(±1/√H)
            dwih = new float[wih.length]; dwhh = new float[whh.length]; dbih = new float[4 * H]; dbhh = new float[4 * H];
            gates = new float[n * 4 * H]; cell = new float[n * H]; tanhCell = new float[n * H];
        }

        /// Writes h_t into y[t, d·H .. (d+1)·H) (y (n, 2H)); x (n, in).
        void forward(float[] y, int d, float[] x, boolean reverse) {
            int n = cell.length / H, G = 4 * H;
            for (int s = 0; s < n; s++) {
                int t = reverse ? n - 1 - s : s, tp = reverse ? t + 1 : t - 1;
                for (int r = 0; r < G; r++) {
                    double a = (double) bih[r] + bhh[r];
                    for (int k = 0; k < in; k++) a += (double) wih[r * in + k] * x[t * in + k];
                    if (s > 0) for (int j = 0; j < H; j++) a += (double) whh[r * H + j] * y[tp * 2 * H + d * H + j];
                    gates[t * G + r] = (float) (r >= 2 * H && r < 3 * H ? Math.tanh(a) : 1 / (1 + Math.exp(-a)));
                }
                for (int j = 0; j < H; j++) {
                    float i = gates[t * G + j], f = gates[t * G + H + j], g = gates[t * G + 2 * H + j], o = gates[t * G + 3 * H + j];
                    float c = i * g + (s > 0 ? f * cell[tp * H + j] : 0f);
                    cell[t * H + j] = c;
                    float tc = tanhCell[t * H + j] = (float) Math.tanh(c);
                    y[t * 2 * H + d * H + j] = o * tc;
                }
            }
        }

        /// Backward through time from dy (n, 2H) (this direction's half), adding into dx (n, in) and the weights'
        /// gradients; y (n, 2H) is the layer output the forward wrote (h_{t−1}). dh, dc (H) carry dL/dh_{t−1},
        /// dL/dc_{t−1} between steps; da (4H) the gate pre-activations' gradient.
        void backward(float[] dx, float[] dy, float[] y, int d, float[] x, boolean reverse, float[] dh, float[] dc, float[] da) {
            int n = cell.length / H, G = 4 * H;
            Arrays.fill(dh, 0f);
            Arrays.fill(dc, 0f);
            for (int s = n - 1; s >= 0; s--) {
                int t = reverse ? n - 1 - s : s, tp = reverse ? t + 1 : t - 1;
                for (int j = 0; j < H; j++) {
                    float i = gates[t * G + j], f = gates[t * G + H + j], g = gates[t * G + 2 * H + j], o = gates[t * G + 3 * H + j];
                    float tc = tanhCell[t * H + j], cPrev = s > 0 ? cell[tp * H + j] : 0f;
                    float dhj = dy[t * 2 * H + d * H + j] + dh[j];
                    float dcj = dhj * o * (1 - tc * tc) + dc[j];   // h = o·tanh(c)
                    da[j] = dcj * g * i * (1 - i);                  // c = f·c' + i·g
                    da[H + j] = dcj * cPrev * f * (1 - f);
                    da[2 * H + j] = dcj * i * (1 - g * g);
                    da[3 * H + j] = dhj * tc * o * (1 - o);
                    dc[j] = dcj * f;
                }
                for (int r = 0; r < G; r++) {
                    float a = da[r];
                    dbih[r] += a;
                    dbhh[r] += a;
                    for (int k = 0; k < in; k++) dwih[r * in + k] += a * x[t * in + k];
                    if (s > 0) for (int j = 0; j < H; j++) dwhh[r * H + j] += a * y[tp * 2 * H + d * H + j];
                }
                for (int k = 0; k < in; k++) {
                    double sum = 0;
                    for (int r = 0; r < G; r++) sum += (double) da[r] * wih[r * in + k];
                    dx[t * in + k] += (float) sum;
                }
                for (int j = 0; j < H; j++) {
                    double sum = 0;
                    for (int r = 0; r < G; r++) sum += (double) da[r] * whh[r * H + j];
                    dh[j] = (float) sum;
                }
            }
        }
    }
}
