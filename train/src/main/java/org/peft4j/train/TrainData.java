package org.peft4j.train;

import org.peft4j.core.Peft4jException.ConfigException;
import org.peft4j.template.ChatMessage;
import org.peft4j.template.ChatTemplate;
import org.peft4j.tokenizer.Tokenizer;
import org.peft4j.train.data.Conversation;
import org.peft4j.train.data.DatasetInfo;
import org.peft4j.train.data.DatasetLoader;
import org.peft4j.train.data.Feedback;
import org.peft4j.train.data.Message;
import org.peft4j.train.data.Pairwise;
import org.peft4j.train.data.Pretraining;
import org.peft4j.train.data.SlotTemplate;
import org.peft4j.train.data.Supervised;
import org.peft4j.train.data.Template;
import org.peft4j.train.data.TextEncoder;
import org.peft4j.train.data.TokenizedExample;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

/// The datasets of a `train` run, from the config: loaded, converted, rendered with the template, tokenized, cut to
/// cutoff_len, optionally packed, and split into training and validation sets. For stage dpo the lists hold preference
/// pairs interleaved, [chosen₀, rejected₀, chosen₁, …] ([Pairwise#interleave]), split by pair; for stage kto the
/// examples interleaved with their KL sequences, [target₀, kl₀, target₁, …] ([Feedback#interleave]), with their
/// labels in `trainDesirable`/`evalDesirable` (null for other stages).
public record TrainData(List<TokenizedExample> train, List<TokenizedExample> eval, Template template, int padId,
                        boolean[] trainDesirable, boolean[] evalDesirable) {

    public TrainData(List<TokenizedExample> train, List<TokenizedExample> eval, Template template, int padId) {
        this(train, eval, template, padId, null, null);
    }

    /// Adapts our tokenizer to the data pipeline's encoder (text without added special tokens).
    public static TextEncoder encoder(Tokenizer t) {
        return new TextEncoder() {
            @Override public int[] encode(String text) { return t.encode(text, false); }
            @Override public int bosId() { return t.bosId(); }
            @Override public int eosId() {
                if (t.eosId() < 0) throw new ConfigException("the tokenizer has no EOS token; set eos_token in tokenizer_config.json");
                return t.eosId();
            }
            @Override public int tokenId(String token) { return t.tokenToId(token); }
        };
    }

    /// The template by LLaMA-Factory name, `model` for the model's own chat template (tokenizer_config.json or
    /// chat_template.jinja), or, with `template` unset, what LLaMA-Factory picks: the model's own chat template when it
    /// has one, else `empty`.
    public static Template template(TrainArgs.Data cfg, Path modelDir) {
        String name = cfg.template();
        Path tc = modelDir.resolve("tokenizer_config.json");
        if (name == null) name = hasChatTemplate(modelDir) ? "model" : "empty";
        Template t;
        if (name.equals("model") && Files.isRegularFile(modelDir)) {   // a GGUF file: its tokenizer.chat_template
            var tcfg = org.peft4j.tokenizer.Tokenizer.load(modelDir).config();
            if (tcfg.chatTemplate() == null) throw new ConfigException("template 'model' needs a chat template; " + modelDir
                    + " has no tokenizer.chat_template: pick a named template (template: " + String.join(", ", SlotTemplate.NAMES) + ") or leave template unset for 'empty'");
            ChatTemplate ct = ChatTemplate.of(tcfg.chatTemplate(), tcfg.bosToken(), tcfg.eosToken());
            t = Template.fromRenderer("model", messages -> ct.render(toChat(messages), false));
        } else if (name.equals("model")) {
            if (!hasChatTemplate(modelDir))
                throw new ConfigException("template 'model' needs a chat template in " + tc + " (or chat_template.jinja); this model has none: "
                        + "pick a named template (template: " + String.join(", ", SlotTemplate.NAMES) + ") or leave template unset for 'empty'");
            ChatTemplate ct = ChatTemplate.fromTokenizerConfig(tc);
            t = Template.fromRenderer("model", messages -> ct.render(toChat(messages), false));
        } else {
            SlotTemplate st = SlotTemplate.named(name);
            if (cfg.defaultSystem() != null) st = st.withDefaultSystem(cfg.defaultSystem());
            if (cfg.toolFormat() != null) st = st.withToolFormat(cfg.toolFormat());
            t = st.withEnableThinking(cfg.enableThinking());
        }
        return t;
    }

    /// Whether the model folder has its own chat template: `chat_template` in tokenizer_config.json, or chat_template.jinja.
    public static boolean hasChatTemplate(Path modelDir) {
        if (Files.isRegularFile(modelDir)) return org.peft4j.tokenizer.Tokenizer.load(modelDir).config().chatTemplate() != null;   // GGUF
        Path tc = modelDir.resolve("tokenizer_config.json");
        if (Files.exists(modelDir.resolve("chat_template.jinja"))) return Files.exists(tc);
        if (!Files.exists(tc)) return false;
        try {
            var node = new com.fasterxml.jackson.databind.ObjectMapper().readTree(tc.toFile()).get("chat_template");
            return node != null && !node.isNull() && !(node.isTextual() && node.asText().isBlank());
        } catch (java.io.IOException e) {
            throw new org.peft4j.core.Peft4jException.FormatException("cannot read " + tc + " as JSON: " + e.getMessage(), e);
        }
    }

    static List<ChatMessage> toChat(List<Message> messages) {
        List<ChatMessage> out = new ArrayList<>();
        for (Message m : messages) out.add(new ChatMessage(switch (m.role()) {
            case USER -> "user";
            case ASSISTANT -> "assistant";
            case SYSTEM -> "system";
            case FUNCTION -> "assistant";
            case OBSERVATION -> "tool";
        }, m.content()));
        return out;
    }

    public static TrainData prepare(TrainConfig cfg, Tokenizer tokenizer, Path modelDir) {
        return prepare(cfg.args(), tokenizer, modelDir);
    }

    public static TrainData prepare(TrainArgs args, Tokenizer tokenizer, Path modelDir) {
        TrainArgs.Data cfg = args.data();
        TextEncoder enc = encoder(tokenizer);
        Template template = template(cfg, modelDir);
        DatasetInfo info = DatasetInfo.load(cfg.datasetDir());
        long seed = args.training().seed();
        int cutoff = cfg.cutoffLen();
        boolean pt = args.finetuning().stage().equals("pt");
        String stage = args.finetuning().stage();
        if (stage.equals("dpo") || stage.equals("rm")) {   // rm: LLaMA-Factory's pairwise processor, as dpo
            // pairs are split as pairs, then carried interleaved (chosen, rejected, ...; see Pairwise.interleave)
            var split = trainEval(cfg, seed, names -> encodePairs(cfg, seed, info, names, template, enc));
            if (split.train().isEmpty()) throw new ConfigException("no preference pairs in " + cfg.dataset() + "; check max_samples");
            return new TrainData(Pairwise.interleave(split.train()), Pairwise.interleave(split.eval()), template, padId(tokenizer));
        }
        if (stage.equals("kto")) {
            // the KL sequences are assigned before the split, as LLaMA-Factory preprocesses before splitting
            var split = trainEval(cfg, seed, names -> encodeFeedback(cfg, seed, info, names, template, enc));
            if (split.train().isEmpty()) throw new ConfigException("no labelled examples in " + cfg.dataset() + "; check max_samples");
            return new TrainData(Feedback.interleave(split.train()), Feedback.interleave(split.eval()), template, padId(tokenizer),
                    Feedback.tags(split.train()), Feedback.tags(split.eval()));
        }
        var split = trainEval(cfg, seed, names -> encode(cfg, seed, info, names, template, enc, pt));
        if (split.train().isEmpty()) throw new ConfigException("no training examples left after preprocessing " + cfg.dataset() + "; check cutoff_len (" + cutoff + ") and max_samples");
        return new TrainData(split.train(), split.eval(), template, padId(tokenizer));
    }

    /// The training set of `dataset` and the validation set: `eval_dataset` when given, else `val_size` split off
    /// (after preprocessing, as LLaMA-Factory splits), else none.
    private static <T> DatasetLoader.Split<T> trainEval(TrainArgs.Data cfg, long seed, java.util.function.Function<String, List<T>> encode) {
        List<T> all = encode.apply(cfg.dataset());
        if (cfg.evalDataset() != null) return new DatasetLoader.Split<>(all, encode.apply(cfg.evalDataset()));
        if (cfg.valSize() > 0) return DatasetLoader.split(all, cfg.valSize(), seed);
        return new DatasetLoader.Split<>(all, List.of());
    }

    private static int padId(Tokenizer tokenizer) {
        return tokenizer.config().padToken() != null && tokenizer.tokenToId(tokenizer.config().padToken()) >= 0
                ? tokenizer.tokenToId(tokenizer.config().padToken()) : Math.max(0, tokenizer.eosId());
    }

    private static List<Pairwise.Pair> encodePairs(TrainArgs.Data cfg, long seed, DatasetInfo info, String datasets, Template template, TextEncoder enc) {
        List<Pairwise.Pair> out = new ArrayList<>();
        for (Conversation[] p : DatasetLoader.loadPairs(info, DatasetLoader.parseNames(datasets), cfg.maxSamples(), seed))
            out.add(Pairwise.encode(template, enc, p, cfg.cutoffLen()));
        return out;
    }

    private static List<Feedback.Example> encodeFeedback(TrainArgs.Data cfg, long seed, DatasetInfo info, String datasets, Template template, TextEncoder enc) {
        return Feedback.encodeAll(template, enc, DatasetLoader.loadFeedback(info, DatasetLoader.parseNames(datasets), cfg.maxSamples(), seed), cfg.cutoffLen());
    }

    private static List<TokenizedExample> encode(TrainArgs.Data cfg, long seed, DatasetInfo info, String datasets,
                                                 Template template, TextEncoder enc, boolean pt) {
        List<String> names = DatasetLoader.parseNames(datasets);
        Integer max = cfg.maxSamples();
        int cutoff = cfg.cutoffLen();
        boolean packing = cfg.packing();
        if (pt) {
            List<String> texts = DatasetLoader.loadTexts(info, names, max, seed);
            return Pretraining.encode(texts, enc, Pretraining.eosId(template, enc), cutoff, packing, enc.bosId() >= 0);
        }
        List<Conversation> cs = DatasetLoader.loadConversations(info, names, max, seed);
        var opts = new Supervised.Options(cutoff, cfg.trainOnPrompt(), cfg.maskHistory());
        List<TokenizedExample> ex = Supervised.encodeAll(template, enc, cs, opts);
        return packing ? Supervised.pack(ex, cutoff, false) : ex;
    }

    /// The longest example, which bounds the planned sequence length.
    public int maxLength() {
        int m = 2;
        for (TokenizedExample e : train) m = Math.max(m, e.length());
        for (TokenizedExample e : eval) m = Math.max(m, e.length());
        return m;
    }

    /// The prompt ids for asking `question` through the template (for before/after comparisons).
    public int[] promptIds(TextEncoder enc, String system, String question) {
        Conversation c = new Conversation(system == null ? "" : system, "", List.of(Message.user(question), Message.assistant("")));
        var turns = template.encodeMultiturn(enc, c);
        return turns.get(0).prompt();
    }
}
