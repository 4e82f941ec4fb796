package org.peft4j.template;

import java.util.Set;

/// Rewrites a Jinja2 template so that Jinjava reads it as Jinja2 does. Three differences are fixed here, in the
/// source, because Jinjava's own switches do not match Jinja2:
/// - newlines are normalised to `\n` and one trailing newline is dropped (`keep_trailing_newline=False`);
/// - `trim_blocks` and `lstrip_blocks` are applied exactly as Jinja2's lexer applies them (Jinjava's lstrip also eats
///   spaces after text on the same line, e.g. the one in `Assistant: {% endif %}`);
/// - `not` gets Python's precedence (below comparisons and tests, above `and`/`or`): `not x|length == 1` becomes
///   `not (x|length == 1)`, where Jinjava would compute `(not x) == 1`.
///
/// Reference: Jinja2 3.1 `lexer.py` (`tokeniter`, `lstrip_unless_re`) and `parser.py` (`parse_not`).
final class JinjaSource {
    private JinjaSource() {}

    static String prepare(String source) {
        String src = source.replace("\r\n", "\n").replace('\r', '\n');
        if (src.endsWith("\n")) src = src.substring(0, src.length() - 1);
        StringBuilder out = new StringBuilder(src.length() + 64);
        int i = 0, textStart = 0, n = src.length();
        while (i < n) {
            if (!(src.startsWith("{{", i) || src.startsWith("{%", i) || src.startsWith("{#", i))) {
                out.append(src.charAt(i++));
                continue;
            }
            char kind = src.charAt(i + 1);
            char sign = i + 2 < n ? src.charAt(i + 2) : ' ';
            if (kind != '{' && sign != '-' && sign != '+') lstrip(out, src, textStart, i);
            String close = kind == '{' ? "}}" : kind == '%' ? "%}" : "#}";
            int end = kind == '#' ? indexOrEnd(src, close, i + 2) : tagEnd(src, close, i + 2);
            String open = src.substring(i, i + 2); // a `+` sign only disables lstrip; Jinjava does not know it
            int bodyFrom = i + 2 + (sign == '+' ? 1 : 0);
            String body = src.substring(bodyFrom, end);
            boolean keepNewline = body.endsWith("+");
            if (keepNewline) body = body.substring(0, body.length() - 1);
            out.append(open).append(kind == '#' ? body : fixNot(body)).append(close);
            i = Math.min(n, end + 2);
            if (kind != '{' && !keepNewline && !body.endsWith("-") && i < n && src.charAt(i) == '\n') i++; // trim_blocks
            if (kind == '%' && body.replace("-", "").strip().equals("raw")) { // copy raw text through untouched
                int endRaw = src.indexOf("endraw", i);
                int stop = endRaw < 0 ? n : src.lastIndexOf("{%", endRaw);
                out.append(src, i, stop);
                i = stop;
            }
            textStart = i;
        }
        return out.toString();
    }

    /// lstrip_blocks: drop spaces and tabs before a block or comment tag when only they separate it from the start
    /// of its line (a text run that begins at a line start counts, as in Jinja2).
    private static void lstrip(StringBuilder out, String src, int textStart, int tagAt) {
        int lineStart = src.lastIndexOf('\n', tagAt - 1) + 1;
        if (lineStart < textStart) {
            if (!(textStart == 0 || src.charAt(textStart - 1) == '\n')) return;
            lineStart = textStart;
        }
        for (int k = lineStart; k < tagAt; k++) if (src.charAt(k) != ' ' && src.charAt(k) != '\t') return;
        out.setLength(out.length() - (tagAt - lineStart));
    }

    private static int indexOrEnd(String src, String close, int from) {
        int at = src.indexOf(close, from);
        return at < 0 ? src.length() : at;
    }

    /// The index of `close` ending a tag opened before `from`, skipping string literals.
    private static int tagEnd(String src, String close, int from) {
        for (int k = from; k < src.length(); k++) {
            char c = src.charAt(k);
            if (c == '\'' || c == '"') k = stringEnd(src, k);
            else if (src.startsWith(close, k)) return k;
        }
        return src.length();
    }

    private static int stringEnd(String s, int quoteAt) {
        char q = s.charAt(quoteAt);
        for (int k = quoteAt + 1; k < s.length(); k++) {
            if (s.charAt(k) == '\\') k++;
            else if (s.charAt(k) == q) return k;
        }
        return s.length() - 1;
    }

    private static final Set<String> ENDS_NOT = Set.of("and", "or", "if", "else");
    private static final Set<String> BEFORE_UNARY = Set.of("and", "or", "not", "if", "elif", "else", "in", "set");

    /// Wraps the operand of every unary `not` in parentheses, up to the next `and`/`or`/`if`/`else`, `,`, `=` or
    /// closing bracket at the same depth. `is not` and `not in` are binary and left alone.
    static String fixNot(String expr) {
        StringBuilder out = new StringBuilder(expr.length() + 8);
        String prev = ""; // previous significant token
        int k = 0, n = expr.length();
        while (k < n) {
            char c = expr.charAt(k);
            if (c == '\'' || c == '"') {
                int e = stringEnd(expr, k);
                out.append(expr, k, e + 1);
                prev = "'";
                k = e + 1;
            } else if (Character.isLetter(c) || c == '_') {
                int e = k;
                while (e < n && (Character.isLetterOrDigit(expr.charAt(e)) || expr.charAt(e) == '_')) e++;
                String word = expr.substring(k, e);
                boolean unary = word.equals("not") && !isOperand(prev) && !followedByIn(expr, e);
                if (unary) {
                    int stop = operandEnd(expr, e);
                    String operand = expr.substring(e, stop), trimmed = operand.stripTrailing();
                    out.append("not (").append(fixNot(trimmed).strip()).append(')')
                            .append(operand, trimmed.length(), operand.length());
                    k = stop;
                    prev = ")";
                } else {
                    out.append(word);
                    prev = word;
                    k = e;
                }
            } else {
                out.append(c);
                if (!Character.isWhitespace(c)) prev = String.valueOf(c);
                k++;
            }
        }
        return out.toString();
    }

    private static boolean isOperand(String prev) {
        if (prev.isEmpty()) return false;
        char c = prev.charAt(0);
        if (isWordChar(c)) return !BEFORE_UNARY.contains(prev); // `is` counts as an operand: `is not` stays binary
        return c == ')' || c == ']' || c == '}' || c == '\'';
    }

    private static boolean followedByIn(String expr, int from) {
        int k = from;
        while (k < expr.length() && Character.isWhitespace(expr.charAt(k))) k++;
        return expr.startsWith("in", k) && (k + 2 == expr.length() || !Character.isLetterOrDigit(expr.charAt(k + 2)));
    }

    private static int operandEnd(String expr, int from) {
        int depth = 0;
        for (int k = from; k < expr.length(); k++) {
            char c = expr.charAt(k);
            if (c == '\'' || c == '"') { k = stringEnd(expr, k); continue; }
            if (c == '(' || c == '[' || c == '{') depth++;
            else if (c == ')' || c == ']' || c == '}') { if (depth-- == 0) return k; }
            else if (depth == 0 && c == ',') return k;
            else if (depth == 0 && c == '-' && k + 1 == expr.length()) return k; // a trailing `-` of `-%}`
            else if (depth == 0 && Character.isLetter(c) && (k == 0 || !isWordChar(expr.charAt(k - 1)))) {
                int e = k;
                while (e < expr.length() && isWordChar(expr.charAt(e))) e++;
                if (ENDS_NOT.contains(expr.substring(k, e))) return k;
                k = e - 1;
            }
        }
        return expr.length();
    }

    private static boolean isWordChar(char c) { return Character.isLetterOrDigit(c) || c == '_'; }
}
