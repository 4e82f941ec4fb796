package org.peft4j.train;

import org.peft4j.core.DType;
import org.peft4j.core.Peft4jException.ConfigException;
import org.peft4j.formats.safetensors.SafeTensors;
import org.peft4j.model.LlamaConfig;
import org.peft4j.model.adapter.lora.LoraConfig;
import org.peft4j.train.engine.Param;
import org.peft4j.train.optim.AdamMini;
import org.peft4j.train.optim.AdamW;
import org.peft4j.train.optim.Apollo;
import org.peft4j.train.optim.BlockAdam;
import org.peft4j.train.optim.GaLore;
import org.peft4j.train.optim.Muon;
import org.peft4j.train.optim.AdamW8bit;
import org.peft4j.train.optim.PagedAdamW;
import org.peft4j.train.optim.Sgd;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

/// The `optim` choices of transformers/LLaMA-Factory behind one shape for the loop: a step, and the state as named
/// tensors for checkpoints (`prefix` separates LoRA+'s two groups).
sealed interface Optimizer extends AutoCloseable {
    void step(double lr);

    List<SafeTensors.Entry> save(String prefix);

    void load(SafeTensors file, String prefix, long step);

    @Override default void close() {}

    /// Called after backward, before clipping: BAdam zeroes the gradients of its inactive blocks here.
    default void beforeClip() {}

    /// LLaMA-Factory's optimizer methods (use_adam_mini, use_muon, use_galore, use_badam) over the trainable tensors.
    static Optimizer of(TrainArgs.OptimizerMethod m, List<Param> params, LlamaConfig model, AdamW.Config c, long seed, org.peft4j.core.Gemm gemm) {
        if (m.adamMini()) return new Mini(new AdamMini(params, c, model.hiddenSize(), model.numAttentionHeads()));
        if (m.muon()) return new MuonOpt(new Muon(params, c, gemm));
        if (m.galore() != null) return new GaLoreOpt(new GaLore(params, c, m.galore(), new java.util.LinkedHashSet<>(LoraConfig.ALL_LINEAR)));
        if (m.apollo() != null) return new ApolloOpt(new Apollo(params, c, m.apollo(), new java.util.LinkedHashSet<>(LoraConfig.ALL_LINEAR), seed));
        if (m.badam() != null) return new BAdam(new BlockAdam(params, c, m.badam(), seed));
        throw new IllegalArgumentException("no optimizer method is on");
    }

    static Optimizer create(String name, List<float[]> params, List<float[]> grads, AdamW.Config c, Path pagedDir, long budget) {
        return switch (name) {
            case "adamw_torch", "adamw_hf", "adamw_torch_fused" -> new Adam32(new AdamW(params, grads, c));
            case "paged_adamw_32bit" -> new Paged32(new PagedAdamW(params, grads, c, pagedDir, budget));
            case "adamw_8bit", "adamw_bnb_8bit" -> new Adam8(new AdamW8bit(params, grads, c));
            case "paged_adamw_8bit" -> new Adam8(AdamW8bit.paged(params, grads, c, pagedDir, budget));
            case "sgd" -> new Sgd32(new Sgd(params, grads, 0.0, c.weightDecay()));
            default -> throw new ConfigException("optim '" + name + "' is not supported; use adamw_torch, adamw_8bit, paged_adamw_32bit, paged_adamw_8bit or sgd");
        };
    }

    private static void moments(List<SafeTensors.Entry> out, String prefix, List<float[]> m, List<float[]> v) {
        for (int i = 0; i < m.size(); i++) {
            out.add(SafeTensors.Entry.ofFloats(prefix + "m." + i, new long[]{m.get(i).length}, m.get(i), DType.F32));
            out.add(SafeTensors.Entry.ofFloats(prefix + "v." + i, new long[]{v.get(i).length}, v.get(i), DType.F32));
        }
    }

    private static List<float[]> read(SafeTensors f, String name, int n) {
        List<float[]> out = new ArrayList<>();
        for (int i = 0; i < n; i++) out.add(f.readFloats(name + i));
        return out;
    }

    record Adam32(AdamW opt) implements Optimizer {
        public void step(double lr) { opt.step(lr); }
        public List<SafeTensors.Entry> save(String p) { var out = new ArrayList<SafeTensors.Entry>(); moments(out, p, opt.state().m(), opt.state().v()); return out; }
        public void load(SafeTensors f, String p, long step) {
            int n = opt.state().m().size();
            opt.load(new AdamW.State(step, read(f, p + "m.", n), read(f, p + "v.", n)));
        }
    }

    record Paged32(PagedAdamW opt) implements Optimizer {
        public void step(double lr) { opt.step(lr); }
        public List<SafeTensors.Entry> save(String p) { var out = new ArrayList<SafeTensors.Entry>(); var s = opt.state(); moments(out, p, s.m(), s.v()); return out; }
        public void load(SafeTensors f, String p, long step) {
            int n = opt.state().m().size();
            opt.load(new AdamW.State(step, read(f, p + "m.", n), read(f, p + "v.", n)));
        }
        @Override public void close() { opt.close(); }
    }

    /// bitsandbytes' names: state1/state2 (8-bit codes), absmax1/absmax2, or m/v for tensors kept in float32.
    record Adam8(AdamW8bit opt) implements Optimizer {
        public void step(double lr) { opt.step(lr); }
        public List<SafeTensors.Entry> save(String p) {
            var out = new ArrayList<SafeTensors.Entry>();
            var ms = opt.state().moments();
            for (int i = 0; i < ms.size(); i++) {
                switch (ms.get(i)) {
                    case AdamW8bit.Moments.Quantized q -> {
                        out.add(SafeTensors.Entry.ofBytes(p + "state1." + i, DType.U8, new long[]{q.state1().length}, q.state1()));
                        out.add(SafeTensors.Entry.ofBytes(p + "state2." + i, DType.U8, new long[]{q.state2().length}, q.state2()));
                        out.add(SafeTensors.Entry.ofFloats(p + "absmax1." + i, new long[]{q.absmax1().length}, q.absmax1(), DType.F32));
                        out.add(SafeTensors.Entry.ofFloats(p + "absmax2." + i, new long[]{q.absmax2().length}, q.absmax2(), DType.F32));
                    }
                    case AdamW8bit.Moments.Full fl -> {
                        out.add(SafeTensors.Entry.ofFloats(p + "m." + i, new long[]{fl.m().length}, fl.m(), DType.F32));
                        out.add(SafeTensors.Entry.ofFloats(p + "v." + i, new long[]{fl.v().length}, fl.v(), DType.F32));
                    }
                }
            }
            return out;
        }
        public void load(SafeTensors f, String p, long step) {
            List<AdamW8bit.Moments> ms = new ArrayList<>();
            int n = opt.state().moments().size();
            for (int i = 0; i < n; i++) {
                if (f.contains(p + "state1." + i))
                    ms.add(new AdamW8bit.Moments.Quantized(bytes(f, p + "state1." + i), bytes(f, p + "state2." + i),
                            f.readFloats(p + "absmax1." + i), f.readFloats(p + "absmax2." + i)));
                else ms.add(new AdamW8bit.Moments.Full(f.readFloats(p + "m." + i), f.readFloats(p + "v." + i)));
            }
            opt.load(new AdamW8bit.State(step, ms));
        }
        private static byte[] bytes(SafeTensors f, String name) { return f.bytes(name).toArray(java.lang.foreign.ValueLayout.JAVA_BYTE); }
        @Override public void close() { opt.close(); }
    }

    record Sgd32(Sgd opt) implements Optimizer {
        public void step(double lr) { opt.step(lr); }
        public List<SafeTensors.Entry> save(String p) {
            var out = new ArrayList<SafeTensors.Entry>();
            float[][] b = opt.momentumBuffers();
            if (b != null) for (int i = 0; i < b.length; i++) if (b[i] != null)
                out.add(SafeTensors.Entry.ofFloats(p + "momentum." + i, new long[]{b[i].length}, b[i], DType.F32));
            return out;
        }
        public void load(SafeTensors f, String p, long step) {
            float[][] b = opt.momentumBuffers();
            if (b != null) for (int i = 0; i < b.length; i++) if (b[i] != null && f.contains(p + "momentum." + i)) f.readFloats(p + "momentum." + i, b[i], 0);
        }
    }

    /// Adam-mini: m (n) and v (one per block) per tensor.
    record Mini(AdamMini opt) implements Optimizer {
        public void step(double lr) { opt.step(lr); }
        public List<SafeTensors.Entry> save(String p) { var out = new ArrayList<SafeTensors.Entry>(); moments(out, p, opt.state().m(), opt.state().v()); return out; }
        public void load(SafeTensors f, String p, long step) {
            int n = opt.state().m().size();
            opt.load(new AdamW.State(step, read(f, p + "m.", n), read(f, p + "v.", n)));
        }
    }

    /// Muon: momentum.i for the Muon matrices, m.i / v.i for the AdamW backup.
    record MuonOpt(Muon opt) implements Optimizer {
        public void step(double lr) { opt.step(lr); }
        public List<SafeTensors.Entry> save(String p) {
            var s = opt.state();
            return putLists(p, List.of("momentum.", "m.", "v."), List.of(s.momentum(), s.m(), s.v()));
        }
        public void load(SafeTensors f, String p, long step) {
            int n = opt.state().momentum().size();
            opt.load(new Muon.State(step, readOpt(f, p + "momentum.", n), readOpt(f, p + "m.", n), readOpt(f, p + "v.", n)));
        }
    }

    /// GaLore: m.i, v.i (projected shapes where projected) and proj.i.
    record GaLoreOpt(GaLore opt) implements Optimizer {
        public void step(double lr) { opt.step(lr); }
        public List<SafeTensors.Entry> save(String p) {
            var s = opt.state();
            return putLists(p, List.of("m.", "v.", "proj."), List.of(s.m(), s.v(), s.proj()));
        }
        public void load(SafeTensors f, String p, long step) {
            int n = opt.state().m().size();
            opt.load(new GaLore.State(step, readOpt(f, p + "m.", n), readOpt(f, p + "v.", n), readOpt(f, p + "proj.", n)));
        }
    }

    /// APOLLO: m.i, v.i (projected shapes where projected), proj.i, and apollo.refreshes / apollo.norms.
    record ApolloOpt(Apollo opt) implements Optimizer {
        public void step(double lr) { opt.step(lr); }
        public List<SafeTensors.Entry> save(String p) {
            var s = opt.state();
            var out = putLists(p, List.of("m.", "v.", "proj."), List.of(s.m(), s.v(), s.proj()));
            put(out, p + "apollo.refreshes", s.refreshes());
            put(out, p + "apollo.norms", s.prevNorms());
            return out;
        }
        public void load(SafeTensors f, String p, long step) {
            int n = opt.state().m().size();
            opt.load(new Apollo.State(step, readOpt(f, p + "m.", n), readOpt(f, p + "v.", n), readOpt(f, p + "proj.", n),
                    f.readFloats(p + "apollo.refreshes"), f.readFloats(p + "apollo.norms")));
        }
    }

    /// BAdam: the active block and its steps (badam.state: global step, block step, block) and the slots' m, v.
    record BAdam(BlockAdam opt) implements Optimizer {
        public void step(double lr) { opt.step(lr); }
        @Override public void beforeClip() { opt.maskGradients(); }
        public List<SafeTensors.Entry> save(String p) {
            var out = new ArrayList<SafeTensors.Entry>();
            var s = opt.state();
            moments(out, p, s.m(), s.v());
            out.add(SafeTensors.Entry.ofFloats(p + "badam.state", new long[]{3}, new float[]{s.globalStep(), s.blockStep(), s.current()}, DType.F32));
            return out;
        }
        public void load(SafeTensors f, String p, long step) {
            int n = opt.state().m().size();
            float[] st = f.readFloats(p + "badam.state");
            opt.load(new BlockAdam.State((long) st[0], (long) st[1], (int) st[2], read(f, p + "m.", n), read(f, p + "v.", n)));
        }
    }

    /// Entries `p + names[k] + i` for element i of each list k, element by element (the lists have equal lengths).
    private static List<SafeTensors.Entry> putLists(String p, List<String> names, List<List<float[]>> lists) {
        var out = new ArrayList<SafeTensors.Entry>();
        for (int i = 0; i < lists.getFirst().size(); i++)
            for (int k = 0; k < names.size(); k++) put(out, p + names.get(k) + i, lists.get(k).get(i));
        return out;
    }

    private static void put(List<SafeTensors.Entry> out, String name, float[] x) {
        if (x != null) out.add(SafeTensors.Entry.ofFloats(name, new long[]{x.length}, x, DType.F32));
    }

    /// The tensors name0 .. name(n-1), null where the file has none (tensors without that kind of state).
    private static List<float[]> readOpt(SafeTensors f, String name, int n) {
        List<float[]> out = new ArrayList<>();
        for (int i = 0; i < n; i++) out.add(f.contains(name + i) ? f.readFloats(name + i) : null);
        return out;
    }
}
