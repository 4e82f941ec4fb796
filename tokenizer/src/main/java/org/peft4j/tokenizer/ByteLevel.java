package org.peft4j.tokenizer;

import java.io.ByteArrayOutputStream;
import java.nio.charset.StandardCharsets;

/// GPT-2's reversible byte↔char table: every byte becomes a printable code point, so byte-level BPE vocabularies are
/// plain strings. Reference: HF tokenizers `pre_tokenizers/byte_level.rs` `bytes_char`.
final class ByteLevel {
    private ByteLevel() {}

    /// byte (0..255) → code point
    private static final char[] BYTE_TO_CHAR = new char[256];
    /// code point (< 512) → byte, or -1
    private static final int[] CHAR_TO_BYTE = new int[512];

    static {
        // Printable bytes !..~, ¡..¬, ®..ÿ keep their code point; the other 68, in increasing order, go to U+0100...
        boolean[] printable = new boolean[256];
        for (int b = 33; b <= 126; b++) printable[b] = true;
        for (int b = 161; b <= 172; b++) printable[b] = true;
        for (int b = 174; b <= 255; b++) printable[b] = true;
        int next = 256;
        for (int b = 0; b < 256; b++) BYTE_TO_CHAR[b] = printable[b] ? (char) b : (char) next++;
        java.util.Arrays.fill(CHAR_TO_BYTE, -1);
        for (int b = 0; b < 256; b++) CHAR_TO_BYTE[BYTE_TO_CHAR[b]] = b;
    }

    /// Maps the UTF-8 bytes of `s` to their table chars.
    static String encode(String s) {
        byte[] bytes = s.getBytes(StandardCharsets.UTF_8);
        char[] out = new char[bytes.length];
        for (int i = 0; i < bytes.length; i++) out[i] = BYTE_TO_CHAR[bytes[i] & 0xFF];
        return new String(out);
    }

    /// Appends the bytes a token stands for. A token holding any char outside the table contributes its own UTF-8
    /// bytes instead (an added token such as `<|im_start|>` is all in the table anyway), as HF's ByteLevel decoder does.
    static void decodeInto(String token, ByteArrayOutputStream out) {
        for (int i = 0; i < token.length(); i++) {
            char c = token.charAt(i);
            if (c >= CHAR_TO_BYTE.length || CHAR_TO_BYTE[c] < 0) {
                out.writeBytes(token.getBytes(StandardCharsets.UTF_8));
                return;
            }
        }
        for (int i = 0; i < token.length(); i++) out.write(CHAR_TO_BYTE[token.charAt(i)]);
    }
}
