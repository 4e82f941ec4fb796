package org.peft4j.train.estimate;

import org.peft4j.core.MachineMemory;
import org.peft4j.core.Peft4jException.ConfigException;

import java.util.List;
import java.util.Locale;

/// The JVM's memory for a training run, planned from its [MemoryEstimate] before anything is loaded: the launcher
/// (`./peft4j`, through `cli.JvmPlan`) starts the run's JVM with [#jvmOptions] and refuses, with the numbers, a run
/// whose [#machineBytes] exceeds the machine's available memory ([#requireFits]).
///
/// - Java heap (`-Xmx`, [#heapBytes]): the estimate's arrays that live on the heap ([#heapData]: everything but the
///   runtime and [MemoryEstimate#offHeap]), or the load-time peak when that is higher ([#loading]: a float checkpoint
///   quantized on load holds both forms), plus a fixed young generation ([#YOUNG_BYTES], `-Xmn`: loading and data
///   preparation allocate short-lived objects; a training step allocates nothing) and [#headroom] for the objects
///   loading leaves behind before a collection and the survivor space `Runtime.maxMemory()` leaves out.
/// - Native (`-XX:MaxDirectMemorySize`, [#directBytes]): the data held off the heap (mapped files, `MemorySegment`
///   arenas, which count against this limit; its default is -Xmx) plus [#DIRECT_SLACK] for the JDK's own buffers.
/// - The runtime (JVM code, metaspace, GC tables, thread stacks, OpenBLAS buffers; [MemoryEstimate#RUNTIME_BYTES]).
///
/// @param estimate the run's estimate
/// @param loading  Java heap bytes alive at the load-time peak, 0 when loading never exceeds training's heap
public record HeapPlan(MemoryEstimate estimate, long loading) {
    /// The young generation, fixed so that the heap is the plan and not the collector's choice.
    public static final long YOUNG_BYTES = 64L << 20;
    /// Direct memory beyond the planned off-heap data: NIO's temporary buffers, the safetensors writer's 4 MiB buffer.
    public static final long DIRECT_SLACK = 64L << 20;

    public HeapPlan {
        if (loading < 0) throw new IllegalArgumentException("loading bytes must be >= 0, got " + loading);
    }

    public static HeapPlan of(MemoryEstimate e) { return new HeapPlan(e, 0); }

    /// The estimate's bytes on the Java heap.
    public long heapData() { return estimate.total() - estimate.runtime() - estimate.offHeap(); }

    /// Heap beyond the data: 1/16 of it, at least 64 MiB.
    public long headroom() { return Math.max(64L << 20, Math.max(heapData(), loading) / 16); }

    /// `-Xmx`, rounded up to 16 MiB.
    public long heapBytes() { return roundUp(Math.max(heapData(), loading) + YOUNG_BYTES + headroom(), 16L << 20); }

    /// `-XX:MaxDirectMemorySize`, rounded up to 16 MiB.
    public long directBytes() { return roundUp(estimate.offHeap() + DIRECT_SLACK, 16L << 20); }

    /// What the run may take of the machine at most: the whole heap, the off-heap data and the runtime.
    public long machineBytes() { return heapBytes() + estimate.offHeap() + estimate.runtime(); }

    /// The launcher's JVM options.
    public List<String> jvmOptions() {
        return List.of("-Xmx" + (heapBytes() >> 20) + "m", "-Xmn" + (YOUNG_BYTES >> 20) + "m", "-XX:MaxDirectMemorySize=" + (directBytes() >> 20) + "m");
    }

    /// Refuses a run that does not fit `m.available()`, with the numbers and `whatToChange` (the run's own knobs,
    /// e.g. "lower cutoff_len (2048) or per_device_train_batch_size (1), ...").
    public void requireFits(MachineMemory m, String whatToChange) {
        if (machineBytes() <= m.available()) return;
        throw new ConfigException(String.format(Locale.ROOT, "this run is planned at %.2f GiB (Java heap %.2f GiB for %.2f GiB of weights, "
                        + "adapters, gradients, optimizer state and activations%s; %.2f GiB off the heap; %.2f GiB JVM runtime), more than the "
                        + "%.2f GiB this machine has available (%s; %.2f GiB total); %s; or free memory. PEFT4J_NO_PLAN=1 skips this check",
                gib(machineBytes()), gib(heapBytes()), gib(heapData()), loading > heapData() ? String.format(Locale.ROOT, ", %.2f GiB while loading", gib(loading)) : "",
                gib(estimate.offHeap()), gib(estimate.runtime()), gib(m.available()), m.source(), gib(m.total()), whatToChange));
    }

    /// The plan as `./peft4j estimate` prints it under the component table.
    public String toTable() {
        StringBuilder sb = new StringBuilder("\n");
        row(sb, "Java heap data", heapData());
        if (loading > heapData()) row(sb, "Java heap data while loading", loading);
        row(sb, "off the Java heap", estimate.offHeap());
        sb.append(String.format(Locale.ROOT, "launcher plan: %s (young %d MiB, headroom %d MiB); needs %.1f MiB available%n",
                String.join(" ", jvmOptions()), YOUNG_BYTES >> 20, headroom() >> 20, machineBytes() / 1048576.0));
        return sb.toString();
    }

    private static void row(StringBuilder sb, String name, long bytes) {
        sb.append(String.format(Locale.ROOT, "%-32s %9.1f MiB%n", name, bytes / (double) (1 << 20)));
    }

    private static long roundUp(long x, long unit) { return (x + unit - 1) / unit * unit; }

    private static double gib(long bytes) { return bytes / (double) (1L << 30); }
}
