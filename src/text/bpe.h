/*
 * bpe.h — byte-level BPE tokenizing ("gpt2" vocabularies, tokenizer_bpe.c; internal): the
 * pre-tokenizer set-up and the merges.
 */
#ifndef SL_TEXT_BPE_H
#define SL_TEXT_BPE_H

#include "text/vocab.h"

/* Tokenize one raw-text fragment (no special tokens in it) and append the ids. */
sl_status sl_bpe_tokenize(const struct sl_vocab *vocab, const char *text, size_t len, sl_ids *out, sl_error *err);

/* Choose and compile the pre-tokenizer steps for vocab->pre; free them. */
sl_status sl_bpe_init_pre(struct sl_vocab *vocab, sl_error *err);
void sl_bpe_free_pre(struct sl_vocab *vocab);

#endif
