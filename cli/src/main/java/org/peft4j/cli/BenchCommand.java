package org.peft4j.cli;

import org.peft4j.bench.GemmBench;
import org.peft4j.bench.QloraBench;
import org.peft4j.bench.TrainBench;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

import java.nio.file.Path;
import java.util.concurrent.Callable;

/// `peft4j bench`: speed and memory benchmarks on random-weight models built from real configs. Numbers are measured
/// side by side in one run (peak FLOP/s of this machine included), never asserted by tests.
@Command(name = "bench", mixinStandardHelpOptions = true, description = "Benchmarks: generation (prefill, decode, time to first token), time to first token from the shell, training step speed, GEMM backends, QLoRA vs LoRA, serving many adapters.",
        subcommands = {BenchCommand.Generate.class, BenchCommand.Train.class, BenchCommand.Gemm.class, BenchCommand.Qlora.class, BenchCommand.Serve.class, BenchCommand.Allreduce.class, BenchCommand.Ttft.class})
final class BenchCommand implements Runnable {
    @Override public void run() { new picocli.CommandLine(this).usage(System.err); }

    @Command(name = "generate", mixinStandardHelpOptions = true,
            description = "Single-stream generation: prefill and decode tokens/s, time to first token, decode GB/s against the measured read bandwidth, peak RSS; java and openblas paths, F32 and BF16 weights, and F32 weights over a float16 KV cache; alternating rounds.")
    static final class Generate implements Callable<Integer> {
        @Option(names = "--model-config", defaultValue = "smollm2-135m", description = "Preset for random weights (default: ${DEFAULT-VALUE}).") String preset;
        @Option(names = "--model", paramLabel = "DIR", description = "A Hugging Face model folder instead of a preset.") java.nio.file.Path model;
        @Option(names = "--prompt-tokens", defaultValue = "512", description = "Prompt length (default: ${DEFAULT-VALUE}).") int promptTokens;
        @Option(names = "--new-tokens", defaultValue = "128", description = "Generated tokens (default: ${DEFAULT-VALUE}).") int newTokens;
        @Option(names = "--threads", defaultValue = "2", description = "Threads (default: ${DEFAULT-VALUE}).") int threads;
        @Option(names = "--rounds", defaultValue = "3", description = "Alternating rounds; numbers are medians (default: ${DEFAULT-VALUE}).") int rounds;
        @Option(names = "--gguf", split = ",", paramLabel = "QUANT", description = "Instead: GGUF files of the preset's shape in these types (q8_0, q4_0, q4_k, f16, ...), peft4j and llama.cpp side by side on each file.") java.util.List<String> gguf;

        @Override public Integer call() {
            if (gguf != null) {
                if (model != null) throw new org.peft4j.core.Peft4jException.ConfigException("--gguf builds its files from --model-config; drop --model");
                org.peft4j.bench.GgufGenerateBench.run(preset, gguf, promptTokens, newTokens, threads, rounds);
                return 0;
            }
            org.peft4j.bench.GenerateBench.run(preset, model == null ? null : ModelResolver.resolve(model.toString()), promptTokens, newTokens, threads, rounds);
            return 0;
        }
    }

    @Command(name = "ttft", mixinStandardHelpOptions = true,
            description = "Time to first token from the shell: wall time of `peft4j generate --prompt \"Once upon a time\" --max-new-tokens 1` as new processes (median, best) and its phases, on the bundled model and optionally a SmolLM2-135M folder.")
    static final class Ttft implements Callable<Integer> {
        @Option(names = "--runs", defaultValue = "5", description = "Timed runs per model, after one untimed (default: ${DEFAULT-VALUE}).") int runs;
        @Option(names = "--smollm2", paramLabel = "DIR", description = "Also a model folder of SmolLM2-135M shapes (init-random --config smollm2-135m, plus a real tokenizer.json).") java.nio.file.Path smollm2;

        @Override public Integer call() {
            java.nio.file.Path home = java.nio.file.Path.of(System.getProperty("peft4j.home", "."));
            System.out.print(org.peft4j.bench.TtftBench.report(org.peft4j.bench.TtftBench.run(home, smollm2, runs), runs));
            return 0;
        }
    }

    @Command(name = "train", mixinStandardHelpOptions = true,
            description = "Tokens/s, MFU against the FP32 peak measured in the same run, step split and peak RSS of training steps.")
    static final class Train implements Callable<Integer> {
        @Option(names = "--model-config", defaultValue = "smollm2-135m", description = "Preset: smollm2-135m, qwen2.5-0.5b, llama3.2-1b, llama2-7b (default: ${DEFAULT-VALUE}).") String model;
        @Option(names = "--seq", defaultValue = "512", description = "Sequence length (default: ${DEFAULT-VALUE}).") int seq;
        @Option(names = "--batch", defaultValue = "1", description = "Batch (default: ${DEFAULT-VALUE}).") int batch;
        @Option(names = "--threads", defaultValue = "2", description = "Threads (default: ${DEFAULT-VALUE}).") int threads;
        @Option(names = "--method", defaultValue = "lora", description = "lora (r16, all linear layers) or full (default: ${DEFAULT-VALUE}).") String method;
        @Option(names = "--warmup", defaultValue = "2", description = "Untimed steps (default: ${DEFAULT-VALUE}).") int warmup;
        @Option(names = "--steps", defaultValue = "5", description = "Timed steps (default: ${DEFAULT-VALUE}).") int steps;
        @Option(names = "--gemm", defaultValue = "auto", description = "auto, java, openblas or scalar (default: ${DEFAULT-VALUE}).") String gemm;
        @Option(names = "--shift-attn", description = "Also run the steps with LongLoRA's S²-Attn (shift_attn) and report both and the attention-time ratio S²/full.") boolean shiftAttn;
        @Option(names = "--attention-only", description = "With --shift-attn: time one layer's attention (forward + backward) only, full against S², at each of --seqs.") boolean attentionOnly;
        @Option(names = "--seqs", defaultValue = "512,1024,2048", description = "--attention-only: sequence lengths, multiples of 8 (default: ${DEFAULT-VALUE}).") String seqs;
        @Option(names = "--stage", defaultValue = "sft", description = "sft, or dpo: a DPO step (LoRA, pref_loss sigmoid, --batch pairs) against an SFT step on the same tokens (default: ${DEFAULT-VALUE}).") String stage;

        @Override public Integer call() {
            if (shiftAttn && !stage.equals("sft")) throw new org.peft4j.core.Peft4jException.ConfigException("--shift-attn benchmarks SFT steps (shift_attn trains sft and pt); drop --stage " + stage);
            if (stage.equals("dpo")) {
                if (!method.equals("lora")) throw new org.peft4j.core.Peft4jException.ConfigException("bench train --stage dpo runs LoRA (the reference is the base with the adapter off); drop --method " + method);
                System.out.println(org.peft4j.bench.DpoBench.run(model, seq, batch, threads, warmup, steps, gemm).line());
                return 0;
            }
            if (!stage.equals("sft")) throw new org.peft4j.core.Peft4jException.ConfigException("--stage must be sft or dpo, got " + stage);
            if (attentionOnly && !shiftAttn) throw new org.peft4j.core.Peft4jException.ConfigException("--attention-only compares full attention with S²-Attn: add --shift-attn");
            if (shiftAttn && attentionOnly) {
                int[] ts = java.util.Arrays.stream(seqs.split(",")).map(String::trim).mapToInt(Integer::parseInt).toArray();
                System.out.println(org.peft4j.bench.ShiftAttnBench.run(model, ts, batch, threads, warmup, steps, gemm).lines());
                return 0;
            }
            if (shiftAttn) {
                TrainBench.Result full = TrainBench.run(model, method, seq, batch, threads, warmup, steps, gemm);
                TrainBench.Result s2 = TrainBench.run(model, method, seq, batch, threads, warmup, steps, gemm, true);
                System.out.println("full " + full.line());
                System.out.println("S2   " + s2.line());
                System.out.printf("S2/full: attention time %.2f, step time %.2f%n", s2.attentionMs() / full.attentionMs(), s2.medianStepMs() / full.medianStepMs());
                return 0;
            }
            System.out.println(TrainBench.run(model, method, seq, batch, threads, warmup, steps, gemm).line());
            return 0;
        }
    }

    @Command(name = "allreduce", mixinStandardHelpOptions = true,
            description = "The data-parallel gradient sum (TcpCollective) between N processes on loopback: median time, algorithm and bus bandwidth, against a plain socket copy of the same bytes; projections for 10 and 25 GbE.")
    static final class Allreduce implements Callable<Integer> {
        @Option(names = "--ranks", defaultValue = "2", description = "Processes (default: ${DEFAULT-VALUE}).") int ranks;
        @Option(names = "--floats", defaultValue = "" + org.peft4j.bench.AllreduceBench.QWEN05_LORA_R16_FLOATS,
                description = "Floats per allreduce (default: ${DEFAULT-VALUE}, the LoRA r16 all-linear gradients of Qwen2.5-0.5B).") int floats;
        @Option(names = "--rounds", defaultValue = "7", description = "Timed rounds; the median is reported (default: ${DEFAULT-VALUE}).") int rounds;
        @Option(names = {"--model", "--model-config"}, description = "A preset (smollm2-135m, qwen2.5-0.5b, llama3.2-1b, llama2-7b): allreduce its LoRA r16 all-linear gradients (instead of --floats), then time its training step for the allreduce's share of a step.") String model;
        @Option(names = "--step-seq", defaultValue = "64", description = "With --model: the sequence length of the timed step, batch 1 (default: ${DEFAULT-VALUE}).") int stepSeq;
        @Option(names = "--threads", defaultValue = "2", description = "With --model: threads of the timed step (default: ${DEFAULT-VALUE}).") int threads;

        @Override public Integer call() throws Exception {
            if (model != null) org.peft4j.bench.AllreduceBench.runForModel(ranks, model, stepSeq, threads, rounds);
            else org.peft4j.bench.AllreduceBench.run(ranks, floats, rounds);
            return 0;
        }
    }

    @Command(name = "gemm", mixinStandardHelpOptions = true, description = "GFLOP/s of the Java Vector API and OpenBLAS GEMMs on LLM layer shapes, and of attention's and LoRA's block products on one thread (PanelGemm too), vs the measured peak.")
    static final class Gemm implements Callable<Integer> {
        @Option(names = "--seconds", defaultValue = "0.5", description = "Seconds per cell (default: ${DEFAULT-VALUE}).") String seconds;
        @Option(names = "--threads", defaultValue = "1,2", description = "Thread counts (default: ${DEFAULT-VALUE}).") String threads;

        @Override public Integer call() {
            GemmBench.main(new String[]{seconds, threads, "noscalar"});
            return 0;
        }
    }

    @Command(name = "qlora", mixinStandardHelpOptions = true,
            description = "QLoRA vs LoRA step time side by side (compare; a preset that does not fit the heap is skipped with the size to ask for), or a Llama-2-7B-shaped QLoRA run with peak RSS against the estimate (7b: LoRA r16 on all linears, gradient checkpointing, paged 8-bit AdamW, the 4-bit codes off the heap; --model DIR runs it from a 4-bit folder). ./peft4j plans the heap and direct memory of both from the estimate.")
    static final class Qlora implements Callable<Integer> {
        @Option(names = "--mode", defaultValue = "compare", description = "compare or 7b (default: ${DEFAULT-VALUE}).") String mode;
        @Option(names = "--seq", defaultValue = "512", description = "Sequence length (default: ${DEFAULT-VALUE}).") int seq;
        @Option(names = "--steps", defaultValue = "3", description = "Steps (default: ${DEFAULT-VALUE}).") int steps;
        @Option(names = "--model-config", defaultValue = "smollm2-135m,qwen2.5-0.5b", description = "Presets for compare (default: ${DEFAULT-VALUE}).") String presets;
        @Option(names = "--model", paramLabel = "DIR", description = "7b mode: a 4-bit folder (from quantize) loaded in place instead of the random 7B model.") Path model;

        @Override public Integer call() throws Exception {
            if (model != null && !mode.equals("7b")) throw new org.peft4j.core.Peft4jException.ConfigException("--model is for --mode 7b; compare runs random presets (--model-config)");
            QloraBench.main(new String[]{mode, String.valueOf(seq), String.valueOf(steps), presets, model == null ? "" : model.toString()});
            return 0;
        }
    }

    @Command(name = "serve", mixinStandardHelpOptions = true,
            description = "The serving engine on a random-weight model with random LoRA adapters: tokens/s and p50/p99 time to first token and inter-token latency at 1, 8 and 32 streams, and one batch on one adapter vs on distinct adapters.")
    static final class Serve implements Callable<Integer> {
        @Option(names = "--model-config", defaultValue = "smollm2-135m", description = "Preset (default: ${DEFAULT-VALUE}).") String model;
        @Option(names = "--adapters", defaultValue = "64", description = "Random adapters, and rows of the one-vs-distinct batch (default: ${DEFAULT-VALUE}).") int adapters;
        @Option(names = "--rank", defaultValue = "16", description = "Adapter rank (default: ${DEFAULT-VALUE}).") int rank;
        @Option(names = "--lora-target", defaultValue = "q_proj,v_proj", description = "Adapted modules, or 'all' (default: ${DEFAULT-VALUE}, PEFT's default for Llama).") String target;
        @Option(names = "--streams", defaultValue = "1,8,32", description = "Concurrent streams (default: ${DEFAULT-VALUE}).") String streams;
        @Option(names = "--prompt", defaultValue = "64", description = "Prompt tokens (default: ${DEFAULT-VALUE}).") int prompt;
        @Option(names = "--completion", defaultValue = "64", description = "Generated tokens per request (default: ${DEFAULT-VALUE}).") int completion;
        @Option(names = "--seconds", defaultValue = "15", description = "Seconds per scenario (default: ${DEFAULT-VALUE}).") double seconds;
        @Option(names = "--threads", defaultValue = "2", description = "Threads (default: ${DEFAULT-VALUE}).") int threads;
        @Option(names = "--gemm", defaultValue = "auto", description = "auto, java, openblas or scalar (default: ${DEFAULT-VALUE}, as serve).") String gemm;

        @Override public Integer call() throws Exception {
            java.util.List<String> targets = org.peft4j.model.adapter.lora.LoraConfig.expandTargets(java.util.List.of(target.split(",")));
            int[] n = java.util.Arrays.stream(streams.split(",")).mapToInt(s -> Integer.parseInt(s.strip())).toArray();
            org.peft4j.bench.ServeBench.run(model, adapters, rank, targets, n, prompt, completion, seconds, threads, gemm);
            return 0;
        }
    }
}
