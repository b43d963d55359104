/*
 * fuzz_detokenize.c — libFuzzer harness for the decode side of the tokenizers: sl_detokenize
 * (space-prefix removal, clean_up_tokenization_spaces, BOS/EOS removal), sl_token_to_piece, the
 * streaming sl_detok_* (UTF-8 hold-back across tokens) and the per-id vocabulary accessors, on
 * arbitrary id sequences against each fixture vocabulary — out-of-range and negative ids
 * included.
 *
 * Input: byte 0 picks the vocabulary (mod 5), byte 1 the options (bit 0 remove_special, bit 1
 * unparse_special, bit 2 special pieces in the stream), then ids as 16-bit little-endian units:
 * u mapped to u mod (n_vocab + 8) - 4, so most ids are valid and the edges (-4..-1,
 * n_vocab..n_vocab+3) are common; the unit 0xFFFF is followed by a raw 32-bit id (any value).
 * Checked beyond memory safety: a sequence with a bad id is refused with SL_ERR_RANGE, the
 * stream refuses the same ids without changing its output, and the stream's chunks concatenate
 * to the pieces.
 * What it is not: the encoder (fuzz_tokenize.c).
 */
#include "fuzz_common.h"

static sl_model *dt_models[FZ_N_VOCABS];

static int dt_init(void) {
    if (!dt_models[0]) fz_load_vocabs(dt_models);
    return 0;
}

int sl_fuzz_detokenize(const uint8_t *data, size_t size) {
    dt_init();
    if (size < 2) return 0;
    const sl_vocab *v = sl_model_get_vocab(dt_models[data[0] % FZ_N_VOCABS]);
    const uint8_t flags = data[1];
    const int32_t n_vocab = sl_vocab_n_tokens(v);
    int32_t *ids = malloc(sizeof(int32_t) * (size / 2 + 1));
    fz_require(ids != NULL, "alloc");
    int32_t n = 0;
    bool any_bad = false;
    for (size_t i = 2; i + 1 < size;) {
        uint32_t u = (uint32_t)data[i] | (uint32_t)data[i + 1] << 8;
        i += 2;
        int32_t id;
        if (u == 0xFFFF && i + 3 < size) {
            uint32_t raw = (uint32_t)data[i] | (uint32_t)data[i + 1] << 8 | (uint32_t)data[i + 2] << 16 | (uint32_t)data[i + 3] << 24;
            i += 4;
            memcpy(&id, &raw, 4);
        } else {
            id = (int32_t)(u % (uint32_t)(n_vocab + 8)) - 4;
        }
        any_bad |= id < 0 || id >= n_vocab;
        ids[n++] = id;
    }
    sl_error err;
    char *out = NULL;
    size_t out_len = 0;
    sl_status st = sl_detokenize(v, ids, n, flags & 1, flags & 2, &out, &out_len, &err);
    if (any_bad) {
        fz_require(st == SL_ERR_RANGE && out == NULL && err.code == SL_ERR_RANGE, "bad id accepted (status %d)", (int)st);
    } else {
        fz_require(st == SL_OK, "detokenize failed: %s", err.message);
        fz_require(out[out_len] == 0, "not terminated");
        sl_free_text(out);
    }

    /* streaming: bad ids refused one by one, the rest concatenates to the pieces */
    const bool special = (flags & 4) != 0;
    sl_detok *d = sl_detok_init(v, special, &err);
    fz_require(d != NULL, "detok_init: %s", err.message);
    size_t got = 0, want = 0;
    uint64_t h_got = 1469598103934665603ull, h_want = 1469598103934665603ull;
    for (int32_t i = 0; i < n; i++) {
        const char *chunk;
        size_t len;
        size_t plen;
        const char *piece = sl_token_to_piece(v, ids[i], special, &plen);
        st = sl_detok_push(d, ids[i], &chunk, &len, &err);
        if (ids[i] < 0 || ids[i] >= n_vocab) {
            fz_require(st == SL_ERR_RANGE && len == 0 && piece == NULL && plen == 0, "stream accepted id %d", ids[i]);
            size_t tlen;
            fz_require(sl_vocab_token_text(v, ids[i], &tlen) == NULL, "text of id %d", ids[i]);
            fz_require(!sl_vocab_is_eog(v, ids[i]) && !sl_vocab_is_control(v, ids[i]), "id %d is eog/control", ids[i]);
            continue;
        }
        fz_require(st == SL_OK && piece != NULL, "stream refused id %d", ids[i]);
        for (size_t k = 0; k < len; k++) h_got = (h_got ^ (uint8_t)chunk[k]) * 1099511628211ull;
        for (size_t k = 0; k < plen; k++) h_want = (h_want ^ (uint8_t)piece[k]) * 1099511628211ull;
        got += len;
        want += plen;
        size_t tlen;
        const char *t = sl_vocab_token_text(v, ids[i], &tlen);
        fz_require(t != NULL && sl_vocab_find_token(v, t, tlen) == ids[i], "token text of %d does not find it", ids[i]);
        (void)sl_vocab_is_eog(v, ids[i]);
        (void)sl_vocab_is_control(v, ids[i]);
    }
    const char *chunk;
    size_t len;
    sl_detok_flush(d, &chunk, &len);
    for (size_t k = 0; k < len; k++) h_got = (h_got ^ (uint8_t)chunk[k]) * 1099511628211ull;
    got += len;
    fz_require(got == want && h_got == h_want, "stream gave %zu bytes, the pieces %zu", got, want);
    sl_detok_free(d);
    free(ids);
    return 0;
}

/* ---- seeds: the fixtures' expected ids, encoded as the harness reads them --------------------- */

typedef struct dt_seed_ctx {
    const char *dir; /* output directory */
    int vocab;       /* vocabulary index */
} dt_seed_ctx;

static void dt_seed_one(const char *line, size_t len, int k, void *ud) {
    const dt_seed_ctx *c = ud;
    uint8_t *buf = malloc(2 + len * 6 + 16);
    if (!buf) return;
    size_t n = 0;
    buf[n++] = (uint8_t)c->vocab;
    buf[n++] = (uint8_t)(k & 7);
    const char *p = line, *end = line + len;
    while (p < end) {
        char *e;
        long v = strtol(p, &e, 10);
        if (e == p) {
            p++;
            continue;
        }
        p = e;
        if (v + 4 < 0xFFFF) {
            buf[n++] = (uint8_t)((v + 4) & 0xFF);
            buf[n++] = (uint8_t)((v + 4) >> 8);
        } else {
            uint32_t u = (uint32_t)v;
            buf[n++] = 0xFF;
            buf[n++] = 0xFF;
            for (int b = 0; b < 4; b++) buf[n++] = (uint8_t)(u >> (8 * b));
        }
    }
    char name[64];
    snprintf(name, sizeof(name), "v%d-%03d", c->vocab, k);
    fz_write_seed(c->dir, name, buf, n);
    free(buf);
}

void sl_fuzz_detokenize_write_seeds(const char *dir) {
    for (int i = 0; i < FZ_N_VOCABS; i++) {
        dt_seed_ctx c = {dir, i};
        fz_each_vocab_test(i, ".out", dt_seed_one, &c);
    }
}

#ifndef SL_FUZZ_NO_MAIN
int LLVMFuzzerInitialize(int *argc, char ***argv) {
    const char *seeds = getenv("SL_FUZZ_WRITE_SEEDS");
    if (seeds && *seeds) {
        sl_fuzz_detokenize_write_seeds(seeds);
        exit(0);
    }
    return dt_init();
}
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) { return sl_fuzz_detokenize(data, size); }
#endif
