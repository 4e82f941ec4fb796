// llama.cpp's side of `peft4j bench generate`: the same measurements as GenerateBench (prefill of P prompt ids, time
// to first token, decode of N-1 further tokens, greedy) on a GGUF file, with an explicit thread count, CPU only.
// Usage: node llamacpp_bench.mjs MODEL.gguf THREADS PROMPT_TOKENS NEW_TOKENS ROUNDS VOCAB_SIZE
// Prints one JSON line per round: {"prefill_s", "ttft_s", "decode_s"}.
import {getLlama} from "node-llama-cpp";

const [modelPath, threadsArg, promptArg, newArg, roundsArg, vocabArg] = process.argv.slice(2);
const threads = Number(threadsArg), P = Number(promptArg), N = Number(newArg), rounds = Number(roundsArg), V = Number(vocabArg);
const llama = await getLlama({gpu: false, build: "never", skipDownload: true});
const model = await llama.loadModel({modelPath});
const context = await model.createContext({contextSize: P + N + 8, batchSize: P, threads});
const sequence = context.getSequence();
// the same kind of prompt as GenerateBench: P ids drawn from the vocabulary (a fixed LCG, any ids are valid input)
const prompt = [];
let s = 7;
for (let i = 0; i < P; i++) { s = (s * 1103515245 + 12345) % 2147483648; prompt.push(s % V); }
for (let r = 0; r <= rounds; r++) {   // round 0 warms up
    await sequence.clearHistory();
    const start = process.hrtime.bigint();
    let first = 0n, last = 0n, count = 0;
    for await (const token of sequence.evaluate(prompt, {temperature: 0})) {
        const now = process.hrtime.bigint();
        if (count === 0) first = now;
        last = now;
        if (++count >= N) break;
    }
    if (r > 0) console.log(JSON.stringify({prefill_s: Number(first - start) / 1e9, ttft_s: Number(first - start) / 1e9,
        decode_s: Number(last - first) / 1e9, tokens: count}));
}
await context.dispose();
await model.dispose();
