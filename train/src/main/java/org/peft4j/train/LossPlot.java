package org.peft4j.train;

import org.knowm.xchart.BitmapEncoder;
import org.knowm.xchart.XYChart;
import org.knowm.xchart.XYChartBuilder;
import org.knowm.xchart.style.markers.SeriesMarkers;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;

/// `training_loss.png` (raw and smoothed, as LLaMA-Factory's `plot_loss`) and `training_eval_loss.png`, drawn with XChart.
public final class LossPlot {
    private LossPlot() {}

    public static void write(Path outputDir, List<Map<String, Object>> history) {
        System.setProperty("java.awt.headless", "true");
        plot(outputDir.resolve("training_loss.png"), history, "loss", "training loss");
        plot(outputDir.resolve("training_eval_loss.png"), history, "eval_loss", "eval loss");
    }

    private static void plot(Path file, List<Map<String, Object>> history, String key, String title) {
        List<Double> x = new ArrayList<>(), y = new ArrayList<>();
        for (Map<String, Object> e : history)
            if (e.get(key) instanceof Number n) { x.add(((Number) e.get("current_steps")).doubleValue()); y.add(n.doubleValue()); }
        if (x.isEmpty()) return;
        XYChart chart = new XYChartBuilder().width(800).height(500).title(title + " of " + file.getParent().getFileName())
                .xAxisTitle("step").yAxisTitle(key).build();
        chart.addSeries("original", x, y).setMarker(SeriesMarkers.NONE);
        if (y.size() > 2) chart.addSeries("smoothed", x, smooth(y)).setMarker(SeriesMarkers.NONE);
        try {
            BitmapEncoder.saveBitmap(chart, file.toString(), BitmapEncoder.BitmapFormat.PNG);
        } catch (IOException e) {
            throw new UncheckedIOException("cannot write " + file + ": " + e.getMessage(), e);
        }
    }

    /// LLaMA-Factory's `smooth`: an exponential moving average with weight 1.8/(1+e^(−0.05·n)) − 1.
    static List<Double> smooth(List<Double> y) {
        double w = 1.8 / (1 + Math.exp(-0.05 * y.size())) - 1;
        List<Double> out = new ArrayList<>();
        double last = y.get(0);
        for (double v : y) { last = last * w + (1 - w) * v; out.add(last); }
        return out;
    }
}
