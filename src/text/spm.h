/*
 * spm.h — SentencePiece-style tokenizing ("llama" vocabularies, tokenizer_spm.c; internal).
 */
#ifndef SL_TEXT_SPM_H
#define SL_TEXT_SPM_H

#include "text/vocab.h"

/* Tokenize one raw-text fragment (no special tokens in it) and append the ids; add_prefix puts the
 * space the vocabulary wants in front. */
sl_status sl_spm_tokenize(const struct sl_vocab *vocab, const char *text, size_t len, bool add_prefix, sl_ids *out,
                          sl_error *err);

#endif
