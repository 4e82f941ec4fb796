package org.peft4j.model.adapter.lora;

import org.peft4j.core.Peft4jException.ConfigException;
import org.peft4j.model.llama.LlamaWeights;
import org.peft4j.model.llama.Projection;

import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.SplittableRandom;

/// A fresh LoRA adapter for training over float32 base weights, as PEFT creates one: per targeted (layer, module), in
/// layer then [Projection] order, A and B initialised by [LoraConfig#initLoraWeights] from one seeded stream split per
/// module ([LoraLinear#init]; PiSSA: [Pissa#init], which **rewrites the targeted base weights in place** into the
/// residual W − s·B·A), and for DoRA the magnitude set to the row norms of W0 + s·B·A, so the adapted model starts
/// equal to the base (PiSSA: to the original base).
public final class LoraInit {
    private LoraInit() {}

    /// The adapter's tensors in layer then projection order, and with PiSSA the initial A0, B0 (copies) that
    /// [Pissa#convert] needs, else an empty map.
    public record Created(Map<PeftAdapter.Target, LoraWeights> tensors, Map<PeftAdapter.Target, LoraWeights> pissaInit) {}

    /// `base` must hold the targeted projections as float32 arrays (not a 4-bit or 16-bit base for PiSSA and DoRA).
    public static Created create(LoraConfig lc, LlamaWeights base, long seed) {
        boolean dora = lc.useDora(), pissa = lc.initLoraWeights() == LoraConfig.Init.PISSA;
        if (pissa && dora) throw new ConfigException("PiSSA with DoRA is not supported; set use_dora: false or pissa_init: false");
        var c = base.config;
        SplittableRandom init = new SplittableRandom(seed);
        Map<PeftAdapter.Target, LoraWeights> tensors = new LinkedHashMap<>(), pissaInit = new LinkedHashMap<>();
        for (int l = 0; l < c.numHiddenLayers(); l++) {
            if (!lc.transformsLayer(l)) continue;
            for (Projection m : Projection.values()) {
                if (!lc.targets(m.module)) continue;
                int r = lc.rank(m.module), in = m.in(c), out = m.out(c);
                float s = (float) lc.scaling(m.module);
                float[] w0 = m.weight(base.layers.get(l));
                if ((pissa || dora) && w0 == null)
                    throw new ConfigException((pissa ? "PiSSA" : "DoRA") + " needs the float32 base weight of " + m.weightName(l)
                            + "; this base holds it quantized; drop " + (pissa ? "pissa_init" : "use_dora") + " or quantization_bit");
                LoraWeights lw = LoraWeights.allocate(r, in, out, dora);
                PeftAdapter.Target t = new PeftAdapter.Target(l, m.module);
                if (pissa) {
                    // A, B from the top-r SVD of W, and W ← W − s·B·A in place: the adapted layer still equals W
                    Pissa.init(w0, lw.a(), lw.b(), s, out, in, r, lc.pissaNiter(), init.split());
                    pissaInit.put(t, new LoraWeights(r, in, out, lw.a().clone(), lw.b().clone(), null));
                } else LoraLinear.init(lw.a(), lw.b(), lc.initLoraWeights(), init.split(), in, out, r);
                if (dora) DoraLinear.weightNorm(lw.magnitude(), w0, lw.a(), lw.b(), s, out, in, r);
                tensors.put(t, lw);
            }
        }
        if (tensors.isEmpty())
            throw new ConfigException("lora_target " + lc.targetModules() + " matches no linear layer; use names among "
                    + Projection.MODULE_NAMES + " or 'all'");
        return new Created(Collections.unmodifiableMap(tensors), Collections.unmodifiableMap(pissaInit));
    }
}
