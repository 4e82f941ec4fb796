// llama.cpp (node-llama-cpp's prebuilt CPU binary) as an oracle: greedy tokens of a GGUF model, optionally with a GGUF
// LoRA adapter. F32 KV cache and flash attention off, so that its logits agree with a float32 reference to ~1e-5
// (docs/oracles.md). Prints one JSON line: {"prompt": [ids], "tokens": [ids], "text": "..."}.
// usage: node generate.mjs MODEL.gguf PROMPT MAX_NEW [LORA.gguf]
import {getLlama} from "node-llama-cpp";

const [modelPath, prompt, maxNew, loraPath] = process.argv.slice(2);
const llama = await getLlama({gpu: false, build: "never", skipDownload: true, logLevel: "error"});
const model = await llama.loadModel({modelPath});
const context = await model.createContext({
    contextSize: 256, threads: 1, flashAttention: false,
    experimentalKvCacheKeyType: "F32", experimentalKvCacheValueType: "F32",
    ...(loraPath ? {lora: {adapters: [{filePath: loraPath, scale: 1}]}} : {}),
});
const sequence = context.getSequence();
let ids = model.tokenize(prompt);
if (model.tokens.shouldPrependBosToken && model.tokens.bos != null) ids = [model.tokens.bos, ...ids];
const out = [];
for await (const t of sequence.evaluate(ids, {temperature: 0})) {
    if (model.isEogToken(t)) break;
    out.push(t);
    if (out.length >= Number(maxNew)) break;
}
// the continuation's text as it reads after the prompt (detokenizing it alone would drop a leading "▁" space)
const text = model.detokenize([...ids, ...out]).slice(model.detokenize(ids).length);
console.log(JSON.stringify({prompt: ids, tokens: out, text}));
await context.dispose();
await model.dispose();
await llama.dispose();
