package org.peft4j.template;

import java.util.ArrayList;
import java.util.Collection;
import java.util.List;
import java.util.Locale;

/// Python `str` methods that Hugging Face chat templates call (`content.strip()`, `role.startswith('a')`, ...),
/// with Python's semantics: whitespace is `str.isspace()`, `split()` without a separator splits on runs of it,
/// `title()` capitalises after every non-letter. Reference: CPython `Objects/unicodeobject.c`.
final class PyStrings {
    private PyStrings() {}

    /// `str.isspace()` for one char: Unicode White_Space plus the ASCII separators \x1c-\x1f.
    static boolean isSpace(char c) {
        return (c >= '\t' && c <= '\r') || (c >= 0x1c && c <= 0x20) || c == 0x85 || c == 0xa0 || c == 0x1680
                || (c >= 0x2000 && c <= 0x200a) || c == 0x2028 || c == 0x2029 || c == 0x202f || c == 0x205f
                || c == 0x3000;
    }

    static String strip(String s, String chars, boolean left, boolean right) {
        int a = 0, b = s.length();
        if (left) while (a < b && strippable(s.charAt(a), chars)) a++;
        if (right) while (b > a && strippable(s.charAt(b - 1), chars)) b--;
        return s.substring(a, b);
    }

    private static boolean strippable(char c, String chars) {
        return chars == null ? isSpace(c) : chars.indexOf(c) >= 0;
    }

    static List<String> split(String s, String sep, int maxSplit) {
        List<String> parts = new ArrayList<>();
        if (sep == null) {
            int i = 0, n = s.length();
            while (true) {
                while (i < n && isSpace(s.charAt(i))) i++;
                if (i == n) break;
                if (maxSplit >= 0 && parts.size() == maxSplit) {
                    parts.add(strip(s.substring(i), null, false, true));
                    break;
                }
                int j = i;
                while (j < n && !isSpace(s.charAt(j))) j++;
                parts.add(s.substring(i, j));
                i = j;
            }
            return parts;
        }
        if (sep.isEmpty()) throw new IllegalArgumentException("empty separator");
        int start = 0, at;
        while ((maxSplit < 0 || parts.size() < maxSplit) && (at = s.indexOf(sep, start)) >= 0) {
            parts.add(s.substring(start, at));
            start = at + sep.length();
        }
        parts.add(s.substring(start));
        return parts;
    }

    static String title(String s) {
        StringBuilder out = new StringBuilder(s.length());
        boolean prevCased = false;
        for (int i = 0; i < s.length(); i++) {
            char c = s.charAt(i);
            out.append(prevCased ? Character.toLowerCase(c) : Character.toTitleCase(c));
            prevCased = Character.isLetter(c);
        }
        return out.toString();
    }

    static String capitalize(String s) {
        if (s.isEmpty()) return s;
        return Character.toTitleCase(s.charAt(0)) + s.substring(1).toLowerCase(Locale.ROOT);
    }

    static String replace(String s, String old, String replacement, int count) {
        if (count < 0) return s.replace(old, replacement);
        StringBuilder out = new StringBuilder();
        int start = 0, at, done = 0;
        while (done < count && (at = s.indexOf(old, start)) >= 0) {
            out.append(s, start, at).append(replacement);
            start = at + old.length();
            done++;
            if (old.isEmpty()) { if (start < s.length()) out.append(s.charAt(start)); start++; }
        }
        if (start <= s.length()) out.append(s, Math.min(start, s.length()), s.length());
        return out.toString();
    }

    /// `startswith`/`endswith` accept one prefix or a tuple (a list here) of them.
    static boolean affix(String s, Object affix, boolean start) {
        if (affix instanceof Collection<?> many) {
            for (Object a : many) if (affix(s, a, start)) return true;
            return false;
        }
        String a = String.valueOf(affix);
        return start ? s.startsWith(a) : s.endsWith(a);
    }

    /// Calls the Python method `name` on `s`; returns NOT_A_METHOD when `name` is not one we emulate.
    static Object call(String s, String name, Object[] args) {
        return switch (name) {
            case "strip" -> strip(s, str(args, 0), true, true);
            case "lstrip" -> strip(s, str(args, 0), true, false);
            case "rstrip" -> strip(s, str(args, 0), false, true);
            case "startswith" -> affix(s, args[0], true);
            case "endswith" -> affix(s, args[0], false);
            case "split" -> split(s, str(args, 0), args.length > 1 ? ((Number) args[1]).intValue() : -1);
            case "upper" -> s.toUpperCase(Locale.ROOT);
            case "lower" -> s.toLowerCase(Locale.ROOT);
            case "title" -> title(s);
            case "capitalize" -> capitalize(s);
            case "replace" -> replace(s, String.valueOf(args[0]), String.valueOf(args[1]),
                    args.length > 2 ? ((Number) args[2]).intValue() : -1);
            case "find" -> s.indexOf(String.valueOf(args[0]));
            case "count" -> (long) split(s, String.valueOf(args[0]), -1).size() - 1;
            case "isspace" -> !s.isEmpty() && s.chars().allMatch(c -> isSpace((char) c));
            case "join" -> String.join(s, ((Collection<?>) args[0]).stream().map(String::valueOf).toList());
            default -> NOT_A_METHOD;
        };
    }

    static final Object NOT_A_METHOD = new Object();

    private static String str(Object[] args, int i) {
        return args.length > i && args[i] != null ? String.valueOf(args[i]) : null;
    }
}
