package org.peft4j.hub;

import java.util.List;
import java.util.regex.Pattern;

/// `allow_patterns` matching as huggingface_hub's `filter_repo_objects` does it: Python `fnmatch.fnmatchcase`,
/// where `*` also crosses `/`, and a pattern ending in `/` means everything under that folder.
final class Glob {
    private Glob() { }

    static boolean matchesAny(String path, List<String> patterns) {
        for (String p : patterns) if (compile(p).matcher(path).matches()) return true;
        return false;
    }

    /// fnmatch: `*` any run, `?` one char, `[seq]` / `[!seq]` a class; everything else literal.
    static Pattern compile(String pattern) {
        if (pattern.endsWith("/")) pattern = pattern + "*";
        StringBuilder re = new StringBuilder();
        int n = pattern.length();
        for (int i = 0; i < n; i++) {
            char c = pattern.charAt(i);
            switch (c) {
                case '*' -> re.append(".*");
                case '?' -> re.append('.');
                case '[' -> {
                    int j = i + 1;
                    if (j < n && pattern.charAt(j) == '!') j++;
                    if (j < n && pattern.charAt(j) == ']') j++;
                    while (j < n && pattern.charAt(j) != ']') j++;
                    if (j >= n) { re.append("\\["); break; }
                    String body = pattern.substring(i + 1, j).replace("\\", "\\\\").replace("[", "\\[");
                    if (body.startsWith("!")) body = "^" + body.substring(1);
                    else if (body.startsWith("^")) body = "\\" + body;
                    re.append('[').append(body).append(']');
                    i = j;
                }
                default -> re.append(Pattern.quote(String.valueOf(c)));
            }
        }
        return Pattern.compile(re.toString(), Pattern.DOTALL);
    }
}
