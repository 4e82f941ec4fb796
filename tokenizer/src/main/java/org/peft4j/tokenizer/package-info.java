/// Tokenizers for Llama-family models, written from the formats' specifications with no tokenizer library:
/// [org.peft4j.tokenizer.Tokenizer#load] reads a Hugging Face `tokenizer.json` (byte-level or SentencePiece-style
/// BPE, [org.peft4j.tokenizer.HfTokenizer]) or a SentencePiece `tokenizer.model` (score-driven BPE as llama.cpp runs
/// it, [org.peft4j.tokenizer.SpmTokenizer] over an [org.peft4j.tokenizer.SpmVocab], which GGUF vocabularies reuse).
/// [org.peft4j.tokenizer.StreamDecoder] turns generated ids into text as they come.
///
/// Oracles: the Rust HF tokenizers (tests, through DJL) and llama.cpp's tokenizer test vectors.
package org.peft4j.tokenizer;
