/*
 * tokenizer.c — the tokenizer front: loading a vocabulary with its pre-tokenizer, cutting special
 * tokens out of text, and the public tokenize / detokenize API (whole and streaming), which
 * dispatch down to the SentencePiece (tokenizer_spm.c) and byte-level BPE (tokenizer_bpe.c)
 * algorithms over the shared vocabulary (vocab.c, vocab_load.c). Behaviour follows llama.cpp's
 * llama-vocab.cpp so ids match token for token.
 * What it is not: a chat-template engine (chat.c) or a sampler.
 */
#include "text/tokenizer.h"

#include "text/bpe.h"
#include "text/spm.h"
#include "util/strbuf.h"
#include "util/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SL_TOKENIZE_MAX_BYTES ((size_t)1 << 30)

/* ---- loading ----------------------------------------------------------------------------------- */

struct sl_vocab *sl_vocab_init_from_gguf(const gguf_file *f, sl_error *err) {
    struct sl_vocab *v = sl_vocab_load_tables(f, err);
    if (v && v->type == SL_VOCAB_BPE && sl_bpe_init_pre(v, err) != SL_OK) {
        sl_vocab_free(v);
        return NULL;
    }
    return v;
}

void sl_vocab_free(struct sl_vocab *v) {
    if (!v) return;
    sl_bpe_free_pre(v);
    sl_vocab_free_tables(v);
}

/* ---- special-token partition ------------------------------------------------------------------- */

/* A piece of the input: raw text [off, off+len) or a special token. */
typedef struct fragment {
    size_t off;    /* start in the input (raw text) */
    size_t len;    /* bytes (raw text) */
    int32_t token; /* special token id, or -1 for raw text */
} fragment;

typedef struct occurrence {
    size_t start;  /* byte offset of the match */
    int32_t rank;  /* special_rank of the token: lower is tried first */
    int32_t token; /* token id */
} occurrence;

static int cmp_occ_priority(const void *a, const void *b) {
    const occurrence *x = a, *y = b;
    if (x->rank != y->rank) return x->rank < y->rank ? -1 : 1;
    return (x->start > y->start) - (x->start < y->start);
}

static int cmp_occ_start(const void *a, const void *b) {
    const occurrence *x = a, *y = b;
    return (x->start > y->start) - (x->start < y->start);
}

/* Cut special tokens out of text, with the result llama.cpp's tokenizer_st_partition gives: for each
 * special token, longest text first, every leftmost non-overlapping occurrence that lies wholly in
 * text not yet claimed by an earlier (longer) token becomes that token. Instead of one scan of the
 * text per token (thousands of tokens x megabytes), all occurrences are found in one pass over a
 * trie, then accepted in the same priority order. */
static sl_status partition(const struct sl_vocab *v, const char *text, size_t len, bool parse_special,
                           fragment **out, size_t *n_out, sl_error *err) {
    occurrence *occ = NULL;
    size_t n_occ = 0, cap_occ = 0;
    const uint32_t allowed = parse_special ? (SL_ATTR_CONTROL | SL_ATTR_USER_DEFINED | SL_ATTR_UNKNOWN)
                                           : SL_ATTR_USER_DEFINED;
    if (v->n_special > 0) {
        for (size_t i = 0; i < len; i++) {
            int32_t node = v->trie_root[(uint8_t)text[i]];
            size_t d = 1;
            while (node >= 0) {
                int32_t tok = v->trie[node].token;
                /* control/unknown tokens are skipped without parse_special; a token that is both
                 * control and user-defined counts as control, as in llama.cpp */
                if (tok >= 0) {
                    uint32_t a = v->tokens[tok].attr;
                    bool ok = parse_special ? (a & allowed) != 0
                                            : (a & SL_ATTR_USER_DEFINED) && !(a & (SL_ATTR_CONTROL | SL_ATTR_UNKNOWN));
                    if (ok) {
                        if (n_occ == cap_occ) {
                            size_t nc = cap_occ ? cap_occ * 2 : 64;
                            occurrence *p = realloc(occ, nc * sizeof *occ);
                            if (!p) {
                                free(occ);
                                return sl_set_error(err, SL_ERR_NOMEM, "out of memory matching special tokens");
                            }
                            occ = p;
                            cap_occ = nc;
                        }
                        occ[n_occ++] = (occurrence){i, v->special_rank[tok], tok};
                    }
                }
                if (i + d >= len) break;
                uint8_t c = (uint8_t)text[i + d];
                int32_t child = v->trie[node].first_child;
                while (child >= 0 && v->trie[child].byte != c) child = v->trie[child].next_sibling;
                node = child;
                d++;
            }
        }
    }
    fragment *fr;
    if (n_occ == 0) {
        fr = malloc(sizeof *fr);
        if (!fr) return sl_set_error(err, SL_ERR_NOMEM, "out of memory");
        *fr = (fragment){0, len, -1};
        *out = fr;
        *n_out = len ? 1 : 0;
        return SL_OK;
    }
    uint8_t *claimed = calloc(len, 1);
    if (!claimed) {
        free(occ);
        return sl_set_error(err, SL_ERR_NOMEM, "out of memory");
    }
    qsort(occ, n_occ, sizeof *occ, cmp_occ_priority);
    size_t n_acc = 0;
    for (size_t k = 0; k < n_occ; k++) {
        size_t s = occ[k].start, l = v->tokens[occ[k].token].len;
        bool free_span = true;
        for (size_t j = s; j < s + l; j++)
            if (claimed[j]) {
                free_span = false;
                break;
            }
        if (!free_span) continue;
        memset(claimed + s, 1, l);
        occ[n_acc++] = occ[k];
    }
    free(claimed);
    qsort(occ, n_acc, sizeof *occ, cmp_occ_start);
    fr = malloc((2 * n_acc + 1) * sizeof *fr);
    if (!fr) {
        free(occ);
        return sl_set_error(err, SL_ERR_NOMEM, "out of memory");
    }
    size_t nf = 0, pos = 0;
    for (size_t k = 0; k < n_acc; k++) {
        if (occ[k].start > pos) fr[nf++] = (fragment){pos, occ[k].start - pos, -1};
        fr[nf++] = (fragment){occ[k].start, v->tokens[occ[k].token].len, occ[k].token};
        pos = occ[k].start + v->tokens[occ[k].token].len;
    }
    if (pos < len) fr[nf++] = (fragment){pos, len - pos, -1};
    free(occ);
    *out = fr;
    *n_out = nf;
    return SL_OK;
}

/* ---- public API -------------------------------------------------------------------------------- */

sl_status sl_tokenize(const sl_vocab *v, const char *text, size_t len, bool add_bos, bool parse_special,
                      int32_t **out_ids, int32_t *out_n, sl_error *err) {
    sl_clear_error(err);
    if (out_ids) *out_ids = NULL;
    if (out_n) *out_n = 0;
    if (!v || !out_ids || !out_n || (!text && len))
        return sl_set_error(err, SL_ERR_INVALID_ARG, "sl_tokenize: NULL argument");
    if (len > SL_TOKENIZE_MAX_BYTES)
        return sl_set_error(err, SL_ERR_RANGE, "text of %zu bytes is longer than the 1 GiB tokenizer limit", len);

    sl_ids ids = {0};
    fragment *fr = NULL;
    size_t nf = 0;
    sl_status st = partition(v, text ? text : "", len, parse_special, &fr, &nf, err);
    if (st != SL_OK) return st;

    if (add_bos && v->add_bos && v->bos >= 0 && !sl_ids_push(&ids, v->bos)) goto nomem;
    bool prev_special = true; /* SPM: the first fragment and any fragment after a special token get the prefix */
    for (size_t i = 0; i < nf; i++) {
        if (fr[i].token >= 0) {
            if (!sl_ids_push(&ids, fr[i].token)) goto nomem;
            prev_special = true;
            continue;
        }
        if (v->type == SL_VOCAB_SPM)
            st = sl_spm_tokenize(v, text + fr[i].off, fr[i].len, v->add_space_prefix && prev_special, &ids, err);
        else
            st = sl_bpe_tokenize(v, text + fr[i].off, fr[i].len, &ids, err);
        if (st != SL_OK) goto fail;
        prev_special = false;
    }
    if (add_bos && v->add_eos && v->eos >= 0 && !sl_ids_push(&ids, v->eos)) goto nomem;
    free(fr);
    if (ids.n > INT32_MAX) {
        free(ids.data);
        return sl_set_error(err, SL_ERR_RANGE, "too many tokens");
    }
    *out_n = (int32_t)ids.n;
    if (ids.n == 0) {
        free(ids.data);
        ids.data = NULL;
    }
    *out_ids = ids.data;
    return SL_OK;

nomem:
    st = sl_set_error(err, SL_ERR_NOMEM, "out of memory while tokenizing %zu bytes", len);
fail:
    free(fr);
    free(ids.data);
    return st;
}

void sl_free_tokens(int32_t *ids) { free(ids); }
void sl_free_text(char *text) { free(text); }

const char *sl_token_to_piece(const sl_vocab *v, int32_t id, bool special, size_t *len) {
    if (!v || id < 0 || id >= v->n_tokens) {
        if (len) *len = 0;
        return NULL;
    }
    const char *p = v->piece_buf + v->piece_off[id];
    size_t n = v->piece_off[id + 1] - v->piece_off[id];
    if (!special && (v->tokens[id].attr & (SL_ATTR_UNKNOWN | SL_ATTR_CONTROL))) n = 0;
    if (len) *len = n;
    return p;
}

/* HF clean_up_tokenization_spaces over the whole text, in place, as llama.cpp's three passes:
 * " ?" " !" " ." " ," lose the space; " ' " loses both spaces; " 's" " 'm" " 're" " 've" lose the
 * space. Returns the new length. */
static size_t clean_spaces(char *t, size_t n) {
    size_t total = n ? 1 : 0;
    for (size_t i = 1; i < n; i++) {
        char x = t[i];
        if (t[i - 1] == ' ' && (x == '?' || x == '!' || x == '.' || x == ',')) total--;
        t[total++] = x;
    }
    n = total;
    total = n ? 1 : 0;
    for (size_t i = 1; i < n; i++) {
        char x = t[i];
        if (x == '\'' && i + 1 < n && t[i - 1] == ' ' && t[i + 1] == ' ') {
            total--;      /* the space before */
            t[++i] = '\0'; /* and the one after is skipped (cleared, as llama.cpp does) */
        }
        t[total++] = x;
    }
    n = total;
    total = n ? 1 : 0;
    for (size_t i = 1; i < n; i++) {
        char x = t[i];
        if (t[i - 1] == ' ' && x == '\'' && i + 1 < n) {
            char x1 = t[i + 1];
            if (x1 == 's' || x1 == 'm') {
                total--;
            } else if (x1 != 't' && x1 != 'd' && i + 2 < n) {
                char x2 = t[i + 2];
                if ((x1 == 'r' && x2 == 'e') || (x1 == 'v' && x2 == 'e')) total--;
            }
        }
        t[total++] = x;
    }
    return total;
}

sl_status sl_detokenize(const sl_vocab *v, const int32_t *ids, int32_t n_ids, bool remove_special,
                        bool unparse_special, char **out_text, size_t *out_len, sl_error *err) {
    sl_clear_error(err);
    if (out_text) *out_text = NULL;
    if (out_len) *out_len = 0;
    if (!v || !out_text || (!ids && n_ids > 0) || n_ids < 0)
        return sl_set_error(err, SL_ERR_INVALID_ARG, "sl_detokenize: bad argument");
    for (int32_t i = 0; i < n_ids; i++)
        if (ids[i] < 0 || ids[i] >= v->n_tokens)
            return sl_set_error(err, SL_ERR_RANGE, "token id %d at position %d is outside the vocabulary (0..%d)",
                                ids[i], i, v->n_tokens - 1);
    bool remove_space = v->add_space_prefix;
    if (remove_special && v->add_bos && n_ids > 0 && ids[0] == v->bos) {
        remove_space = false;
        ids++;
        n_ids--;
    }
    if (remove_special && v->add_eos && n_ids > 0 && ids[n_ids - 1] == v->eos) n_ids--;

    strbuf b = {0};
    if (!sb_reserve(&b, 0)) return sl_set_error(err, SL_ERR_NOMEM, "out of memory");
    b.data[0] = 0;
    for (int32_t i = 0; i < n_ids; i++) {
        size_t n;
        const char *p = sl_token_to_piece(v, ids[i], unparse_special, &n);
        if (remove_space && n > 0 && p[0] == ' ') {
            p++;
            n--;
        }
        remove_space = false;
        if (!sb_append(&b, p, n)) {
            free(b.data);
            return sl_set_error(err, SL_ERR_NOMEM, "out of memory detokenizing %d tokens", n_ids);
        }
    }
    if (v->clean_spaces) {
        b.n = clean_spaces(b.data, b.n);
        b.data[b.n] = 0;
    }
    *out_text = b.data;
    if (out_len) *out_len = b.n;
    return SL_OK;
}

/* ---- streaming detokenizer --------------------------------------------------------------------- */

struct sl_detok {
    const sl_vocab *vocab; /* tokenizer */
    bool special;          /* render control tokens */
    strbuf buf;            /* [0, emitted) returned by the last call, [emitted, n) held back */
    size_t emitted;        /* bytes handed out by the last call */
};

/* Bytes at the end of s[0..n) that start a UTF-8 character which is not complete yet. */
static size_t utf8_incomplete_tail(const char *s, size_t n) {
    for (size_t k = 1; k <= 3 && k <= n; k++) {
        uint8_t c = (uint8_t)s[n - k];
        if ((c & 0xC0) == 0x80) continue; /* continuation byte: keep looking for the lead */
        size_t need = 1;
        if (c >= 0xC2 && c <= 0xDF) need = 2;
        else if (c >= 0xE0 && c <= 0xEF) need = 3;
        else if (c >= 0xF0 && c <= 0xF4) need = 4;
        return need > k ? k : 0;
    }
    return 0;
}

sl_detok *sl_detok_init(const sl_vocab *vocab, bool special, sl_error *err) {
    sl_clear_error(err);
    if (!vocab) {
        sl_set_error(err, SL_ERR_INVALID_ARG, "sl_detok_init: no vocabulary");
        return NULL;
    }
    sl_detok *d = calloc(1, sizeof *d);
    if (!d || !sb_reserve(&d->buf, 64)) {
        free(d);
        sl_set_error(err, SL_ERR_NOMEM, "out of memory");
        return NULL;
    }
    d->vocab = vocab;
    d->special = special;
    return d;
}

sl_status sl_detok_push(sl_detok *d, int32_t id, const char **out, size_t *out_len, sl_error *err) {
    sl_clear_error(err);
    if (out) *out = "";
    if (out_len) *out_len = 0;
    if (!d) return sl_set_error(err, SL_ERR_INVALID_ARG, "sl_detok_push: NULL detokenizer");
    size_t n;
    const char *p = sl_token_to_piece(d->vocab, id, d->special, &n);
    if (!p)
        return sl_set_error(err, SL_ERR_RANGE, "token id %d is outside the vocabulary (0..%d)", id,
                            d->vocab->n_tokens - 1);
    /* drop what the previous call handed out, keep what was held back */
    memmove(d->buf.data, d->buf.data + d->emitted, d->buf.n - d->emitted);
    d->buf.n -= d->emitted;
    d->emitted = 0;
    if (!sb_append(&d->buf, p, n)) return sl_set_error(err, SL_ERR_NOMEM, "out of memory");
    d->emitted = d->buf.n - utf8_incomplete_tail(d->buf.data, d->buf.n);
    if (out) *out = d->buf.data;
    if (out_len) *out_len = d->emitted;
    return SL_OK;
}

void sl_detok_flush(sl_detok *d, const char **out, size_t *out_len) {
    if (!d) {
        if (out) *out = "";
        if (out_len) *out_len = 0;
        return;
    }
    memmove(d->buf.data, d->buf.data + d->emitted, d->buf.n - d->emitted);
    d->buf.n -= d->emitted;
    d->emitted = d->buf.n; /* hand out everything; the next push drops it */
    if (out) *out = d->buf.data;
    if (out_len) *out_len = d->buf.n;
}

void sl_detok_free(sl_detok *d) {
    if (!d) return;
    free(d->buf.data);
    free(d);
}
