package org.peft4j.model;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.net.URISyntaxException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/// Test fixtures: JSON, float32 .npy files, and the model folders under src/test/resources/models.
final class Fixtures {
    private Fixtures() {}

    static JsonNode json(Path p) {
        try { return new ObjectMapper().readTree(p.toFile()); }
        catch (IOException e) { throw new UncheckedIOException(e); }
    }

    static Path resource(String name) {
        try { return Path.of(Fixtures.class.getResource("/models/" + name).toURI()); }
        catch (URISyntaxException | NullPointerException e) { throw new IllegalStateException("missing test resource models/" + name + "; run reference/make_model_goldens.py"); }
    }

    static int[] ints(JsonNode a) {
        int[] r = new int[a.size()];
        for (int i = 0; i < r.length; i++) r[i] = a.get(i).intValue();
        return r;
    }

    static float[] floats(JsonNode a) {
        float[] r = new float[a.size()];
        for (int i = 0; i < r.length; i++) r[i] = (float) a.get(i).doubleValue();
        return r;
    }

    /// A little-endian float32 C-order .npy (version 1 or 2 header); returns the data, shape in `shape`.
    static float[] npy(Path p, int[] shape) {
        try {
            ByteBuffer b = ByteBuffer.wrap(Files.readAllBytes(p)).order(ByteOrder.LITTLE_ENDIAN);
            int major = b.get(6);
            int hlen = major == 1 ? Short.toUnsignedInt(b.getShort(8)) : b.getInt(8);
            int start = (major == 1 ? 10 : 12);
            String header = new String(b.array(), start, hlen, StandardCharsets.US_ASCII);
            if (!header.contains("'<f4'") || header.contains("'fortran_order': True")) throw new IllegalStateException(p + ": not a C-order float32 npy: " + header);
            Matcher m = Pattern.compile("'shape': \\((\\d+), (\\d+)\\)").matcher(header);
            if (!m.find()) throw new IllegalStateException(p + ": expected a 2-D array: " + header);
            shape[0] = Integer.parseInt(m.group(1)); shape[1] = Integer.parseInt(m.group(2));
            float[] out = new float[shape[0] * shape[1]];
            b.position(start + hlen).asFloatBuffer().get(out);
            return out;
        } catch (IOException e) { throw new UncheckedIOException(e); }
    }
}
