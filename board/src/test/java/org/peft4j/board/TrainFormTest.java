package org.peft4j.board;

import org.junit.jupiter.api.Test;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;

/// The field a CLI message is shown next to, and the quoting of the previewed command line.
class TrainFormTest {
    @Test
    void messagesMapToTheKeyTheyName() {
        assertEquals("learning_rate", TrainForm.fieldOf("command line: 'learning_rate' must be a number, got 'x'"));
        assertEquals("lora_dropout", TrainForm.fieldOf("lora_dropout must be in [0, 1), got 2.0"));
        assertEquals("per_device_train_batch_size", TrainForm.fieldOf("per_device_train_batch_size and gradient_accumulation_steps must be >= 1"));
        assertEquals("quantization_type", TrainForm.fieldOf("quantization_type must be nf4 or fp4, got 'x'"), "not quantization_bit, a prefix of no word here");
        assertEquals("eval_strategy", TrainForm.fieldOf("eval_strategy must be no, steps or epoch, got 'x'"));
        assertEquals("eval_strategy", TrainForm.fieldOf("'evaluation_strategy' must be a string"), "the old alias points at the field shown");
        assertNull(TrainForm.fieldOf("something else failed"));
    }

    @Test
    void theCommandLineIsQuotedForAShell() {
        assertEquals("identity_en", TrainForm.shellQuote("identity_en"));
        assertEquals("/a/b-c.d", TrainForm.shellQuote("/a/b-c.d"));
        assertEquals("'Who are you?|Once upon a time'", TrainForm.shellQuote("Who are you?|Once upon a time"));
        assertEquals("'it'\\''s'", TrainForm.shellQuote("it's"));
        assertEquals("''", TrainForm.shellQuote(""));
        assertEquals("\"say \\\"hi\\\"\"", TrainForm.scalar("say \"hi\""));
        assertEquals("0.003", TrainForm.scalar(0.003));
    }
}
