package org.peft4j.train.optim;

import org.peft4j.core.Peft4jException.ConfigException;
import org.peft4j.train.engine.Param;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/// BAdam (Luo et al. 2024, arXiv:2404.02827), block-coordinate Adam, `badam_mode: layer`, as LLaMA-Factory runs it
/// (src/llamafactory/train/trainer_utils.py `_create_badam_optimizer`: `badam.BlockOptimizer(base_optimizer = the
/// AdamW of optim, block_prefix_list = None, switch_block_every = badam_switch_interval, start_block =
/// badam_start_block, switch_mode = badam_switch_mode)`), after Ledzy/BAdam src/badam/block_optim.py `BlockOptimizer`:
///
/// - The blocks are the decoder layers (`infer_param_groups`: the prefix `...layers.<i>.`, in order); embeddings,
///   the final norm and lm_head belong to no block and stay frozen (include_embedding / include_lm_head false).
/// - The first active block is `start_block`, else 0 (ascending), the last (descending) or the first of a random order.
/// - Only the active block trains: the others get no gradient (peft4j zeroes theirs before clipping, so the
///   clipped norm is the active block's, as torch's with requires_grad false) and no update.
/// - After optimizer step k (1-based), when (k + 1) % switch_interval == 0, the next block becomes active
///   (ascending: +1, descending: −1, both mod the block count; random: the next of a shuffled order, reshuffled when
///   used up) and the AdamW state is cleared, so the new block's Adam starts at step 1.
///
/// Memory: AdamW moments for one layer at a time (allocated once for the largest block) instead of the whole model.
/// The random order comes from `seed` (torch's randperm draws differ).
public final class BlockAdam {
    /// badam_start_block (null: by switch mode), badam_switch_mode (ascending, descending, random),
    /// badam_switch_interval.
    public record Config(Integer startBlock, String switchMode, int switchInterval) {
        public Config {
            if (!List.of("ascending", "descending", "random", "fixed").contains(switchMode))
                throw new ConfigException("badam_switch_mode '" + switchMode + "' must be ascending, descending, random or fixed");
            if (switchInterval < 1 && switchInterval != -1)
                throw new ConfigException("badam_switch_interval must be >= 1, or -1 to never switch blocks, got " + switchInterval);
        }
    }

    private static final Pattern LAYER = Pattern.compile(".*layers\\.[^.]*\\.");

    private final List<Param> params;
    private final AdamW.Config adam, noDecay;
    private final Config config;
    private final int[][] blocks;           // parameter indices of each block
    private final float[][] m, v;           // one pair per slot of the largest block, reused
    private final Random random;
    private final List<Integer> order = new ArrayList<>();
    private int current;
    private long globalStep, blockStep;

    public BlockAdam(List<Param> params, AdamW.Config adam, Config config, long seed) {
        this.params = List.copyOf(params);
        this.adam = adam;
        this.noDecay = adam.withoutDecay();
        this.config = config;
        Map<String, List<Integer>> byPrefix = new LinkedHashMap<>();
        for (int i = 0; i < params.size(); i++) {
            Matcher mt = LAYER.matcher(params.get(i).name());
            if (mt.lookingAt()) byPrefix.computeIfAbsent(mt.group(), k -> new ArrayList<>()).add(i);
        }
        if (byPrefix.isEmpty())
            throw new ConfigException("use_badam: no trainable tensor belongs to a decoder layer (model.layers.<i>.); BAdam switches between layers, so train them (finetuning_type full)");
        blocks = byPrefix.values().stream().map(l -> l.stream().mapToInt(Integer::intValue).toArray()).toArray(int[][]::new);
        int slots = 0;
        for (int[] b : blocks) slots = Math.max(slots, b.length);
        m = new float[slots][];
        v = new float[slots][];
        for (int s = 0; s < slots; s++) {
            int max = 0;
            for (int[] b : blocks) if (s < b.length) max = Math.max(max, params.get(b[s]).data().length);
            m[s] = new float[max];
            v[s] = new float[max];
        }
        random = new Random(seed);
        if (config.startBlock() != null) {
            if (config.startBlock() < 0 || config.startBlock() >= blocks.length)
                throw new ConfigException("badam_start_block " + config.startBlock() + " is not a block of this model; use 0 to " + (blocks.length - 1) + " (one block per layer)");
            current = config.startBlock();
        } else current = switch (config.switchMode()) {
            case "descending" -> blocks.length - 1;
            case "random" -> nextRandom();
            default -> 0;
        };
    }

    private int nextRandom() {
        if (order.isEmpty()) {
            for (int i = 0; i < blocks.length; i++) order.add(i);
            java.util.Collections.shuffle(order, random);
        }
        return order.removeLast();
    }

    public int blocks() { return blocks.length; }

    public int activeBlock() { return current; }

    /// Zeroes the gradients of every tensor outside the active block (frozen in BAdam), before clipping.
    public void maskGradients() {
        for (int i = 0; i < params.size(); i++) if (!inActive(i)) Arrays.fill(params.get(i).grad(), 0f);
    }

    private boolean inActive(int i) {
        for (int j : blocks[current]) if (j == i) return true;
        return false;
    }

    /// One AdamW step (torch's formula, [AdamW]) of the active block, then the switch rule.
    public void step(double lr) {
        blockStep++;
        // transformers' optimizer groups: no weight decay for biases and norms (LLaMA-Factory _create_badam_optimizer)
        AdamW.Scalars decay = AdamW.Scalars.of(adam, blockStep, lr), plain = AdamW.Scalars.of(noDecay, blockStep, lr);
        int[] b = blocks[current];
        for (int s = 0; s < b.length; s++) {
            Param p = params.get(b[s]);
            AdamW.update(GaLore.decays(p.name()) ? decay : plain, p.data(), p.grad(), m[s], v[s], 0, p.data().length);
        }
        globalStep++;
        // -1: never switch (LLaMA-Factory's "Use -1 to disable the block update"); fixed: the start block only
        if (config.switchInterval() > 0 && (globalStep + 1) % config.switchInterval() == 0 && !config.switchMode().equals("fixed")) switchBlock();
    }

    private void switchBlock() {
        current = switch (config.switchMode()) {
            case "ascending" -> (current + 1) % blocks.length;
            case "descending" -> Math.floorMod(current - 1, blocks.length);
            default -> nextRandom();
        };
        for (int s = 0; s < m.length; s++) { Arrays.fill(m[s], 0f); Arrays.fill(v[s], 0f); }
        blockStep = 0;
    }

    /// What a checkpoint keeps: the active block, the steps, and the moments of its tensors (slot by slot).
    public record State(long globalStep, long blockStep, int current, List<float[]> m, List<float[]> v) {}

    public State state() { return new State(globalStep, blockStep, current, List.of(m), List.of(v)); }

    public void load(State s) {
        if (s.current() < 0 || s.current() >= blocks.length || s.m().size() != m.length)
            throw new ConfigException("BAdam state (block " + s.current() + ", " + s.m().size() + " slots) does not match this model's "
                    + blocks.length + " blocks; resume with the model and settings of the checkpoint");
        for (int i = 0; i < m.length; i++) {
            if (s.m().get(i).length != m[i].length) throw new ConfigException("BAdam state slot " + i + " does not match this model; resume with the checkpoint's model");
            System.arraycopy(s.m().get(i), 0, m[i], 0, m[i].length);
            System.arraycopy(s.v().get(i), 0, v[i], 0, v[i].length);
        }
        current = s.current();
        globalStep = s.globalStep();
        blockStep = s.blockStep();
    }
}
