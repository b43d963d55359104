/*
 * fuzz_tokenize.c — libFuzzer harness for the tokenizer encode path (sl_tokenize: special-token
 * partitioning, SentencePiece merges with byte fallback, the BPE regex pre-tokenizers and
 * merges) on arbitrary bytes against each fixture vocabulary (llama-spm, llama-bpe, gpt-2,
 * starcoder, deepseek-llm), then the decode of what it produced.
 *
 * Input: byte 0 picks the vocabulary (mod 5), byte 1 the options (bit 0 add BOS/EOS, bit 1
 * parse special tokens, bit 2 remove_special / bit 3 unparse_special when decoding), the rest
 * is the text (any bytes: invalid UTF-8 and NUL included). Checked beyond memory safety: every
 * id is inside the vocabulary, and the streaming detokenizer's chunks concatenate to exactly the
 * pieces (the contract in skipllama.h).
 * What it is not: a comparison with llama.cpp (tests/test_tokenizer.c does that on fixtures).
 */
#include "fuzz_common.h"

static sl_model *tk_models[FZ_N_VOCABS];

static int tk_init(void) {
    if (!tk_models[0]) fz_load_vocabs(tk_models);
    return 0;
}

/* Streaming decode of ids must reproduce the concatenated pieces byte for byte. */
static void tk_check_stream(const sl_vocab *v, const int32_t *ids, int32_t n, bool special) {
    sl_error err;
    sl_detok *d = sl_detok_init(v, special, &err);
    fz_require(d != NULL, "sl_detok_init: %s", err.message);
    size_t cap = 256, got = 0, want_len = 0;
    char *buf = malloc(cap);
    fz_require(buf != NULL, "alloc");
    for (int32_t i = 0; i < n; i++) {
        const char *out;
        size_t len;
        fz_require(sl_detok_push(d, ids[i], &out, &len, &err) == SL_OK, "detok_push(%d): %s", ids[i], err.message);
        if (got + len > cap) {
            while (got + len > cap) cap *= 2;
            buf = realloc(buf, cap);
            fz_require(buf != NULL, "alloc");
        }
        if (len) memcpy(buf + got, out, len);
        got += len;
        size_t plen;
        fz_require(sl_token_to_piece(v, ids[i], special, &plen) != NULL, "piece of id %d", ids[i]);
        want_len += plen;
    }
    const char *out;
    size_t len;
    sl_detok_flush(d, &out, &len);
    if (got + len > cap) {
        cap = got + len;
        buf = realloc(buf, cap);
        fz_require(buf != NULL, "alloc");
    }
    if (len) memcpy(buf + got, out, len);
    got += len;
    fz_require(got == want_len, "stream gave %zu bytes, pieces %zu", got, want_len);
    size_t pos = 0;
    for (int32_t i = 0; i < n; i++) {
        size_t plen;
        const char *p = sl_token_to_piece(v, ids[i], special, &plen);
        fz_require(memcmp(buf + pos, p, plen) == 0, "stream differs from the pieces at token %d", i);
        pos += plen;
    }
    free(buf);
    sl_detok_free(d);
}

int sl_fuzz_tokenize(const uint8_t *data, size_t size) {
    tk_init();
    if (size < 2) return 0;
    const sl_vocab *v = sl_model_get_vocab(tk_models[data[0] % FZ_N_VOCABS]);
    const uint8_t flags = data[1];
    const char *text = (const char *)data + 2;
    const size_t len = size - 2;
    const int32_t n_vocab = sl_vocab_n_tokens(v);
    int32_t *ids = NULL, n = 0;
    sl_error err;
    if (sl_tokenize(v, text, len, flags & 1, flags & 2, &ids, &n, &err) != SL_OK) {
        fz_check_error(&err, "sl_tokenize");
        return 0;
    }
    fz_require(n >= 0 && (n == 0) == (ids == NULL), "n %d ids %p", n, (void *)ids);
    for (int32_t i = 0; i < n; i++) fz_require(ids[i] >= 0 && ids[i] < n_vocab, "id %d out of range", ids[i]);
    /* plain text (no specials added or parsed) of non-empty input gives at least one token */
    if (len && !(flags & 3)) fz_require(n > 0, "%zu bytes gave no tokens", len);
    char *out = NULL;
    size_t out_len = 0;
    if (sl_detokenize(v, ids, n, flags & 4, flags & 8, &out, &out_len, &err) == SL_OK) {
        fz_require(out != NULL && out[out_len] == 0, "detokenized text not terminated");
        sl_free_text(out);
    } else {
        fz_check_error(&err, "sl_detokenize");
    }
    tk_check_stream(v, ids, n, (flags & 8) != 0);
    sl_free_tokens(ids);
    return 0;
}

/* ---- seeds: every fixture test string against its own vocabulary, with and without specials ---- */

typedef struct tk_seed_ctx {
    const char *dir; /* output directory */
    int vocab;       /* vocabulary index */
} tk_seed_ctx;

static void tk_seed_one(const char *text, size_t len, int k, void *ud) {
    const tk_seed_ctx *c = ud;
    uint8_t *buf = malloc(len + 2);
    if (!buf) return;
    buf[0] = (uint8_t)c->vocab;
    buf[1] = (uint8_t)(k % 4 == 0 ? 0x03 : k % 4 == 1 ? 0x0c : 0x00);
    memcpy(buf + 2, text, len);
    char name[64];
    snprintf(name, sizeof(name), "v%d-%03d", c->vocab, k);
    fz_write_seed(c->dir, name, buf, len + 2);
    free(buf);
}

void sl_fuzz_tokenize_write_seeds(const char *dir) {
    for (int i = 0; i < FZ_N_VOCABS; i++) {
        tk_seed_ctx c = {dir, i};
        fz_each_vocab_test(i, ".inp", tk_seed_one, &c);
        static const char specials[] = "<s>Hi</s><|endoftext|><|begin_of_text|><unk> <|eot_id|><|im_start|>\xE2\x96\x81";
        uint8_t buf[sizeof(specials) + 1];
        buf[0] = (uint8_t)i;
        buf[1] = 0x03;
        memcpy(buf + 2, specials, sizeof(specials) - 1);
        char name[64];
        snprintf(name, sizeof(name), "v%d-specials", i);
        fz_write_seed(dir, name, buf, sizeof(specials) + 1);
    }
}

#ifndef SL_FUZZ_NO_MAIN
int LLVMFuzzerInitialize(int *argc, char ***argv) {
    const char *seeds = getenv("SL_FUZZ_WRITE_SEEDS");
    if (seeds && *seeds) {
        sl_fuzz_tokenize_write_seeds(seeds);
        exit(0);
    }
    return tk_init();
}
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) { return sl_fuzz_tokenize(data, size); }
#endif
