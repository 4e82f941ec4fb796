package org.peft4j.cli;

import org.peft4j.hub.HubClient;
import org.peft4j.hub.HubConfig;

import java.nio.file.Files;
import java.nio.file.Path;

/// A model argument: a local folder as is, or a Hugging Face repo id (`org/name`) downloaded into the huggingface_hub
/// cache (HF_HOME, HF_ENDPOINT, HF_TOKEN, HF_HUB_OFFLINE honoured) with a progress bar.
final class ModelResolver {
    private ModelResolver() {}

    static Path resolve(String spec) {
        Path p = Path.of(spec);
        if (Files.exists(p) || !HubClient.looksLikeRepoId(spec)) return p;
        HubConfig cfg = HubConfig.fromEnvironment();
        System.err.println("peft4j: fetching " + spec + " from " + (cfg.offline() ? "the local Hub cache (HF_HUB_OFFLINE)" : cfg.endpoint()));
        ProgressBar bar = new ProgressBar("download");
        return new HubClient(cfg).snapshot(spec, null, null, (done, total) ->
                bar.update(done, total, String.format("| %.1f/%.1f MB", done / 1e6, total / 1e6), Double.NaN));
    }
}
