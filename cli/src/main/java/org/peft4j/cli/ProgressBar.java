package org.peft4j.cli;

import java.io.PrintStream;

/// A progress bar on stderr: redrawn in place on a terminal, else one line every 10% (and at the end).
final class ProgressBar {
    private final PrintStream err = System.err;
    private final boolean tty = System.console() != null;
    private final String label;
    private long lastDecile = -1;
    private long lastDraw;

    ProgressBar(String label) { this.label = label; }

    void update(long done, long total, String info, double etaSeconds) {
        if (total <= 0) return;
        long decile = done * 10 / total;
        String line = String.format("%s %s %d/%d %s | ETA %s", label, bar(done, total), done, total, info, hms(etaSeconds));
        if (tty) {
            long now = System.nanoTime();
            if (now - lastDraw < 100_000_000L && done < total) return;
            lastDraw = now;
            err.print("\r" + line + "\u001b[K");
            if (done >= total) err.println();
        } else if (decile != lastDecile || done >= total) {
            lastDecile = decile;
            err.println(line);
        }
        err.flush();
    }

    /// Prints a line without breaking the bar.
    void println(String s) {
        if (tty) err.print("\r\u001b[K");
        err.println(s);
    }

    static String bar(long done, long total) {
        int w = 24, f = (int) (w * done / total);
        return "[" + "#".repeat(f) + " ".repeat(w - f) + "]";
    }

    static String hms(double s) {
        if (!Double.isFinite(s)) return "--:--";
        long t = Math.round(s);
        return t >= 3600 ? String.format("%d:%02d:%02d", t / 3600, (t / 60) % 60, t % 60) : String.format("%02d:%02d", t / 60, t % 60);
    }
}
