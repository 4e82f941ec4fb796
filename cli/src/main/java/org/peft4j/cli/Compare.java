package org.peft4j.cli;

import org.peft4j.train.Evaluation;
import org.peft4j.train.recipe.Comparison;

import java.io.PrintStream;

/// `train --compare` (compare_prompts, forgetting_text): prints the recipe's [Comparison] on stdout, greedy answers
/// before and after training side by side, then the held-out losses: what was learned (validation loss) and what was
/// forgotten (loss on general text).
final class Compare {
    private Compare() {}

    static void print(Comparison c, PrintStream out) {
        out.println();
        if (!c.answers().isEmpty()) {
            out.println("=== before and after fine-tuning (greedy) ===");
            for (Comparison.Answer a : c.answers()) {
                out.println("Q: " + a.prompt());
                out.println("  before: " + a.before());
                out.println("  after:  " + a.after());
            }
            out.println();
        }
        out.println("=== held-out loss (perplexity) ===            base            tuned");
        if (c.validationBefore() != null) row(out, "validation set (learned)", c.validationBefore(), c.validationAfter());
        if (c.generalBefore() != null) row(out, "general text (forgetting check)", c.generalBefore(), c.generalAfter());
    }

    private static void row(PrintStream out, String what, Evaluation.Result a, Evaluation.Result b) {
        out.printf("%-36s %7.3f (%7.2f)  %7.3f (%7.2f)%n", what, a.loss(), a.perplexity(), b.loss(), b.perplexity());
    }
}
