package org.peft4j.train.recipe;

import org.peft4j.train.Evaluation;

import java.util.List;

/// compare_prompts and forgetting_text: greedy answers of the base and the tuned model side by side, and their
/// held-out losses on the validation set (what was learned) and on general text (what was forgotten). A loss is null
/// when there is no such data (no validation split, no forgetting_text).
public record Comparison(List<Answer> answers, Evaluation.Result validationBefore, Evaluation.Result validationAfter,
                         Evaluation.Result generalBefore, Evaluation.Result generalAfter) {

    public record Answer(String prompt, String before, String after) {}

    public Comparison {
        answers = List.copyOf(answers);
    }
}
