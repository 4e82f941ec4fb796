package org.peft4j.train;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import org.junit.jupiter.api.Test;

import java.io.InputStream;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.*;

/// do_predict's BLEU-4 and ROUGE-1/2/L ([NlgMetrics]) against reference/nlg_metrics.py (nlg/nlg_metrics.json), written
/// independently from the same formulas (nltk's sentence_bleu with method3 on characters, pltrdy/rouge_chinese's
/// set-based ROUGE-N and summary-level ROUGE-L): per example and the predict_ means, on sentences with punctuation,
/// decimals and percentages, repeated words, empty and punctuation-only predictions.
class NlgMetricsTest {
    @Test
    void scoresEqualThePythonReference() throws Exception {
        JsonNode f;
        try (InputStream in = NlgMetricsTest.class.getResourceAsStream("/nlg/nlg_metrics.json")) {
            assertNotNull(in, "nlg/nlg_metrics.json missing: run python3 reference/nlg_metrics.py");
            f = new ObjectMapper().readTree(in);
        }
        List<Map<String, Double>> all = new ArrayList<>();
        for (JsonNode c : f.get("cases")) {
            Map<String, Double> s = NlgMetrics.scores(c.get("pred").asText(), c.get("label").asText());
            for (String k : List.of("bleu-4", "rouge-1", "rouge-2", "rouge-l"))
                assertEquals(c.get(k).asDouble(), s.get(k), 1e-9, k + " of '" + c.get("pred").asText() + "' vs '" + c.get("label").asText() + "'");
            all.add(s);
        }
        Map<String, Double> means = NlgMetrics.means(all);
        f.get("means").fields().forEachRemaining(e -> assertEquals(e.getValue().asDouble(), means.get(e.getKey()), 1e-9, e.getKey()));
    }

    /// Identical long texts score 100 everywhere; a prediction sharing no character scores 0 (BLEU counts characters, so a
    /// shared space would already score).
    @Test
    void extremes() {
        String t = "Once upon a time there was a little girl named Lily. She liked to play outside.";
        NlgMetrics.scores(t, t).values().forEach(v -> assertEquals(100.0, v, 1e-3));
        NlgMetrics.scores("zzzzzz", t).values().forEach(v -> assertEquals(0.0, v, 1e-12));
        assertEquals(List.of("Pi", " ", "is", " ", "3.14", ",", " ", "100%", "!"), NlgMetrics.words("Pi is 3.14, 100%!"));
    }
}
