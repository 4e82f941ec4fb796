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

    /// The template by LLaMA-Factory name, or `model` for the model's own chat template (tokenizer_config.json).
    public static Template template(TrainArgs.Data cfg, Path modelDir) {
        String name = cfg.template();
        Template t;
        if (name.equals("model")) {
            Path tc = modelDir.resolve("tokenizer_config.json");
            if (!Files.exists(tc)) throw new ConfigException("template 'model' needs a chat template in " + tc + "; pick a named template instead: " + SlotTemplate.NAMES);
            ChatTemplate ct = ChatTemplate.fromTokenizerConfig(tc);
            t = Template.fromRenderer("model", messages -> ct.render(toChat(messages), false));
        } else {
            SlotTemplate st = SlotTemplate.named(name);
            if (cfg.defaultSystem() != null) st = st.withDefaultSystem(cfg.defaultSystem());
            t = st;
        }
        return t;
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
        List<TokenizedExample> train, eval;
        if (args.finetuning().stage().equals("dpo")) {
            // pairs are split as pairs, then carried interleaved (chosen, rejected, ...; see Pairwise.interleave)
            List<Pairwise.Pair> pairs = encodePairs(cfg, seed, info, cfg.dataset(), template, enc);
            List<Pairwise.Pair> trainPairs = pairs, evalPairs = List.of();
            if (cfg.evalDataset() != null) evalPairs = encodePairs(cfg, seed, info, cfg.evalDataset(), template, enc);
            else if (cfg.valSize() > 0) {
                var split = DatasetLoader.split(pairs, cfg.valSize(), seed);
                trainPairs = split.train();
                evalPairs = split.eval();
            }
            if (trainPairs.isEmpty()) throw new ConfigException("no preference pairs in " + cfg.dataset() + "; check max_samples");
            int pad = padId(tokenizer);
            return new TrainData(Pairwise.interleave(trainPairs), Pairwise.interleave(evalPairs), template, pad);
        }
        if (args.finetuning().stage().equals("kto")) {
            // the KL sequences are assigned before the split, as LLaMA-Factory preprocesses before splitting
            List<Feedback.Example> all = encodeFeedback(cfg, seed, info, cfg.dataset(), template, enc);
            List<Feedback.Example> tr = all, ev = List.of();
            if (cfg.evalDataset() != null) ev = encodeFeedback(cfg, seed, info, cfg.evalDataset(), template, enc);
            else if (cfg.valSize() > 0) {
                var split = DatasetLoader.split(all, cfg.valSize(), seed);
                tr = split.train();
                ev = split.eval();
            }
            if (tr.isEmpty()) throw new ConfigException("no labelled examples in " + cfg.dataset() + "; check max_samples");
            return new TrainData(Feedback.interleave(tr), Feedback.interleave(ev), template, padId(tokenizer),
                    Feedback.tags(tr), Feedback.tags(ev));
        }
        List<TokenizedExample> all = encode(cfg, seed, info, cfg.dataset(), template, enc, pt);
        if (cfg.evalDataset() != null) {
            train = all;
            eval = encode(cfg, seed, info, cfg.evalDataset(), template, enc, pt);
        } else if (cfg.valSize() > 0) {
            var split = DatasetLoader.split(all, cfg.valSize(), seed);
            train = split.train();
            eval = split.eval();
        } else {
            train = all;
            eval = List.of();
        }
        if (train.isEmpty()) throw new ConfigException("no training examples left after preprocessing " + cfg.dataset() + "; check cutoff_len (" + cutoff + ") and max_samples");
        return new TrainData(train, eval, template, padId(tokenizer));
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
