package org.peft4j.model.adapter.oft;

import org.peft4j.core.Peft4jException.ConfigException;

import java.util.List;

/// PEFT's `OFTConfig` as LLaMA-Factory fills it (src/llamafactory/model/adapter.py `_setup_lora_tuning`, branch
/// `finetuning_type == "oft"`: r = oft_rank, oft_block_size, target_modules = oft_target, module_dropout). The other
/// fields keep PEFT's defaults (peft `tuners/oft/config.py` `OFTConfig`): coft false, eps 6e-5, block_share false,
/// init_weights true (R starts at the identity), use_cayley_neumann true with num_cayley_neumann_terms 5.
///
/// Exactly one of `r` (number of blocks) and `blockSize` is non-zero, as PEFT requires; [#blocks] resolves them for a
/// layer's input width the way PEFT's `OFTLayer.update_layer` / `adjust_oft_parameters` does.
public record OftConfig(int r, int blockSize, List<String> targetModules, double moduleDropout, int numNeumannTerms) {
    public static final double EPS = 6e-5;

    public OftConfig {
        if ((r == 0) == (blockSize == 0))
            throw new ConfigException("OFT needs exactly one of oft_rank and oft_block_size set (the other 0), as PEFT's OFTConfig; got oft_rank "
                    + r + ", oft_block_size " + blockSize + ": set oft_rank: 0 to use oft_block_size");
        if (r < 0 || blockSize < 0) throw new ConfigException("oft_rank and oft_block_size must be >= 0, got " + r + ", " + blockSize);
        if (moduleDropout != 0)
            throw new ConfigException("module_dropout " + moduleDropout + ": PEFT's OFT Linear.forward does not apply its multiplicative dropout "
                    + "(oft_dropout is built but never called), so peft4j refuses a value that would change nothing; set module_dropout: 0");
        if (numNeumannTerms < 1) throw new ConfigException("num_cayley_neumann_terms must be >= 1, got " + numNeumannTerms);
        targetModules = List.copyOf(targetModules);
    }

    public static OftConfig of(int r, int blockSize, List<String> targets) { return new OftConfig(r, blockSize, targets, 0, 5); }

    public boolean targets(String module) { return targetModules.contains(module); }

    /// {number of blocks, block size} for a layer with `in` input features (PEFT `update_layer`: an invalid size is
    /// moved to the nearest divisor of `in`, with a warning there; here too, via `warn`).
    public int[] blocks(int in) {
        if (r == 0) {
            int b = blockSize;
            if (in % b != 0 || b > in) b = adjust(in, b);
            return new int[] {in / b, b};
        }
        int n = r;
        if (in % n != 0 || n > in) n = adjust(in, n);
        return new int[] {n, in / n};
    }

    /// PEFT `OFTLayer.adjust_oft_parameters`: the divisor of `in` nearest `p` (the lower one on a tie).
    static int adjust(int in, int p) {
        if (p >= in) return in;
        int hi = p;
        while (hi <= in && in % hi != 0) hi++;
        int lo = p;
        while (lo > 1 && in % lo != 0) lo--;
        return p - lo <= hi - p ? lo : hi;
    }
}
