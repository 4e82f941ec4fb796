package org.peft4j.cli;

import org.junit.jupiter.api.Test;

import static org.junit.jupiter.api.Assertions.*;

/// `--spark-master`'s rank count: N of local[N] (and of local[N,F], F the task failures allowed), else none
/// (Spark's default parallelism decides).
class SparkTrainTest {
    @Test
    void ranksOfALocalMaster() {
        assertEquals(4, SparkTrain.localThreads("local[4]"));
        assertEquals(2, SparkTrain.localThreads(" local[2,3] "));
        assertNull(SparkTrain.localThreads("local[*]"));
        assertNull(SparkTrain.localThreads("spark://host:7077"));
    }

    @Test
    void sparkInputNeedsASparkMaster() {
        CliTest.Out o = CliTest.run(null, "train", "--spark-input", "rows.parquet", "--model_name_or_path",
                org.peft4j.testkit.Shared.root().resolve("models/tinystories-656k").toString(), "--output_dir", "unused", "--dataset", "identity_en");
        assertNotEquals(0, o.code());
        assertTrue(o.stderr().contains("--spark-input needs --spark-master"), o.stderr());
    }
}
