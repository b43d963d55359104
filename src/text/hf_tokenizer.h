/*
 * hf_tokenizer.h — a Hugging Face tokenizer (tokenizer.json + tokenizer_config.json) as the
 * `tokenizer.ggml.*` metadata of a GGUF file (internal).
 *
 * What it is for: loading the tokenizer of a Hugging Face model directory into the existing
 * vocabulary structures (vocab.h) so that the existing tokenizers run it — and writing the same
 * metadata into converted GGUF files. Two kinds of tokenizer.json are understood, both of
 * model.type "BPE":
 *  - byte-level BPE (a ByteLevel pre-tokenizer: Llama-3, Qwen2/3, GPT-2, SmolLM): written as a
 *    "gpt2" vocabulary; tokenizer.ggml.pre is recognised from the Split regex (Llama-3's and
 *    Qwen2's, or GPT-2's built-in one) the way llama.cpp's converter names it;
 *  - SentencePiece-style BPE with byte fallback ("▁" for spaces, <0xXX> byte tokens: Llama-2,
 *    Mistral, Gemma, Phi-3): written as a "llama" vocabulary with its merges (the SentencePiece
 *    tokenizer then merges by merge rank, as Hugging Face does) and scores derived from them
 *    (what llama.cpp, which ignores the merges of such a vocabulary, merges by).
 * Added tokens become CONTROL (special) or USER_DEFINED tokens with their text as written, token
 * ids with no token are padded "[PAD<id>]" (UNUSED), BOS/EOS come from tokenizer_config.json
 * (else the post-processor's template), the chat template from tokenizer_config.json's
 * chat_template (or a chat_template.jinja file).
 * What it is not: a general `tokenizers` port — WordPiece, Unigram, normalizers other than the
 * SentencePiece-style Prepend/Replace and NFC (not applied: text is taken as given), per-token
 * lstrip/rstrip, and unknown pre-tokenizer regexes are refused or ignored as documented in
 * hf_tokenizer.c.
 */
#ifndef SL_TEXT_HF_TOKENIZER_H
#define SL_TEXT_HF_TOKENIZER_H

#include "format/gguf.h"
#include "format/json.h"
#include "skipllama.h"
#include "text/vocab.h"

/* Append the tokenizer.ggml.* keys for tok (tokenizer.json), cfg (tokenizer_config.json, may be
 * NULL) and chat_template (overrides cfg's, may be NULL) to w. n_vocab > 0: the model's embedding
 * rows — the token list is padded to it, and a tokenizer with more tokens is refused. */
sl_status sl_hf_tokenizer_write(const json_t *tok, const json_t *cfg, const char *chat_template, int32_t n_vocab,
                                gguf_writer *w, sl_error *err);

/* The same from the files of a directory: tokenizer.json (required), tokenizer_config.json and
 * chat_template.jinja (optional). */
sl_status sl_hf_tokenizer_write_dir(const char *dir, int32_t n_vocab, gguf_writer *w, sl_error *err);

/* A vocabulary straight from a directory's tokenizer files (the metadata above, read back through
 * sl_vocab_init_from_gguf): what tests and vocab-only loads use. NULL + err on any problem. */
struct sl_vocab *sl_vocab_init_from_hf_dir(const char *dir, int32_t n_vocab, sl_error *err);

#endif
