package org.peft4j.tokenizer;

import org.peft4j.core.Peft4jException.FormatException;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.HashMap;
import java.util.Map;

/// A SentencePiece vocabulary: pieces with scores and types, as in `tokenizer.model` (sentencepiece_model.proto
/// `ModelProto`) or GGUF `tokenizer.ggml.{tokens,scores,token_type}` (same type numbering). Read by [SpmTokenizer].
public final class SpmVocab {
    /// Piece types (sentencepiece `SentencePiece.Type`, = GGUF token types).
    public static final int NORMAL = 1, UNKNOWN = 2, CONTROL = 3, USER_DEFINED = 4, UNUSED = 5, BYTE = 6;

    final String[] pieces;   // (V)
    final float[] scores;    // (V)
    final int[] types;       // (V)
    final Map<String, Integer> ids;
    final int unkId, bosId, eosId;
    final boolean addDummyPrefix;
    final boolean removeExtraWhitespaces;
    final int[] byteIds;     // (256) id of `<0xAB>`, or -1

    /// `bosId`/`eosId`/`unkId` are -1 when absent; `addDummyPrefix` prepends a space to text (llama.cpp's add_space_prefix).
    public SpmVocab(String[] pieces, float[] scores, int[] types, int unkId, int bosId, int eosId,
                    boolean addDummyPrefix, boolean removeExtraWhitespaces) {
        if (pieces.length != scores.length || pieces.length != types.length)
            throw new FormatException("SentencePiece vocab has " + pieces.length + " pieces but " + scores.length + " scores and "
                    + types.length + " types; they must have the same length");
        this.pieces = pieces; this.scores = scores; this.types = types;
        this.unkId = unkId; this.bosId = bosId; this.eosId = eosId;
        this.addDummyPrefix = addDummyPrefix; this.removeExtraWhitespaces = removeExtraWhitespaces;
        ids = new HashMap<>(pieces.length * 2);
        for (int i = 0; i < pieces.length; i++) ids.putIfAbsent(pieces[i], i);
        byteIds = new int[256];
        for (int b = 0; b < 256; b++) byteIds[b] = ids.getOrDefault(String.format("<0x%02X>", b), -1);
    }

    public int size() { return pieces.length; }
    public String piece(int id) { return pieces[id]; }
    public float score(int id) { return scores[id]; }
    public int type(int id) { return types[id]; }

    /// Reads a SentencePiece `tokenizer.model` (a protobuf ModelProto, parsed here field by field).
    public static SpmVocab read(Path file) {
        byte[] data;
        try {
            data = Files.readAllBytes(file);
        } catch (IOException e) {
            throw new FormatException("Cannot read " + file + ": " + e.getMessage(), e);
        }
        try {
            return parse(data);
        } catch (FormatException e) {
            throw new FormatException(file + " is not a valid SentencePiece model: " + e.getMessage()
                    + "; the file is truncated or corrupt, re-download it from the model repository", e);
        }
    }

    // ---- protobuf (wire types: 0 varint, 1 fixed64, 2 length-delimited, 5 fixed32) ----

    private static SpmVocab parse(byte[] data) {
        java.util.List<String> pieces = new java.util.ArrayList<>();
        java.util.List<Float> scores = new java.util.ArrayList<>();
        java.util.List<Integer> types = new java.util.ArrayList<>();
        int unk = 0, bos = 1, eos = 2;               // TrainerSpec defaults
        boolean dummyPrefix = true, removeExtra = true; // NormalizerSpec defaults
        Proto p = new Proto(data, 0, data.length);
        while (p.more()) {
            long tag = p.varint();
            int field = (int) (tag >>> 3), wire = (int) (tag & 7);
            if (field == 1 && wire == 2) {          // repeated SentencePiece pieces
                Proto s = p.sub();
                String piece = null; float score = 0; int type = NORMAL;
                while (s.more()) {
                    long t = s.varint();
                    int f = (int) (t >>> 3), w = (int) (t & 7);
                    if (f == 1 && w == 2) piece = s.string();
                    else if (f == 2 && w == 5) score = Float.intBitsToFloat(s.fixed32());
                    else if (f == 3 && w == 0) type = (int) s.varint();
                    else s.skip(w);
                }
                if (piece == null) throw new FormatException("piece #" + pieces.size() + " has no text");
                pieces.add(piece); scores.add(score); types.add(type);
            } else if (field == 2 && wire == 2) {   // TrainerSpec
                Proto s = p.sub();
                while (s.more()) {
                    long t = s.varint();
                    int f = (int) (t >>> 3), w = (int) (t & 7);
                    if (w == 0 && f == 40) unk = (int) s.varint();
                    else if (w == 0 && f == 41) bos = (int) s.varint();
                    else if (w == 0 && f == 42) eos = (int) s.varint();
                    else s.skip(w);
                }
            } else if (field == 3 && wire == 2) {   // NormalizerSpec
                Proto s = p.sub();
                while (s.more()) {
                    long t = s.varint();
                    int f = (int) (t >>> 3), w = (int) (t & 7);
                    if (w == 0 && f == 3) dummyPrefix = s.varint() != 0;
                    else if (w == 0 && f == 4) removeExtra = s.varint() != 0;
                    else s.skip(w);
                }
            } else {
                p.skip(wire);
            }
        }
        if (pieces.isEmpty()) throw new FormatException("it has no pieces");
        int n = pieces.size();
        float[] sc = new float[n];
        int[] ty = new int[n];
        for (int i = 0; i < n; i++) { sc[i] = scores.get(i); ty[i] = types.get(i); }
        return new SpmVocab(pieces.toArray(String[]::new), sc, ty, unk < n ? unk : -1, bos < n ? bos : -1, eos < n ? eos : -1,
                dummyPrefix, removeExtra);
    }

    /// A cursor over `data[pos, end)`.
    private static final class Proto {
        private final byte[] data;
        private int pos;
        private final int end;

        Proto(byte[] data, int pos, int end) { this.data = data; this.pos = pos; this.end = end; }

        boolean more() { return pos < end; }

        long varint() {
            long v = 0;
            for (int shift = 0; shift < 64; shift += 7) {
                need(1);
                byte b = data[pos++];
                v |= (long) (b & 0x7F) << shift;
                if (b >= 0) return v;
            }
            throw new FormatException("malformed varint at byte " + pos);
        }

        int fixed32() {
            need(4);
            int v = (data[pos] & 0xFF) | (data[pos + 1] & 0xFF) << 8 | (data[pos + 2] & 0xFF) << 16 | (data[pos + 3] & 0xFF) << 24;
            pos += 4;
            return v;
        }

        private int length() {
            long len = varint();
            if (len < 0 || len > end - pos) throw new FormatException("field of " + len + " bytes at byte " + pos + " runs past the end (" + end + ")");
            return (int) len;
        }

        Proto sub() {
            int len = length();
            Proto s = new Proto(data, pos, pos + len);
            pos += len;
            return s;
        }

        String string() {
            int len = length();
            String s = new String(data, pos, len, StandardCharsets.UTF_8);
            pos += len;
            return s;
        }

        void skip(int wire) {
            switch (wire) {
                case 0 -> varint();
                case 1 -> { need(8); pos += 8; }
                case 2 -> { int len = length(); pos += len; }
                case 5 -> { need(4); pos += 4; }
                default -> throw new FormatException("unknown protobuf wire type " + wire + " at byte " + pos);
            }
        }

        private void need(int n) {
            if (pos + n > end) throw new FormatException("truncated at byte " + pos + " (needs " + n + " more, message ends at " + end + ")");
        }
    }
}
