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

/// `training_loss.png` (raw and smoothed, as LLaMA-Factory's `plot_loss`) and `training_eval_loss.png`, drawn with XChart;
/// for the preference stages also their reward curves, named as LLaMA-Factory's `plot_loss` names them
/// (`training_` + the key with "/" as "_"): stage dpo `rewards/accuracies` and `rewards/margins` (LLaMA-Factory's DPO
/// workflow plots the first), stage kto `rewards/chosen`, `rewards/rejected` and `kl`; each with its `eval_` twin
/// when evaluation logged it.
public final class LossPlot {
    private LossPlot() {}

    /// Metrics plotted besides the losses, per stage.
    public static List<String> metricKeys(String stage) {
        return switch (stage) {
            case "dpo" -> List.of("rewards/accuracies", "rewards/margins");
            case "kto" -> List.of("rewards/chosen", "rewards/rejected", "kl");
            case "rm" -> List.of("accuracy");   // LLaMA-Factory's rm workflow plots loss, eval_loss and eval_accuracy
            default -> List.of();
        };
    }

    public static void write(Path outputDir, List<Map<String, Object>> history) { write(outputDir, history, List.of()); }

    /// The loss plots and one plot per key of `metrics` found in `history`.
    public static void write(Path outputDir, List<Map<String, Object>> history, List<String> metrics) {
        System.setProperty("java.awt.headless", "true");
        plot(outputDir.resolve("training_loss.png"), history, "loss", "training loss");
        plot(outputDir.resolve("training_eval_loss.png"), history, "eval_loss", "eval loss");
        for (String k : metrics) {
            plot(outputDir.resolve(fileName(k)), history, k, "training " + k);
            plot(outputDir.resolve(fileName("eval_" + k)), history, "eval_" + k, "eval " + k);
        }
    }

    /// LLaMA-Factory's name for the plot of `key`: `training_<key>.png` with "/" as "_".
    public static String fileName(String key) { return "training_" + key.replace('/', '_') + ".png"; }

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
