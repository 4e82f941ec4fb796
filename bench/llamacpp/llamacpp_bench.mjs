// llama.cpp's side of `peft4j bench generate`: the same measurements as GenerateBench (prefill of P prompt ids, time
// to first token, decode of N-1 further tokens, greedy) on a GGUF file, with an explicit thread count, CPU only.
// Usage: node llamacpp_bench.mjs MODEL.gguf THREADS PROMPT_TOKENS NEW_TOKENS ROUNDS VOCAB_SIZE [stdin]
// Prints one JSON line per round: {"prefill_s", "ttft_s", "decode_s"}. With "stdin" as the last argument it prints
// {"ready":true} after the warm-up round, then runs one round for each line read from standard input (ROUNDS is
// ignored) until standard input closes: the caller interleaves these rounds with its own, so that both engines are
// measured in the same minutes of a shared machine.
import {getLlama} from "node-llama-cpp";
import {createInterface} from "node:readline";

const [modelPath, threadsArg, promptArg, newArg, roundsArg, vocabArg, mode] = process.argv.slice(2);
const threads = Number(threadsArg), P = Number(promptArg), N = Number(newArg), rounds = Number(roundsArg), V = Number(vocabArg);
const llama = await getLlama({gpu: false, build: "never", skipDownload: true});
const model = await llama.loadModel({modelPath});
const context = await model.createContext({contextSize: P + N + 8, batchSize: P, threads});
const sequence = context.getSequence();
// the same kind of prompt as GenerateBench: P ids drawn from the vocabulary (a fixed LCG, any ids are valid input)
const prompt = [];
let s = 7;
for (let i = 0; i < P; i++) { s = (s * 1103515245 + 12345) % 2147483648; prompt.push(s % V); }

async function round(print) {
    await sequence.clearHistory();
    const start = process.hrtime.bigint();
    let first = 0n, last = 0n, count = 0;
    for await (const token of sequence.evaluate(prompt, {temperature: 0})) {
        const now = process.hrtime.bigint();
        if (count === 0) first = now;
        last = now;
        if (++count >= N) break;
    }
    if (print) console.log(JSON.stringify({prefill_s: Number(first - start) / 1e9, ttft_s: Number(first - start) / 1e9,
        decode_s: Number(last - first) / 1e9, tokens: count}));
}

await round(false);   // warms up
if (mode === "stdin") {
    console.log(JSON.stringify({ready: true}));
    for await (const line of createInterface({input: process.stdin})) await round(true);
} else {
    for (let r = 0; r < rounds; r++) await round(true);
}
await context.dispose();
await model.dispose();
