package org.peft4j.tokenizer;

import com.fasterxml.jackson.core.JsonFactory;
import com.fasterxml.jackson.core.JsonParser;
import com.fasterxml.jackson.core.JsonToken;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import org.peft4j.core.Peft4jException.FormatException;

import java.io.IOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

/// Reads a tokenizer.json with a streaming parser: `model.vocab` and `model.merges`, which are nearly all of the file
/// (about 100,000 entries for a 49K vocabulary), go straight into a map and a list of pairs without a JSON tree; the
/// rest (normalizer, pre-tokenizer, added tokens, post-processor, decoder, the model's flags) is small and kept as a
/// tree. A tree of the whole file cost most of a second of a command's start.
record TokenizerJson(ObjectNode rest, Map<String, Integer> vocab, List<String[]> merges) {
    /// Field names are neither interned nor canonicalized: the vocabulary's ~50,000 keys are each read once, and
    /// interning them (String.intern, Jackson's default) took a good part of the parse.
    private static final ObjectMapper JSON = new ObjectMapper(JsonFactory.builder()
            .disable(JsonFactory.Feature.INTERN_FIELD_NAMES).disable(JsonFactory.Feature.CANONICALIZE_FIELD_NAMES).build());

    /// The file's top-level object without `model.vocab` and `model.merges`, and those two read; `vocab` or `merges`
    /// null when the model has none (the caller says what is wrong).
    static TokenizerJson read(Path file) {
        try (JsonParser p = JSON.getFactory().createParser(file.toFile())) {
            return read(p, file.toString());
        } catch (IOException e) {
            throw new FormatException(file + " is not valid JSON (" + e.getMessage().lines().findFirst().orElse("")
                    + "); the file is truncated or corrupt, re-download it from the model repository", e);
        }
    }

    /// The same split of a tree already parsed (a tokenizer.json rebuilt from GGUF metadata), by the same reader.
    static TokenizerJson read(JsonNode root, String file) {
        try (JsonParser p = JSON.treeAsTokens(root)) {
            return read(p, file);
        } catch (IOException e) {
            throw new FormatException(file + ": " + e.getMessage(), e);
        }
    }

    private static TokenizerJson read(JsonParser p, String file) throws IOException {
        if (p.nextToken() != JsonToken.START_OBJECT) throw notTokenizer(file);
        ObjectNode rest = JSON.createObjectNode();
        Map<String, Integer> vocab = null;
        List<String[]> merges = null;
        while (p.nextToken() == JsonToken.FIELD_NAME) {
            String name = p.currentName();
            JsonToken t = p.nextToken();
            if (!name.equals("model") || t != JsonToken.START_OBJECT) { rest.set(name, JSON.readTree(p)); continue; }
            ObjectNode model = JSON.createObjectNode();
            while (p.nextToken() == JsonToken.FIELD_NAME) {
                String field = p.currentName();
                JsonToken v = p.nextToken();
                if (field.equals("vocab") && v == JsonToken.START_OBJECT) vocab = vocab(p, file);
                else if (field.equals("merges") && v == JsonToken.START_ARRAY) merges = merges(p, file);
                else model.set(field, JSON.readTree(p));
            }
            rest.set("model", model);
        }
        return new TokenizerJson(rest, vocab, merges);
    }

    private static FormatException notTokenizer(String file) {
        return new FormatException(file + " has no 'model' object, so it is not a Hugging Face tokenizer.json; "
                + "re-download it from the model repository");
    }

    /// `{"token": id, ...}` after its START_OBJECT.
    private static Map<String, Integer> vocab(JsonParser p, String file) throws IOException {
        Map<String, Integer> vocab = new HashMap<>(1 << 16);
        while (p.nextToken() == JsonToken.FIELD_NAME) {
            String token = p.currentName();
            JsonToken v = p.nextToken();
            if (v != JsonToken.VALUE_NUMBER_INT || p.getNumberType() == JsonParser.NumberType.BIG_INTEGER || p.getLongValue() < 0 || p.getLongValue() > Integer.MAX_VALUE)
                throw new FormatException(file + ": vocab entry '" + token + "' has id " + (v.isStructStart() ? JSON.readTree(p) : p.getText())
                        + ", expected a non-negative integer");
            vocab.put(token, p.getIntValue());
        }
        return vocab;
    }

    /// `["a b", ...]` or `[["a", "b"], ...]` after its START_ARRAY; `#version` lines are skipped.
    private static List<String[]> merges(JsonParser p, String file) throws IOException {
        List<String[]> pairs = new ArrayList<>(1 << 16);
        for (JsonToken t; (t = p.nextToken()) != JsonToken.END_ARRAY; ) {
            if (t == JsonToken.VALUE_STRING) {
                String s = p.getText();
                if (s.startsWith("#version")) continue;
                int sp = s.indexOf(' ');
                if (sp < 0) throw new FormatException(file + ": merge '" + s + "' is not two tokens separated by a space");
                pairs.add(new String[] {s.substring(0, sp), s.substring(sp + 1)});
                continue;
            }
            JsonNode mg = JSON.readTree(p);
            if (mg.isArray() && mg.size() == 2)
                pairs.add(new String[] {mg.get(0).asText(), mg.get(1).asText()});
            else throw new FormatException(file + ": merge " + mg + " is neither \"a b\" nor [\"a\", \"b\"]");
        }
        return pairs;
    }
}
