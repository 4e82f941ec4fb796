package org.peft4j.train.dist;

/// The collective operations data-parallel training needs between the ranks of one job (PyTorch's
/// `torch.distributed` subset that DDP uses): every rank calls the same operations in the same order with arrays of
/// the same length. Sums are deterministic: element j of the result is `((x₀[j] + x₁[j]) + x₂[j]) + …` in rank order,
/// whatever the timing, so a job gives the same bits on every run and on every rank. A failed or timed-out operation
/// throws [CollectiveException] and leaves the collective unusable; [#close] releases its connections.
///
/// It knows nothing of how the ranks were started: [#single()] is the one-process job, [TcpCollective] connects ranks
/// over TCP from a list of `host:port` (Spark's `BarrierTaskContext.allGather`) or from the environment
/// (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT, as `torchrun` sets them).
public interface Collective extends AutoCloseable {
    int rank();

    int worldSize();

    /// x ← Σ over ranks of x, summed in rank order 0..N-1 (IEEE float adds, so bit-identical to
    /// `x₀ + x₁ + … + x_{N-1}` computed in one process).
    void allReduceSum(float[] x);

    void allReduceSum(double[] x);

    /// Every array of `xs` summed as [#allReduceSum(float[])] does, in one operation (the arrays travel as one
    /// stream, so many small gradient tensors cost one round of messages). Every rank passes arrays of the same
    /// lengths in the same order.
    void allReduceSum(java.util.List<float[]> xs);

    void allReduceSum(long[] x);

    /// x ← rank `root`'s x, on every rank.
    void broadcast(float[] x, int root);

    void broadcast(long[] x, int root);

    void broadcast(byte[] x, int root);

    /// Returns when every rank has called it.
    void barrier();

    /// Releases the connections; never throws.
    @Override void close();

    /// The job of one process: sums and broadcasts leave their arguments as they are.
    static Collective single() { return Single.INSTANCE; }

    /// [#single()]'s implementation.
    enum Single implements Collective {
        INSTANCE;
        @Override public int rank() { return 0; }
        @Override public int worldSize() { return 1; }
        @Override public void allReduceSum(float[] x) {}
        @Override public void allReduceSum(double[] x) {}
        @Override public void allReduceSum(java.util.List<float[]> xs) {}
        @Override public void allReduceSum(long[] x) {}
        @Override public void broadcast(float[] x, int root) { check(root); }
        @Override public void broadcast(long[] x, int root) { check(root); }
        @Override public void broadcast(byte[] x, int root) { check(root); }
        @Override public void barrier() {}
        @Override public void close() {}

        private static void check(int root) {
            if (root != 0) throw new IllegalArgumentException("root " + root + " is not a rank of a one-process job");
        }
    }
}
