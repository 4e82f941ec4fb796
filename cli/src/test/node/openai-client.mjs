// Run by ServeTest: the official OpenAI client against a peft4j server on loopback.
// Usage: node openai-client.mjs BASE_URL API_KEY BASE_MODEL ADAPTER LOADABLE_PATH
// Prints one JSON object with what each call returned; ServeTest checks it against the CLI and the expected errors.
import OpenAI from "openai";

const [baseURL, apiKey, baseModel, adapter, loadablePath] = process.argv.slice(2);
const client = new OpenAI({ baseURL, apiKey, maxRetries: 0, timeout: 60_000 });
const out = {};
const question = [{ role: "user", content: "Who are you?" }];

async function error(f) {
  try {
    await f();
    return { thrown: false };
  } catch (e) {
    return { thrown: true, name: e.constructor.name, status: e.status, type: e.type ?? e.error?.type, code: e.code ?? null,
             param: e.param ?? null, message: e.message };
  }
}

const models = await client.models.list();
out.models = [];
for await (const m of models) out.models.push({ id: m.id, object: m.object, parent: m.parent ?? null });

const chat = await client.chat.completions.create({ model: adapter, messages: question, max_tokens: 24, temperature: 0 });
out.chat = { content: chat.choices[0].message.content, role: chat.choices[0].message.role,
             finish: chat.choices[0].finish_reason, usage: chat.usage, object: chat.object };

const baseChat = await client.chat.completions.create({ model: baseModel, messages: question, max_tokens: 24, temperature: 0 });
out.baseChat = baseChat.choices[0].message.content;

const stream = await client.chat.completions.create({ model: adapter, messages: question, max_tokens: 24, temperature: 0,
                                                      stream: true, stream_options: { include_usage: true } });
let streamed = "", chunks = 0, streamFinish = null, streamUsage = null, roles = [];
for await (const c of stream) {
  chunks++;
  if (c.usage) streamUsage = c.usage;
  for (const ch of c.choices) {
    if (ch.delta?.role) roles.push(ch.delta.role);
    if (ch.delta?.content) streamed += ch.delta.content;
    if (ch.finish_reason) streamFinish = ch.finish_reason;
  }
}
out.chatStream = { content: streamed, chunks, finish: streamFinish, usage: streamUsage, roles };

const helper = client.chat.completions.stream({ model: adapter, messages: question, max_tokens: 24, temperature: 0 });
const fin = await helper.finalChatCompletion();
out.streamHelper = { content: fin.choices[0].message.content, finish: fin.choices[0].finish_reason };

const comp = await client.completions.create({ model: baseModel, prompt: "Once upon a time", max_tokens: 20, temperature: 0 });
out.completion = { text: comp.choices[0].text, finish: comp.choices[0].finish_reason, usage: comp.usage, object: comp.object };

const cstream = await client.completions.create({ model: baseModel, prompt: "Once upon a time", max_tokens: 20, temperature: 0, stream: true });
let ctext = "", cfinish = null;
for await (const c of cstream) for (const ch of c.choices) { ctext += ch.text; if (ch.finish_reason) cfinish = ch.finish_reason; }
out.completionStream = { text: ctext, finish: cfinish };

const stopped = await client.completions.create({ model: baseModel, prompt: "Once upon a time", max_tokens: 20, temperature: 0, stop: ["Lily"] });
out.completionStop = { text: stopped.choices[0].text, finish: stopped.choices[0].finish_reason };

// run-time adapter loading (vLLM's endpoints, through the client's generic post)
out.load = await client.post("/load_lora_adapter", { body: { lora_name: "loaded", lora_path: loadablePath } });
const loadedChat = await client.chat.completions.create({ model: "loaded", messages: question, max_tokens: 24, temperature: 0 });
out.loadedChat = loadedChat.choices[0].message.content;
out.modelsAfterLoad = [];
for await (const m of await client.models.list()) out.modelsAfterLoad.push(m.id);
out.unload = await client.post("/unload_lora_adapter", { body: { lora_name: "loaded" } });
out.afterUnload = await error(() => client.chat.completions.create({ model: "loaded", messages: question, max_tokens: 4 }));
out.loadOutside = await error(() => client.post("/load_lora_adapter", { body: { lora_name: "evil", lora_path: "../" } }));

// errors
out.unknownModel = await error(() => client.chat.completions.create({ model: "no-such-model", messages: question }));
out.badTemperature = await error(() => client.chat.completions.create({ model: baseModel, messages: question, temperature: -1 }));
out.badMessages = await error(() => client.chat.completions.create({ model: baseModel, messages: [] }));
out.penalty = await error(() => client.completions.create({ model: baseModel, prompt: "a", presence_penalty: 1.5 }));
const wrongKey = new OpenAI({ baseURL, apiKey: "sk-wrong", maxRetries: 0 });
out.wrongKey = await error(() => wrongKey.models.list());

console.log(JSON.stringify(out));
