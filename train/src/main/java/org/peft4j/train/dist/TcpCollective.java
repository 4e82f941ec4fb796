package org.peft4j.train.dist;

import java.io.EOFException;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.net.SocketTimeoutException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Semaphore;

/// [Collective] over TCP between ranks on a line 0 – 1 – … – N-1, each rank connected to its two neighbours.
///
/// allReduceSum is a pipelined chain, in chunks of [#CHUNK_BYTES]: the partial sum of each chunk flows from rank 0 to
/// rank N-1, every rank adding its own values to what it received (`received + own`, so the sum is the rank-order
/// left fold `((x₀ + x₁) + x₂) + …`, bit-identical to the same sum in one process and independent of timing); rank
/// N-1 holds the result of a chunk as soon as it has added it and sends it back down the line, N-1 → … → 0, while
/// later chunks are still going up. Both directions of every link carry the data once, so a middle rank sends and
/// receives 2·S bytes for S bytes of gradients: the ring allreduce of NCCL/Gloo (reduce-scatter + all-gather) sends
/// 2·S·(N-1)/N, less by a factor (N-1)/N, but sums each chunk starting at a different rank, so its result is
/// deterministic yet not the rank-order sum. peft4j keeps the rank-order sum: an N-rank run then gives exactly the
/// bits of a one-process run that accumulates the same N micro-batches in rank order.
///
/// Failure: a peer that dies closes its sockets, and its neighbours fail at once with [CollectiveException]; they then
/// close theirs, so the failure travels down the line and no rank hangs. A peer that hangs makes its neighbours'
/// reads time out after `timeout` (default 30 minutes, PyTorch's `init_process_group` default). Every operation
/// first passes a header (operation, length) up the line, so ranks that call different operations fail with a message
/// instead of summing unrelated arrays.
public final class TcpCollective implements Collective {
    /// The pipelining unit: 256 KiB (65 536 floats) per message.
    public static final int CHUNK_BYTES = 1 << 18;
    public static final Duration DEFAULT_TIMEOUT = Duration.ofMinutes(30);
    private static final int MAGIC = 0x5034_4A44;   // "P4JD"
    private static final int OP_SUM_F32 = 1, OP_SUM_F64 = 2, OP_SUM_I64 = 3, OP_BCAST = 4;

    private final int rank, world;
    private final Socket left, right;                  // null at the ends of the line
    private final InputStream leftIn, rightIn;
    private final OutputStream leftOut, rightOut;
    private final Duration timeout;
    // buffers: up the line (main thread), down the line (helper thread), headers
    private final byte[] up = new byte[CHUNK_BYTES], down = new byte[CHUNK_BYTES], header = new byte[16], peerHeader = new byte[16];
    private final ByteBuffer upBuf = ByteBuffer.wrap(up).order(ByteOrder.LITTLE_ENDIAN), downBuf = ByteBuffer.wrap(down).order(ByteOrder.LITTLE_ENDIAN);
    private final ByteBuffer headerBuf = ByteBuffer.wrap(header).order(ByteOrder.LITTLE_ENDIAN), peerHeaderBuf = ByteBuffer.wrap(peerHeader).order(ByteOrder.LITTLE_ENDIAN);
    private final long[] barrierWord = new long[1];
    private final Elements.F32 f32 = new Elements.F32(upBuf, downBuf);
    private final Elements.F64 f64 = new Elements.F64(upBuf, downBuf);
    private final Elements.I64 i64 = new Elements.I64(upBuf, downBuf);
    private final Elements.I8 i8 = new Elements.I8();
    private final Elements.F32s f32s = new Elements.F32s(upBuf, downBuf);

    // the helper thread that receives results from the right and passes them left during an allReduce
    private final Thread helper;
    private final Semaphore helperStart = new Semaphore(0), helperDone = new Semaphore(0);
    private volatile Elements helperWork;
    private volatile int helperChunks;
    private volatile int reducedChunks;                // chunks the main thread has finished with in this allReduce
    private volatile Throwable failure;
    private volatile boolean closed;
    private int opCode;                                // the running operation, for messages
    private long opLength;

    private TcpCollective(int rank, int world, Socket left, Socket right, Duration timeout) throws IOException {
        this.rank = rank; this.world = world; this.left = left; this.right = right; this.timeout = timeout;
        leftIn = left == null ? null : left.getInputStream();
        leftOut = left == null ? null : left.getOutputStream();
        rightIn = right == null ? null : right.getInputStream();
        rightOut = right == null ? null : right.getOutputStream();
        helper = Thread.ofPlatform().daemon().name("peft4j-collective-rank" + rank).start(this::helperLoop);
    }

    @Override public int rank() { return rank; }

    @Override public int worldSize() { return world; }

    @Override public void allReduceSum(float[] x) { allReduce(OP_SUM_F32, f32.of(x)); }

    @Override public void allReduceSum(double[] x) { allReduce(OP_SUM_F64, f64.of(x)); }

    @Override public void allReduceSum(List<float[]> xs) { allReduce(OP_SUM_F32, f32s.of(xs)); }

    @Override public void allReduceSum(long[] x) { allReduce(OP_SUM_I64, i64.of(x)); }

    @Override public void broadcast(float[] x, int root) { broadcast(f32.of(x), root); }

    @Override public void broadcast(long[] x, int root) { broadcast(i64.of(x), root); }

    @Override public void broadcast(byte[] x, int root) { broadcast(i8.of(x), root); }

    @Override public void barrier() {
        barrierWord[0] = 0;
        allReduce(OP_SUM_I64, i64.of(barrierWord));
    }

    // ---- allReduce: up the line with partial sums, down the line with results

    private void allReduce(int opCode, Elements x) {
        begin(opCode, x.length());
        if (world == 1) return;
        try {
            exchangeHeaderUp(opCode, x.length());
            int per = CHUNK_BYTES / x.bytes(), chunks = (x.length() + per - 1) / per;
            reducedChunks = 0;
            if (rank < world - 1) {   // results come back from the right: the helper takes them while this thread sends up
                helperWork = x;
                helperChunks = chunks;
                helperStart.release();
            }
            for (int k = 0; k < chunks; k++) {
                int off = k * per, n = Math.min(per, x.length() - off);
                if (rank > 0) {
                    readFully(leftIn, up, n * x.bytes(), rank - 1);
                    x.addFrom(upBuf, off, n);        // x = received partial sum + own
                }
                x.putInto(upBuf, off, n);
                if (rank < world - 1) rightOut.write(up, 0, n * x.bytes());
                else leftOut.write(up, 0, n * x.bytes());   // rank N-1: the result of this chunk goes back down
                reducedChunks = k + 1;
            }
            if (rank < world - 1) {
                helperDone.acquireUninterruptibly();
                if (failure != null) throw failure;
            }
        } catch (Throwable e) {
            throw fail(e);
        }
    }

    private void helperLoop() {
        while (true) {
            helperStart.acquireUninterruptibly();
            if (closed) return;
            Elements x = helperWork;
            try {
                int per = CHUNK_BYTES / x.bytes();
                for (int k = 0; k < helperChunks; k++) {
                    int off = k * per, n = Math.min(per, x.length() - off);
                    readFully(rightIn, down, n * x.bytes(), rank + 1);
                    // the result of chunk k can only exist after this rank sent its partial sum of chunk k up;
                    // the volatile read orders the main thread's writes to x before ours
                    while (reducedChunks <= k) Thread.onSpinWait();
                    x.getFrom(downBuf, off, n);
                    if (rank > 0) leftOut.write(down, 0, n * x.bytes());
                }
            } catch (Throwable e) {
                failure = e;
                closeSockets();   // unblocks the main thread
            }
            helperDone.release();
        }
    }

    // ---- broadcast: away from the root in both directions

    private void broadcast(Elements x, int root) {
        if (root < 0 || root >= world) throw new IllegalArgumentException("root " + root + " is not a rank of this job of " + world);
        begin(OP_BCAST + (root << 8), x.length());
        if (world == 1) return;
        try {
            exchangeHeaderUp(OP_BCAST + (root << 8), x.length());
            int per = CHUNK_BYTES / x.bytes(), chunks = (x.length() + per - 1) / per;
            for (int k = 0; k < chunks; k++) {
                int off = k * per, n = Math.min(per, x.length() - off), bytes = n * x.bytes();
                if (rank == root) {
                    x.putInto(upBuf, off, n);
                    if (rank > 0) leftOut.write(up, 0, bytes);
                    if (rank < world - 1) rightOut.write(up, 0, bytes);
                } else if (rank > root) {
                    readFully(leftIn, up, bytes, rank - 1);
                    x.getFrom(upBuf, off, n);
                    if (rank < world - 1) rightOut.write(up, 0, bytes);
                } else {
                    readFully(rightIn, up, bytes, rank + 1);
                    x.getFrom(upBuf, off, n);
                    if (rank > 0) leftOut.write(up, 0, bytes);
                }
            }
        } catch (Throwable e) {
            throw fail(e);
        }
    }

    /// Passes (operation, length) from rank 0 up to N-1, each rank comparing with its own, so that mismatched calls
    /// fail loudly. Rank N-1 answers rank N-2 once it has checked, and so on down, so that every rank knows every
    /// rank agreed before any data moves (a mismatch thus fails every rank, not only those past the mismatch).
    private void exchangeHeaderUp(int opCode, int length) throws IOException {
        headerBuf.putInt(0, MAGIC).putInt(4, opCode).putLong(8, length);
        if (rank > 0) {
            readFully(leftIn, peerHeader, 16, rank - 1);
            if (peerHeaderBuf.getInt(0) != MAGIC)
                throw new CollectiveException("rank " + rank + ": rank " + (rank - 1) + " sent data where an operation header was expected in " + describe(opCode, opLength)
                        + "; the ranks called different operations (every rank must call the same collective operations in the same order)");
            if (peerHeaderBuf.getInt(4) != opCode || peerHeaderBuf.getLong(8) != length)
                throw new CollectiveException("rank " + rank + " called " + describe(opCode, opLength) + " while rank " + (rank - 1) + " called "
                        + describe(peerHeaderBuf.getInt(4), peerHeaderBuf.getLong(8)) + "; every rank must call the same collective operations in the same order"
                        + " with arrays of the same length");
        }
        if (rank < world - 1) {
            rightOut.write(header, 0, 16);
            readFully(rightIn, peerHeader, 16, rank + 1);   // the go-ahead from the right
        }
        if (rank > 0) leftOut.write(header, 0, 16);
    }

    private static String describe(int opCode, long length) {
        return switch (opCode & 0xff) {
            case OP_SUM_F32 -> "allReduceSum(float[" + length + "])";
            case OP_SUM_F64 -> "allReduceSum(double[" + length + "])";
            case OP_SUM_I64 -> length == 1 ? "allReduceSum(long[1]) or barrier" : "allReduceSum(long[" + length + "])";
            case OP_BCAST -> "broadcast(" + length + " elements, root " + (opCode >> 8) + ")";
            default -> "operation " + opCode;
        };
    }

    private void begin(int opCode, long length) {
        if (closed || failure != null)
            throw new CollectiveException("rank " + rank + ": " + describe(opCode, length) + " on a collective that " + (closed ? "is closed" : "failed before: " + failure.getMessage())
                    + "; a failed job must be restarted (from its last checkpoint)");
        this.opCode = opCode;
        this.opLength = length;
    }

    private void readFully(InputStream in, byte[] b, int n, int peer) throws IOException {
        int done = 0;
        while (done < n) {
            int r;
            try {
                r = in.read(b, done, n - done);
            } catch (SocketTimeoutException e) {
                throw new CollectiveException("rank " + rank + " waited " + timeout.toSeconds() + " s for rank " + peer + " in " + describe(opCode, opLength)
                        + ": that rank hangs, or it called another operation; the job is stopped (restart it from its last checkpoint)", e);
            }
            if (r < 0) throw new EOFException("rank " + peer + " closed its connection");
            done += r;
        }
    }

    private CollectiveException fail(Throwable e) {
        if (failure == null) failure = e;
        else e = failure;   // the helper thread failed first: its error says what happened, ours only that it closed the sockets
        closeSockets();
        if (e instanceof CollectiveException c) return c;
        return new CollectiveException("rank " + rank + " of " + world + ": " + describe(opCode, opLength) + " failed: " + e.getMessage()
                + " (a peer rank died, or its connection broke); the job is stopped, restart it from its last checkpoint", e);
    }

    private void closeSockets() {
        for (Socket s : new Socket[] {left, right})
            if (s != null) try { s.close(); } catch (IOException ignored) {}
    }

    @Override public void close() {
        if (closed) return;
        closed = true;
        closeSockets();
        helperStart.release();
    }

    // ---- rendezvous

    /// A listening socket whose `host:port` the ranks exchange before [#join]ing: open it, publish [#address()]
    /// (Spark: `BarrierTaskContext.allGather`), then join with every rank's address in rank order.
    public static final class Endpoint implements AutoCloseable {
        private final ServerSocket server;
        private final String address;

        private Endpoint(ServerSocket server, String advertisedHost) {
            this.server = server;
            this.address = advertisedHost + ":" + server.getLocalPort();
        }

        /// Listens on an ephemeral port of `bindHost` ("0.0.0.0": every interface) and advertises `advertisedHost`.
        public static Endpoint open(String bindHost, String advertisedHost) { return open(bindHost, 0, advertisedHost); }

        public static Endpoint open(String bindHost, int port, String advertisedHost) {
            try {
                ServerSocket s = new ServerSocket();
                s.setReuseAddress(true);
                s.bind(new InetSocketAddress(InetAddress.getByName(bindHost), port), 64);
                return new Endpoint(s, advertisedHost);
            } catch (IOException e) {
                throw new CollectiveException("cannot listen on " + bindHost + ":" + port + " for the other ranks: " + e.getMessage()
                        + "; choose another host or port", e);
            }
        }

        /// `host:port` for the other ranks.
        public String address() { return address; }

        /// Connects to the neighbours of `rank` in the line of `addresses` (every rank's [#address()], in rank order)
        /// and closes this endpoint. Fails within `timeout` when a neighbour does not answer.
        public TcpCollective join(int rank, List<String> addresses, Duration timeout) {
            int world = addresses.size();
            if (rank < 0 || rank >= world) throw new IllegalArgumentException("rank " + rank + " is not in 0.." + (world - 1));
            long deadline = System.nanoTime() + timeout.toNanos();
            Socket leftS = null, rightS = null;
            try (server) {
                if (rank < world - 1) {   // connect to the right first: its endpoint listens already, so this never waits on us
                    rightS = connect(addresses.get(rank + 1), deadline, rank);
                    ByteBuffer hello = ByteBuffer.allocate(12).putInt(MAGIC).putInt(rank).putInt(world);
                    rightS.getOutputStream().write(hello.array());
                }
                while (rank > 0 && leftS == null) {
                    int left = (int) Math.max(1, (deadline - System.nanoTime()) / 1_000_000);
                    server.setSoTimeout(left);
                    Socket s;
                    try {
                        s = server.accept();
                    } catch (SocketTimeoutException e) {
                        throw new CollectiveException("rank " + rank + ": rank " + (rank - 1) + " did not connect within " + timeout.toSeconds() + " s"
                                + " (is its task running, and can it reach " + address + "?)", e);
                    }
                    s.setSoTimeout(left);
                    byte[] b = new byte[12];
                    int got = s.getInputStream().readNBytes(b, 0, 12);
                    ByteBuffer hello = ByteBuffer.wrap(b);
                    if (got < 12 || hello.getInt(0) != MAGIC || hello.getInt(4) != rank - 1) { s.close(); continue; }   // a stray connection
                    if (hello.getInt(8) != world) {
                        s.close();
                        throw new CollectiveException("rank " + rank + " joined a job of " + world + " ranks, rank " + (rank - 1) + " one of " + hello.getInt(8));
                    }
                    leftS = s;
                }
                for (Socket s : new Socket[] {leftS, rightS})
                    if (s != null) { s.setSoTimeout((int) Math.min(Integer.MAX_VALUE, timeout.toMillis())); s.setTcpNoDelay(true); }
                return new TcpCollective(rank, world, leftS, rightS, timeout);
            } catch (IOException e) {
                for (Socket s : new Socket[] {leftS, rightS}) if (s != null) try { s.close(); } catch (IOException ignored) {}
                throw new CollectiveException("rank " + rank + " could not connect to its neighbours " + addresses + ": " + e.getMessage(), e);
            } catch (RuntimeException e) {
                for (Socket s : new Socket[] {leftS, rightS}) if (s != null) try { s.close(); } catch (IOException ignored) {}
                throw e;
            }
        }

        @Override public void close() {
            try { server.close(); } catch (IOException ignored) {}
        }
    }

    private static Socket connect(String hostPort, long deadline, int rank) throws IOException {
        int colon = hostPort.lastIndexOf(':');
        if (colon <= 0) throw new CollectiveException("rank address '" + hostPort + "' is not host:port");
        String host = hostPort.substring(0, colon);
        int port;
        try {
            port = Integer.parseInt(hostPort.substring(colon + 1));
        } catch (NumberFormatException e) {
            throw new CollectiveException("rank address '" + hostPort + "' has no port number after ':'");
        }
        IOException last = null;
        while (System.nanoTime() < deadline) {
            Socket s = new Socket();
            try {
                s.connect(new InetSocketAddress(host, port), (int) Math.max(1, Math.min(5000, (deadline - System.nanoTime()) / 1_000_000)));
                return s;
            } catch (IOException e) {   // not listening yet (environment rendezvous): retry until the deadline
                last = e;
                s.close();
                try { Thread.sleep(50); } catch (InterruptedException ie) { Thread.currentThread().interrupt(); break; }
            }
        }
        throw new CollectiveException("rank " + rank + " could not connect to " + hostPort + " before the timeout: "
                + (last == null ? "no time left" : last.getMessage()) + " (is that rank running, and is the address reachable?)", last);
    }

    /// Rendezvous from the environment, as `torchrun` and Kubernetes' PyTorchJob set it: RANK, WORLD_SIZE,
    /// MASTER_ADDR, MASTER_PORT. Rank 0 listens on MASTER_ADDR:MASTER_PORT, every other rank opens an endpoint of its
    /// own (advertised as `PEFT4J_HOST` when set, else this machine's address) and sends its address there; rank 0
    /// answers every rank with the list, and all [Endpoint#join] it.
    public static TcpCollective fromEnvironment(Map<String, String> env, Duration timeout) {
        int rank = intVar(env, "RANK"), world = intVar(env, "WORLD_SIZE");
        String master = var(env, "MASTER_ADDR");
        int port = intVar(env, "MASTER_PORT");
        if (world < 1 || rank < 0 || rank >= world) throw new CollectiveException("RANK " + rank + " is not in 0..WORLD_SIZE-1 (WORLD_SIZE " + world + ")");
        long deadline = System.nanoTime() + timeout.toNanos();
        try {
            if (rank == 0) {
                List<String> addresses = new ArrayList<>();
                for (int r = 0; r < world; r++) addresses.add(null);
                addresses.set(0, master + ":" + port);
                List<Socket> peers = new ArrayList<>();
                Endpoint endpoint = Endpoint.open("0.0.0.0", port, master);
                try (ServerSocket server = endpoint.server) {
                    while (peers.size() < world - 1) {
                        server.setSoTimeout((int) Math.max(1, (deadline - System.nanoTime()) / 1_000_000));
                        Socket s;
                        try {
                            s = server.accept();
                        } catch (SocketTimeoutException e) {
                            throw new CollectiveException("rank 0: only " + peers.size() + " of " + (world - 1) + " ranks reached " + master + ":" + port
                                    + " within " + timeout.toSeconds() + " s; check WORLD_SIZE and that every rank is started", e);
                        }
                        var in = new java.io.DataInputStream(s.getInputStream());
                        int r = in.readInt();
                        String a = in.readUTF();
                        if (r <= 0 || r >= world || addresses.get(r) != null) {
                            s.close();
                            throw new CollectiveException("rank 0: a rank announced itself as rank " + r + " (" + a + "), which is out of range or taken; give each process its own RANK");
                        }
                        addresses.set(r, a);
                        peers.add(s);
                    }
                    for (Socket s : peers) {
                        var out = new java.io.DataOutputStream(s.getOutputStream());
                        for (String a : addresses) out.writeUTF(a);
                        out.flush();
                        s.close();
                    }
                }
                // rank 0 has no left neighbour: its join only connects to rank 1
                return Endpoint.open("0.0.0.0", 0, master).join(0, addresses, Duration.ofNanos(Math.max(1, deadline - System.nanoTime())));
            }
            String host = env.getOrDefault("PEFT4J_HOST", InetAddress.getLocalHost().getHostAddress());
            Endpoint own = Endpoint.open("0.0.0.0", host);
            List<String> addresses = new ArrayList<>();
            try (Socket s = connect(master + ":" + port, deadline, rank)) {
                s.setSoTimeout((int) Math.max(1, (deadline - System.nanoTime()) / 1_000_000));
                var out = new java.io.DataOutputStream(s.getOutputStream());
                out.writeInt(rank);
                out.writeUTF(own.address());
                out.flush();
                var in = new java.io.DataInputStream(s.getInputStream());
                for (int r = 0; r < world; r++) addresses.add(in.readUTF());
            } catch (IOException e) {
                own.close();
                throw e;
            }
            return own.join(rank, addresses, Duration.ofNanos(Math.max(1, deadline - System.nanoTime())));
        } catch (IOException e) {
            throw new CollectiveException("rank " + rank + ": rendezvous at MASTER_ADDR:MASTER_PORT " + master + ":" + port + " failed: " + e.getMessage(), e);
        }
    }

    private static String var(Map<String, String> env, String name) {
        String v = env.get(name);
        if (v == null || v.isBlank()) throw new CollectiveException("environment variable " + name + " is not set; the environment rendezvous needs RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT");
        return v.trim();
    }

    private static int intVar(Map<String, String> env, String name) {
        String v = var(env, name);
        try {
            return Integer.parseInt(v);
        } catch (NumberFormatException e) {
            throw new CollectiveException("environment variable " + name + " is '" + v + "', not a whole number");
        }
    }
}
