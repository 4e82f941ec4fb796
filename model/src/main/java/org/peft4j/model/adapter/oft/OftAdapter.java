package org.peft4j.model.adapter.oft;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import org.peft4j.core.DType;
import org.peft4j.core.Peft4jException.ConfigException;
import org.peft4j.core.Peft4jException.FormatException;
import org.peft4j.formats.json.PyJson;
import org.peft4j.formats.safetensors.SafeTensors;
import org.peft4j.formats.safetensors.TensorInfo;
import org.peft4j.model.LlamaConfig;
import org.peft4j.model.llama.LlamaWeights;
import org.peft4j.model.llama.Projection;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/// A PEFT OFT adapter directory: `adapter_config.json` (peft_type "OFT", PEFT's `OFTConfig` field names) and
/// `adapter_model.safetensors` with one tensor per targeted linear, named as PEFT's `get_peft_model_state_dict` saves
/// it (the adapter name dropped): `base_model.model.model.layers.L.self_attn.q_proj.oft_R.weight`, shape
/// (nBlocks, b(b−1)/2), the upper triangles of the skew-symmetric blocks (PEFT `tuners/oft/layer.py` `OFTRotationModule`).
public record OftAdapter(OftConfig config, String baseModelNameOrPath, List<Module> modules) {
    public static final String CONFIG_FILE = "adapter_config.json";
    public static final String WEIGHTS_FILE = "adapter_model.safetensors";

    /// One targeted linear: its layer, PEFT module name, block count and size, and parameter (nBlocks·b(b−1)/2).
    public record Module(int layer, String module, int nBlocks, int blockSize, float[] theta) {
        public String key() {
            return "base_model.model.model.layers." + layer + "." + Projection.of(module).path() + ".oft_R.weight";
        }
    }

    private static final Pattern KEY = Pattern.compile("base_model\\.model\\.model\\.layers\\.(\\d+)\\.(self_attn|mlp)\\.(\\w+)\\.oft_R\\.weight");

    /// Whether `dir` holds an OFT adapter (peft_type "OFT" in its adapter_config.json).
    public static boolean isOft(Path dir) {
        Path f = dir.resolve(CONFIG_FILE);
        if (!Files.isRegularFile(f)) return false;
        try {
            JsonNode t = new ObjectMapper().readTree(Files.readString(f, StandardCharsets.UTF_8)).get("peft_type");
            return t != null && "OFT".equals(t.asText());
        } catch (IOException e) {
            return false;
        }
    }

    /// Writes the safetensors file (F32) and then adapter_config.json (sorted keys, indent 2, as PEFT).
    public void write(Path dir) {
        try {
            Files.createDirectories(dir);
            List<SafeTensors.Entry> entries = new ArrayList<>();
            for (Module m : modules)
                entries.add(SafeTensors.Entry.ofFloats(m.key(), new long[]{m.nBlocks(), OftRotation.elements(m.blockSize())}, m.theta(), DType.F32));
            SafeTensors.write(dir.resolve(WEIGHTS_FILE), entries, Map.of("format", "pt"));
            Path tmp = dir.resolve("." + CONFIG_FILE + ".tmp");
            Files.writeString(tmp, configJson(), StandardCharsets.UTF_8);
            Files.move(tmp, dir.resolve(CONFIG_FILE), StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
        } catch (IOException e) {
            throw new FormatException("cannot write OFT adapter to " + dir + ": " + e.getMessage(), e);
        }
    }

    /// adapter_config.json as PEFT's save_pretrained writes an OFTConfig (json.dumps(indent=2, sort_keys=True)).
    public String configJson() {
        Map<String, Object> m = new TreeMap<>();
        m.put("alpha_pattern", Map.of());
        m.put("auto_mapping", null);
        m.put("base_model_name_or_path", baseModelNameOrPath);
        m.put("block_share", false);
        m.put("coft", false);
        m.put("eps", OftConfig.EPS);
        m.put("exclude_modules", null);
        m.put("fan_in_fan_out", false);
        m.put("inference_mode", true);
        m.put("init_weights", true);
        m.put("layers_pattern", null);
        m.put("layers_to_transform", null);
        m.put("module_dropout", config.moduleDropout());
        m.put("modules_to_save", null);
        m.put("num_cayley_neumann_terms", config.numNeumannTerms());
        m.put("oft_block_size", config.blockSize());
        m.put("peft_type", "OFT");
        m.put("r", config.r());
        m.put("rank_pattern", Map.of());
        m.put("revision", null);
        m.put("target_modules", config.targetModules());
        m.put("task_type", "CAUSAL_LM");
        m.put("use_cayley_neumann", true);
        return PyJson.dumps(m, true, 2, null, null, true);
    }

    /// Reads an OFT adapter directory, checked against the model it will be applied to.
    public static OftAdapter read(Path dir, LlamaConfig c) {
        Path cf = dir.resolve(CONFIG_FILE), wf = dir.resolve(WEIGHTS_FILE);
        JsonNode root;
        try {
            root = new ObjectMapper().readTree(Files.readString(cf, StandardCharsets.UTF_8));
        } catch (IOException e) {
            throw new FormatException(cf + ": cannot read the OFT adapter config: " + e.getMessage(), e);
        }
        if (!"OFT".equals(root.path("peft_type").asText()))
            throw new FormatException(cf + ": peft_type '" + root.path("peft_type").asText() + "' is not OFT");
        for (String k : List.of("coft", "block_share"))
            if (root.path(k).asBoolean(false))
                throw new ConfigException(cf + ": " + k + " true is not supported by peft4j's OFT (only PEFT's defaults coft/block_share false)");
        if (!root.path("use_cayley_neumann").asBoolean(false))
            throw new ConfigException(cf + ": use_cayley_neumann false (the exact Cayley transform) is not supported; peft4j builds PEFT's default Cayley-Neumann series");
        int terms = root.path("num_cayley_neumann_terms").asInt(5);
        List<String> targets = new ArrayList<>();
        JsonNode tm = root.path("target_modules");
        if (tm.isArray()) tm.forEach(n -> targets.add(n.asText()));
        else if (tm.isTextual()) targets.add(tm.asText());
        OftConfig config = new OftConfig(root.path("r").asInt(0), root.path("oft_block_size").asInt(0), targets, 0, terms);
        List<Module> mods = new ArrayList<>();
        try (SafeTensors st = SafeTensors.open(wf)) {
            for (TensorInfo info : new TreeMap<>(st.tensors()).values()) {
                Matcher m = KEY.matcher(info.name());
                if (!m.matches())
                    throw new FormatException(wf + ": tensor '" + info.name() + "' is not a decoder-layer oft_R.weight; peft4j reads OFT on Llama linear layers only");
                int l = Integer.parseInt(m.group(1));
                Projection p = Projection.byName(m.group(3));
                if (p == null || !p.parent.equals(m.group(2)) || l >= c.numHiddenLayers())
                    throw new FormatException(wf + ": tensor '" + info.name() + "' names no linear layer of this model (" + c.numHiddenLayers() + " layers)");
                long[] sh = info.shape();
                int[] nb = config.blocks(p.in(c));
                if (sh.length != 2 || sh[0] != nb[0] || sh[1] != OftRotation.elements(nb[1]))
                    throw new FormatException(wf + ": " + info.name() + " has shape " + java.util.Arrays.toString(sh) + ", expected [" + nb[0] + ", "
                            + OftRotation.elements(nb[1]) + "] for input width " + p.in(c) + " (oft_block_size " + nb[1] + ")");
                mods.add(new Module(l, p.module, nb[0], nb[1], st.readFloats(info.name())));
            }
        }
        return new OftAdapter(config, root.path("base_model_name_or_path").asText(null), mods);
    }

    /// W ← W·R_bdᵀ for every module, in place (PEFT `Linear.merge`): the float model then computes what the base with
    /// this adapter computes.
    public void mergeInto(LlamaWeights w) {
        int maxB = 1;
        for (Module m : modules) maxB = Math.max(maxB, m.blockSize());
        double[] pw = new double[Math.max(config.numNeumannTerms(), 2) * maxB * maxB];
        for (Module m : modules) {
            Projection p = Projection.of(m.module());
            float[] W = p.weight(w.layers.get(m.layer()));
            if (W == null) throw new ConfigException("OFT merge needs float weights for " + p.weightName(m.layer()) + " (a 4-bit base cannot hold the merged weight)");
            int K = p.in(w.config), M = p.out(w.config), b = m.blockSize();
            float[] rot = new float[m.nBlocks() * b * b];
            OftRotation.rotations(rot, m.theta(), m.nBlocks(), b, config.numNeumannTerms(), pw);
            OftRotation.merge(W, W.clone(), rot, M, K, b);
        }
    }
}
