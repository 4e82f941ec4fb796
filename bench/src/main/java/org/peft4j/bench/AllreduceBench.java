package org.peft4j.bench;

import org.peft4j.train.dist.TcpCollective;

import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.InetAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;

/// `peft4j bench allreduce`: [TcpCollective.allReduceSum] of `floats` floats between `ranks` processes on loopback
/// (this process is rank 0 and starts the others as child JVMs with the environment rendezvous), against a plain
/// socket copy of the same bytes between two processes. Prints the median time of an allreduce, its algorithm
/// bandwidth (bytes / time) and bus bandwidth (NCCL's convention for allreduce: × 2(N-1)/N, what each rank's link
/// must carry in a ring), the copy's bandwidth, and the projection for other sizes and links.
public final class AllreduceBench {
    private AllreduceBench() {}

    /// LoRA r16 on every linear layer of Qwen2.5-0.5B (24 layers; q, o 896→896; k, v 896→128; gate, up 896→4864; down
    /// 4864→896): r·(in + out) per module, 366 592 floats per layer.
    public static final int QWEN05_LORA_R16_FLOATS = 24 * 16 * (2 * (896 + 896) + 2 * (896 + 128) + 3 * (896 + 4864));

    /// As [#run(int, int, int)] with the LoRA r16 all-linear gradients of the preset `model` (a
    /// [org.peft4j.model.ModelPresets] name), then the training step that allreduce would follow: [TrainBench] on
    /// `threads` threads, batch 1, sequence `stepSeq`, and the allreduce's share of a step (measured here, and over
    /// 10 and 25 GbE).
    public static void runForModel(int ranks, String model, int stepSeq, int threads, int rounds) throws Exception {
        var c = org.peft4j.model.ModelPresets.byName(model);
        long floats = c.numHiddenLayers() * TrainBench.loraFloatsPerLayer(c, 16);
        System.out.printf(Locale.ROOT, "%s, LoRA r16 on all linear layers: %,d trainable floats%n", model, floats);
        double allreduce = run(ranks, Math.toIntExact(floats), rounds);
        TrainBench.Result step = TrainBench.run(model, "lora", stepSeq, 1, threads, 1, 3, "auto");
        double stepS = step.medianStepMs() / 1e3;
        System.out.printf(Locale.ROOT, "  training step (one rank): %s, median %.0f ms%n", step.line().replaceAll(" \\|.*", ""), stepS * 1e3);
        System.out.printf(Locale.ROOT, "  step time overhead of the allreduce: %.1f%% here (%.1f ms on %.0f ms)", 100 * allreduce / stepS, allreduce * 1e3, stepS * 1e3);
        for (double gbit : new double[] {10, 25})
            System.out.printf(Locale.ROOT, "; %.1f%% over %.0f GbE", 100 * 2 * 4 * floats / goodput(gbit) / stepS, gbit);
        System.out.println();
    }

    /// TCP goodput of an Ethernet link of `gbit` Gbit/s in bytes/s (~94% of the line rate).
    static double goodput(double gbit) { return gbit / 8 * 1e9 * 0.94; }

    /// Prints the measurement and returns the median time of one allreduce in seconds.
    public static double run(int ranks, int floats, int rounds) throws Exception {
        if (ranks < 2) throw new org.peft4j.core.Peft4jException.ConfigException("--ranks must be at least 2, got " + ranks);
        long bytes = 4L * floats;
        System.out.printf(Locale.ROOT, "allreduce: %d ranks as processes on loopback, %,d floats (%.1f MB), %d rounds, chunks of %d KiB%n",
                ranks, floats, bytes / 1e6, rounds, TcpCollective.CHUNK_BYTES / 1024);
        int port;
        try (ServerSocket probe = new ServerSocket(0)) { port = probe.getLocalPort(); }
        List<Process> children = new ArrayList<>();
        for (int r = 1; r < ranks; r++) children.add(child("rank", r, ranks, port, floats, rounds));
        double[] times;
        try (TcpCollective c = TcpCollective.fromEnvironment(env(0, ranks, port), Duration.ofSeconds(60))) {
            times = rounds(c, floats, rounds);
        }
        for (Process p : children) waitFor(p);
        Arrays.sort(times);
        double t = times[times.length / 2];
        double alg = bytes / t, bus = alg * 2 * (ranks - 1) / ranks;

        int copyPort;
        try (ServerSocket probe = new ServerSocket(0)) { copyPort = probe.getLocalPort(); }
        Process sink = child("sink", 1, 2, copyPort, floats, rounds);
        double copy = copyBandwidth(copyPort, bytes, rounds);
        waitFor(sink);

        System.out.printf(Locale.ROOT, "  allreduce: median %.1f ms (best %.1f), algorithm bandwidth %.2f GB/s, bus bandwidth %.2f GB/s%n",
                t * 1e3, times[0] * 1e3, alg / 1e9, bus / 1e9);
        System.out.printf(Locale.ROOT, "  plain socket copy of the same bytes, one direction: %.2f GB/s; allreduce bus bandwidth / copy = %.2f%n",
                copy / 1e9, bus / copy);
        // the line algorithm sends 2·S from each middle rank (S up, S down), so on a network of link rate L per
        // direction its time is about 2·S / L; on loopback every rank shares the one machine's memory and cores
        for (double gbit : new double[] {10, 25}) {
            double link = goodput(gbit);
            System.out.printf(Locale.ROOT, "  projection over %.0f GbE (%.2f GB/s goodput): %.0f MB -> %.0f ms; 7B r16 (160 MB) -> %.0f ms per step%n",
                    gbit, link / 1e9, bytes / 1e6, 2 * bytes / link * 1e3, 2 * 160e6 / link * 1e3);
        }
        return t;
    }

    private static double[] rounds(TcpCollective c, int floats, int rounds) {
        float[] x = new float[floats];
        for (int i = 0; i < floats; i++) x[i] = (i % 1000) * 1e-3f;
        for (int w = 0; w < 2; w++) c.allReduceSum(x);   // warm-up: JIT, TCP windows
        double[] t = new double[rounds];
        for (int r = 0; r < rounds; r++) {
            c.barrier();
            long t0 = System.nanoTime();
            c.allReduceSum(x);
            t[r] = (System.nanoTime() - t0) / 1e9;
        }
        return t;
    }

    /// Sends `bytes` to the sink `rounds` times (it answers one byte after each); median bandwidth.
    private static double copyBandwidth(int port, long bytes, int rounds) throws IOException, InterruptedException {
        byte[] buf = new byte[TcpCollective.CHUNK_BYTES];
        double[] bw = new double[rounds + 2];
        Socket s = null;
        long deadline = System.nanoTime() + 30_000_000_000L;
        while (s == null) {
            try {
                s = new Socket(InetAddress.getLoopbackAddress(), port);
            } catch (IOException e) {
                if (System.nanoTime() > deadline) throw e;
                Thread.sleep(50);
            }
        }
        try (Socket conn = s) {
            conn.setTcpNoDelay(true);
            OutputStream out = conn.getOutputStream();
            InputStream in = conn.getInputStream();
            for (int r = 0; r < rounds + 2; r++) {
                long t0 = System.nanoTime();
                for (long sent = 0; sent < bytes; sent += buf.length) out.write(buf, 0, (int) Math.min(buf.length, bytes - sent));
                if (in.read() < 0) throw new IOException("the sink closed early");
                bw[r] = bytes / ((System.nanoTime() - t0) / 1e9);
            }
        }
        double[] timed = Arrays.copyOfRange(bw, 2, bw.length);   // the first two warm up
        Arrays.sort(timed);
        return timed[timed.length / 2];
    }

    private static Map<String, String> env(int rank, int world, int port) {
        Map<String, String> e = new HashMap<>();
        e.put("RANK", String.valueOf(rank));
        e.put("WORLD_SIZE", String.valueOf(world));
        e.put("MASTER_ADDR", "127.0.0.1");
        e.put("MASTER_PORT", String.valueOf(port));
        e.put("PEFT4J_HOST", "127.0.0.1");
        return e;
    }

    private static Process child(String role, int rank, int world, int port, int floats, int rounds) throws IOException {
        Path java = Path.of(System.getProperty("java.home"), "bin", "java");
        ProcessBuilder pb = new ProcessBuilder(java.toString(), "-cp", System.getProperty("java.class.path"), AllreduceBench.class.getName(),
                role, String.valueOf(floats), String.valueOf(rounds));
        pb.environment().putAll(env(rank, world, port));
        pb.inheritIO();
        return pb.start();
    }

    private static void waitFor(Process p) throws InterruptedException {
        if (p.waitFor() != 0) throw new IllegalStateException("a benchmark process exited with " + p.exitValue() + " (see its output above)");
    }

    /// The child processes: `rank FLOATS ROUNDS` (a rank of the allreduce) or `sink FLOATS ROUNDS` (the copy's receiver).
    public static void main(String[] args) throws Exception {
        int floats = Integer.parseInt(args[1]), rounds = Integer.parseInt(args[2]);
        if (args[0].equals("rank")) {
            try (TcpCollective c = TcpCollective.fromEnvironment(System.getenv(), Duration.ofSeconds(60))) {
                rounds(c, floats, rounds);
            }
            return;
        }
        long bytes = 4L * floats;
        try (ServerSocket server = new ServerSocket(Integer.parseInt(System.getenv("MASTER_PORT")), 1, InetAddress.getLoopbackAddress());
             Socket s = server.accept()) {
            InputStream in = s.getInputStream();
            OutputStream out = s.getOutputStream();
            byte[] buf = new byte[TcpCollective.CHUNK_BYTES];
            for (int r = 0; r < rounds + 2; r++) {
                for (long got = 0; got < bytes; ) {
                    int n = in.read(buf, 0, (int) Math.min(buf.length, bytes - got));
                    if (n < 0) throw new IOException("the sender closed early");
                    got += n;
                }
                out.write(1);
                out.flush();
            }
        }
    }
}
