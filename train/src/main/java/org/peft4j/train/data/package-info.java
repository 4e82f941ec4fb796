/// The data pipeline of `peft4j train`, with LLaMA-Factory's semantics (its `src/llamafactory/data`), in the order it runs:
/// [org.peft4j.train.data.DatasetInfo] (dataset_info.json) → [org.peft4j.train.data.DatasetLoader] (read .json/.jsonl/.txt,
/// convert alpaca/sharegpt/openai rows to [org.peft4j.train.data.Conversation]s, concat, max_samples, val_size split) →
/// [org.peft4j.train.data.Template] (named LLaMA-Factory templates or the model's own, per-turn prompt/response ids) →
/// [org.peft4j.train.data.Supervised] (cutoff_len with infer_seqlen, prompt masks, mask_history, packing) or
/// [org.peft4j.train.data.Pretraining] (stage pt blocks) → [org.peft4j.train.data.Batcher] ((B, T) batches, resumable).
///
/// Deliberate differences from LLaMA-Factory: broken rows fail with the file/row/line/field instead of being skipped;
/// shuffles and splits are seeded and deterministic but not numpy's permutations; only the `default` and `qwen` tool
/// formats are implemented; preference (DPO/RM), KTO, multimodal and `neat_packing` are refused with a message; the
/// tokenizer is reached through [org.peft4j.train.data.TextEncoder] and cannot gain tokens (no `resize_vocab`).
package org.peft4j.train.data;
