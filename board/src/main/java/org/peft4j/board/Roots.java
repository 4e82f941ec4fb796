package org.peft4j.board;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.InvalidPathException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.function.Function;
import java.util.regex.Pattern;

/// Where paths chosen in the page may point: inside the saves folder, the data folder or a model folder, and nowhere
/// else. A path is taken relative to its root (or absolute inside it); `..` that leaves the root, an absolute path
/// elsewhere and a symbolic link out of the root are refused with a [BoardException] naming the form field.
public final class Roots {
    private static final Pattern REPO_ID = Pattern.compile("[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*");

    private final Path saves, data;
    private final List<Path> models;
    private final Function<String, Path> hub;

    Roots(BoardConfig c) {
        this.saves = c.saves();
        this.data = c.data();
        List<Path> m = new ArrayList<>(c.models());
        if (!m.contains(saves)) m.add(saves);
        this.models = List.copyOf(m);
        this.hub = c.hub();
    }

    public Path saves() { return saves; }

    public Path data() { return data; }

    public List<Path> models() { return models; }

    /// `value` inside the saves folder ("" or "." is the folder itself).
    public Path inSaves(String value, String field) { return inside(saves, "the saves folder", value, field); }

    /// `value` inside the data folder.
    public Path inData(String value, String field) { return inside(data, "the data folder", value, field); }

    /// A model: a folder inside one of the model roots (relative to the first that has it), or a Hub repo id.
    public Path model(String value, String field) {
        if (value == null || value.isBlank()) throw BoardException.invalid(field, "choose a model: a folder under " + models + " or a Hub repo id (org/name)");
        Path p = parse(value, field);
        if (p.isAbsolute()) {
            for (Path root : models) if (p.normalize().startsWith(root)) return existingFolder(inside(root, root.toString(), value, field), value, field);
            throw BoardException.invalid(field, "'" + value + "' is outside the model folders " + models + "; give a folder inside one of them");
        }
        for (Path root : models) {
            Path candidate = root.resolve(p).normalize();
            if (candidate.startsWith(root) && Files.isDirectory(candidate)) return inside(root, root.toString(), value, field);
        }
        if (hub != null && REPO_ID.matcher(value).matches() && !value.contains("..")) return hub.apply(value);
        throw BoardException.invalid(field, "no model folder '" + value + "' under " + models + (hub != null ? ", and it is not a Hub repo id (org/name)" : "")
                + "; pick one of the listed models");
    }

    /// The model folders found under the model roots (those holding a config.json), relative to their root.
    public List<String> listModels() {
        List<String> out = new ArrayList<>();
        for (Path root : models) {
            if (!Files.isDirectory(root)) continue;
            try (var s = Files.walk(root, 4)) {
                s.filter(d -> Files.isRegularFile(d.resolve("config.json")) && !d.getFileName().toString().startsWith("checkpoint-"))
                        .sorted().forEach(d -> {
                            String rel = root.relativize(d).toString();
                            if (!rel.isEmpty() && !out.contains(rel)) out.add(rel);
                        });
            } catch (IOException e) {
                // an unreadable root lists nothing
            }
        }
        return out;
    }

    /// `path` as the page shows it: relative to the saves or data folder when inside one, else as is.
    public String show(Path path) {
        Path p = path.toAbsolutePath().normalize();
        for (Path root : List.of(saves, data)) if (p.startsWith(root)) return root.relativize(p).toString();
        for (Path root : models) if (p.startsWith(root)) return root.relativize(p).toString();
        return p.toString();
    }

    private static Path existingFolder(Path p, String value, String field) {
        if (!Files.isDirectory(p)) throw BoardException.invalid(field, "model folder '" + value + "' does not exist");
        return p;
    }

    /// `value` resolved under `root`; refused when it leaves the root by name or by a symbolic link.
    static Path inside(Path root, String rootName, String value, String field) {
        Path p = parse(value == null ? "" : value, field);
        Path resolved = (p.isAbsolute() ? p : root.resolve(p)).normalize();
        if (!resolved.startsWith(root))
            throw BoardException.invalid(field, "'" + value + "' is outside " + rootName + " (" + root + "); give a path inside it");
        // the deepest existing ancestor must really lie inside the root (no symbolic link out)
        Path existing = resolved;
        while (existing != null && !Files.exists(existing)) existing = existing.getParent();
        try {
            Path realRoot = root.toRealPath();
            if (existing != null && existing.startsWith(root) && !existing.toRealPath().startsWith(realRoot))
                throw BoardException.invalid(field, "'" + value + "' links outside " + rootName + "; copy the files into it instead");
        } catch (IOException e) {
            throw BoardException.invalid(field, rootName + " " + root + " cannot be read: " + e.getMessage());
        }
        return resolved;
    }

    private static Path parse(String value, String field) {
        try {
            return Path.of(value);
        } catch (InvalidPathException e) {
            throw BoardException.invalid(field, "'" + value + "' is not a valid path");
        }
    }
}
