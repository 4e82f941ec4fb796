package org.peft4j.template;

import java.time.LocalDateTime;
import java.time.format.TextStyle;
import java.util.Locale;

/// Python's `datetime.strftime` for the directives chat templates use (`strftime_now("%d %b %Y")` in Llama 3.1+),
/// in the C locale. Reference: the Python `datetime` docs, "strftime() and strptime() Format Codes".
final class PyStrftime {
    private PyStrftime() {}

    static String format(String format, LocalDateTime t) {
        StringBuilder out = new StringBuilder();
        for (int i = 0; i < format.length(); i++) {
            char c = format.charAt(i);
            if (c != '%' || i + 1 == format.length()) { out.append(c); continue; }
            char d = format.charAt(++i);
            out.append(switch (d) {
                case 'a' -> t.getDayOfWeek().getDisplayName(TextStyle.SHORT, Locale.US);
                case 'A' -> t.getDayOfWeek().getDisplayName(TextStyle.FULL, Locale.US);
                case 'b', 'h' -> t.getMonth().getDisplayName(TextStyle.SHORT, Locale.US);
                case 'B' -> t.getMonth().getDisplayName(TextStyle.FULL, Locale.US);
                case 'd' -> two(t.getDayOfMonth());
                case 'e' -> String.format("%2d", t.getDayOfMonth());
                case 'm' -> two(t.getMonthValue());
                case 'y' -> two(t.getYear() % 100);
                case 'Y' -> Integer.toString(t.getYear());
                case 'H' -> two(t.getHour());
                case 'I' -> two((t.getHour() + 11) % 12 + 1);
                case 'p' -> t.getHour() < 12 ? "AM" : "PM";
                case 'M' -> two(t.getMinute());
                case 'S' -> two(t.getSecond());
                case 'j' -> String.format("%03d", t.getDayOfYear());
                case 'F' -> String.format("%d-%s-%s", t.getYear(), two(t.getMonthValue()), two(t.getDayOfMonth()));
                case '%' -> "%";
                default -> "%" + d;
            });
        }
        return out.toString();
    }

    private static String two(int v) { return String.format("%02d", v); }
}
