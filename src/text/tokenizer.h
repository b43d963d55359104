/*
 * tokenizer.h — the tokenizer front (internal; the public API is in skipllama.h): a vocabulary
 * with its pre-tokenizer loaded from a GGUF file, and freed. Model loading (src/model) and the
 * tools call these; tokenizing itself goes through sl_tokenize / sl_detokenize.
 */
#ifndef SL_TEXT_TOKENIZER_H
#define SL_TEXT_TOKENIZER_H

#include "format/gguf.h"
#include "skipllama.h"
#include "text/vocab.h"

/* Build a vocabulary from the metadata of an open GGUF file. Returns NULL with err->code ==
 * SL_OK when the file has no `tokenizer.ggml.model`; NULL with an error when the tokenizer
 * metadata is malformed or of an unsupported kind. The result does not reference the file. */
struct sl_vocab *sl_vocab_init_from_gguf(const gguf_file *f, sl_error *err);
void sl_vocab_free(struct sl_vocab *vocab);

#endif
