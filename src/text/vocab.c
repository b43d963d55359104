/*
 * vocab.c — the vocabulary's shared lookups: text -> id and merge-pair -> rank hash tables, the
 * GPT-2 byte <-> unicode mapping, UTF-8 decoding, the growable id list, and the public sl_vocab_*
 * accessors. What it is not: loading (vocab_load.c) or tokenizing (tokenizer.c, tokenizer_spm.c,
 * tokenizer_bpe.c).
 */
#include "text/vocab.h"

#include "util/strbuf.h"
#include "util/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- lookups ---------------------------------------------------------------------------------- */

int sl_cmp_i32(const void *a, const void *b) {
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

int32_t sl_vocab_lookup(const struct sl_vocab *v, const char *text, size_t len) {
    size_t mask = v->tok_cap - 1;
    size_t i = hash_finish(hash_bytes(FNV_SEED, text, len)) & mask;
    for (;;) {
        uint32_t s = v->tok_slots[i];
        if (!s) return -1;
        const sl_token_data *t = &v->tokens[s - 1];
        if (t->len == len && memcmp(t->text, text, len) == 0) return (int32_t)(s - 1);
        i = (i + 1) & mask;
    }
}

int32_t sl_vocab_merge_rank(const struct sl_vocab *v, const char *left, size_t left_len, const char *right,
                            size_t right_len) {
    if (!v->merge_cap) return -1;
    size_t mask = v->merge_cap - 1;
    size_t i = hash_pair(left, left_len, right, right_len) & mask;
    for (;;) {
        uint32_t s = v->merge_slots[i];
        if (!s) return -1;
        const sl_merge *m = &v->merges[s - 1];
        if (m->left_len == left_len && m->right_len == right_len && memcmp(m->left, left, left_len) == 0 &&
            memcmp(m->right, right, right_len) == 0)
            return (int32_t)(s - 1);
        i = (i + 1) & mask;
    }
}

bool sl_ids_push(sl_ids *ids, int32_t id) {
    if (ids->n == ids->cap) {
        size_t cap = ids->cap ? ids->cap * 2 : 64;
        int32_t *p = realloc(ids->data, cap * sizeof(int32_t));
        if (!p) return false;
        ids->data = p;
        ids->cap = cap;
    }
    ids->data[ids->n++] = id;
    return true;
}

/* ---- GPT-2 byte <-> unicode ------------------------------------------------------------------ */

/* GPT-2 gives every byte a printable character: bytes that are printable Latin-1 ('!'..'~',
 * '¡'..'¬', '®'..'ÿ') stand for themselves, the other 68 take code points 256, 257, ... in byte
 * order (so ' ' is 'Ġ' U+0120 and '\n' is 'Ċ' U+010A). */
static uint32_t gpt2_byte_cpt(uint8_t b) {
    if ((b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE) return b;
    uint32_t n = 0; /* rank of b among the non-printable bytes */
    for (unsigned c = 0; c < b; c++)
        if (!((c >= 0x21 && c <= 0x7E) || (c >= 0xA1 && c <= 0xAC) || c >= 0xAE)) n++;
    return 256 + n;
}

size_t sl_gpt2_byte_to_utf8(uint8_t b, char out[2]) {
    uint32_t cpt = gpt2_byte_cpt(b);
    if (cpt < 0x80) {
        out[0] = (char)cpt;
        return 1;
    }
    out[0] = (char)(0xC0 | (cpt >> 6));
    out[1] = (char)(0x80 | (cpt & 0x3F));
    return 2;
}

int sl_gpt2_cpt_to_byte(uint32_t cpt) {
    if (cpt < 256) {
        uint8_t b = (uint8_t)cpt;
        return gpt2_byte_cpt(b) == cpt ? (int)b : -1;
    }
    if (cpt >= 256 + 68) return -1;
    for (unsigned b = 0; b < 256; b++)
        if (gpt2_byte_cpt((uint8_t)b) == cpt) return (int)b;
    return -1;
}

size_t sl_utf8_decode(const uint8_t *s, size_t n, uint32_t *cpt) {
    uint8_t c = s[0];
    if (!(c & 0x80)) {
        *cpt = c;
        return 1;
    }
    if (!(c & 0x40)) return 0;
    if (!(c & 0x20)) {
        if (n < 2 || (s[1] & 0xC0) != 0x80) return 0;
        *cpt = ((uint32_t)(c & 0x1F) << 6) | (s[1] & 0x3F);
        return 2;
    }
    if (!(c & 0x10)) {
        if (n < 3 || (s[1] & 0xC0) != 0x80 || (s[2] & 0xC0) != 0x80) return 0;
        *cpt = ((uint32_t)(c & 0x0F) << 12) | ((uint32_t)(s[1] & 0x3F) << 6) | (s[2] & 0x3F);
        return 3;
    }
    if (!(c & 0x08)) {
        if (n < 4 || (s[1] & 0xC0) != 0x80 || (s[2] & 0xC0) != 0x80 || (s[3] & 0xC0) != 0x80) return 0;
        *cpt = ((uint32_t)(c & 0x07) << 18) | ((uint32_t)(s[1] & 0x3F) << 12) | ((uint32_t)(s[2] & 0x3F) << 6) |
               (s[3] & 0x3F);
        return 4;
    }
    return 0;
}

/* ---- accessors (skipllama.h) ------------------------------------------------------------------ */


sl_vocab_type sl_vocab_get_type(const sl_vocab *v) { return v->type; }
const char *sl_vocab_pre_name(const sl_vocab *v) { return v->pre_name; }
int32_t sl_vocab_n_tokens(const sl_vocab *v) { return v ? v->n_tokens : 0; }
int32_t sl_vocab_bos(const sl_vocab *v) { return v->bos; }
int32_t sl_vocab_eos(const sl_vocab *v) { return v->eos; }
int32_t sl_vocab_eot(const sl_vocab *v) { return v->eot; }
bool sl_vocab_add_bos(const sl_vocab *v) { return v->add_bos; }
bool sl_vocab_add_eos(const sl_vocab *v) { return v->add_eos; }
const char *sl_vocab_chat_template(const sl_vocab *v) { return v->chat_template; }

bool sl_vocab_is_eog(const sl_vocab *v, int32_t id) {
    if (!v || id < 0) return false;
    return bsearch(&id, v->eog, (size_t)v->n_eog, sizeof(int32_t), sl_cmp_i32) != NULL;
}

bool sl_vocab_is_control(const sl_vocab *v, int32_t id) {
    return v && id >= 0 && id < v->n_tokens && (v->tokens[id].attr & SL_ATTR_CONTROL);
}

const char *sl_vocab_token_text(const sl_vocab *v, int32_t id, size_t *len) {
    if (!v || id < 0 || id >= v->n_tokens) {
        if (len) *len = 0;
        return NULL;
    }
    if (len) *len = v->tokens[id].len;
    return v->tokens[id].text;
}

int32_t sl_vocab_find_token(const sl_vocab *v, const char *text, size_t len) {
    if (!v || (!text && len)) return -1;
    return sl_vocab_lookup(v, text ? text : "", len);
}
