/*
 * fuzz_gguf.c — libFuzzer harness for the GGUF reader (src/format/gguf_read.c) and for everything that
 * consumes its metadata without a model: the typed getters, array element accessors, the
 * writer's metadata copy (nested arrays re-serialised), and the vocabulary builder
 * (sl_vocab_init_from_gguf) followed by a short tokenize / detokenize on whatever vocabulary a
 * hostile file describes.
 *
 * Input: the bytes of a GGUF file, parsed in memory (gguf_open_memory). Seeds: the fixtures'
 * headers and small synthetic models (fuzz/make_seeds.sh); dictionary: fuzz/gguf.dict.
 * What it is not: the model loader (fuzz_model.c builds an sl_model from the same kind of input).
 */
#include "fuzz_common.h"
#include "format/gguf.h"
#include "format/quant.h"
#include "kernels/kernels.h"
#include "text/tokenizer.h"

/* Bytes of the input the parser claims a tensor or string occupies must be inside it: touching
 * the first and last byte makes ASan prove it. */
static void gg_touch(const void *p, size_t n) {
    if (!n) return;
    volatile uint8_t sink = ((const volatile uint8_t *)p)[0];
    sink ^= ((const volatile uint8_t *)p)[n - 1];
    (void)sink;
}

static void gg_walk_array(const gguf_array *a, int depth) {
    fz_require(depth <= 64, "array nesting %d", depth);
    uint64_t lim = a->n < 4096 ? a->n : 4096;
    if (a->elem_type == GGUF_TYPE_STRING) {
        for (uint64_t i = 0; i < lim; i++) gg_touch(a->strs[i].data, (size_t)a->strs[i].len);
    } else if (a->elem_type == GGUF_TYPE_ARRAY) {
        for (uint64_t i = 0; i < lim; i++) gg_walk_array(&a->items[i].v.arr, depth + 1);
    } else {
        double acc = 0;
        for (uint64_t i = 0; i < lim; i++) acc += (double)gguf_arr_f32(a, i) + (double)gguf_arr_int(a, i);
        volatile double sink = acc;
        (void)sink;
        if (a->n) gg_touch(a->data, (size_t)a->n * gguf_type_size(a->elem_type));
    }
}

/* The first row (at most 4096 elements) of a tensor through its decoder and the scalar and
 * fastest dot products (issue 19: every block type's decoder on hostile bytes: NaN / inf scales,
 * any bit patterns). Only memory safety and UB are checked: hostile bytes give any numbers. */
static void gg_decode(const gguf_tensor_info *t) {
    static float row[4096], x[4096];
    static uint8_t act[4096 * 2];
    const int64_t n = t->ne[0];
    if (n > 4096 || t->nbytes < sl_type_row_size(t->type, n)) return;
    sl_dequantize_row_ref(t->type, t->data, row, n);
    for (int64_t k = 0; k < n; k++) x[k] = (float)(k % 7) - 3.0f;
    fz_require(sl_act_size(t->type, n) <= sizeof(act), "activation buffer");
    sl_act_prepare(t->type, x, n, act);
    volatile float a = sl_vec_dot_ref(t->type, t->data, act, n), b = sl_vec_dot(t->type, t->data, act, n);
    (void)a, (void)b;
    sl_vec_axpy(t->type, t->data, 0.5f, row, n);
}

static void gg_vocab(const gguf_file *f) {
    sl_error err;
    struct sl_vocab *v = sl_vocab_init_from_gguf(f, &err);
    if (!v) {
        if (err.code != SL_OK) fz_check_error(&err, "sl_vocab_init_from_gguf");
        return;
    }
    const int32_t n = sl_vocab_n_tokens(v);
    fz_require(n > 0, "vocabulary with %d tokens", n);
    static const char text[] = " Hello world! <s>\xE2\x96\x81x</s> 12345 \xF0\x9F\xA6\x99 \xFF\xFE \n\t<|endoftext|>";
    for (int mode = 0; mode < 2; mode++) {
        int32_t *ids = NULL, n_ids = 0;
        if (sl_tokenize(v, text, sizeof(text) - 1, mode, mode, &ids, &n_ids, &err) != SL_OK) {
            fz_check_error(&err, "sl_tokenize");
            continue;
        }
        for (int32_t i = 0; i < n_ids; i++) fz_require(ids[i] >= 0 && ids[i] < n, "token %d out of range", ids[i]);
        char *out = NULL;
        size_t out_len = 0;
        if (sl_detokenize(v, ids, n_ids, mode, !mode, &out, &out_len, &err) == SL_OK) {
            fz_require(out[out_len] == 0, "detokenized text not terminated");
            sl_free_text(out);
        } else {
            fz_check_error(&err, "sl_detokenize");
        }
        sl_free_tokens(ids);
    }
    int32_t lim = n < 512 ? n : 512;
    for (int32_t i = 0; i < lim; i++) {
        size_t len;
        const char *p = sl_token_to_piece(v, i, i & 1, &len);
        if (p) gg_touch(p, len);
        const char *t = sl_vocab_token_text(v, i, &len);
        fz_require(t != NULL, "token %d has no text", i);
        int32_t back = sl_vocab_find_token(v, t, len);
        fz_require(back == i, "token %d text finds id %d", i, back);
        (void)sl_vocab_is_eog(v, i);
        (void)sl_vocab_is_control(v, i);
    }
    size_t len;
    fz_require(sl_token_to_piece(v, n, false, &len) == NULL && len == 0, "piece of an out-of-range id");
    fz_require(sl_token_to_piece(v, -1, true, &len) == NULL, "piece of id -1");
    sl_vocab_free(v);
}

int sl_fuzz_gguf(const uint8_t *data, size_t size) {
    sl_error err;
    gguf_file *f = gguf_open_memory(data, size, &err);
    if (!f) {
        fz_check_error(&err, "gguf_open_memory");
        return 0;
    }
    fz_require(f->version == 2 || f->version == 3, "version %u accepted", f->version);
    for (uint64_t i = 0; i < f->n_kv; i++) {
        const gguf_kv *kv = &f->kv[i];
        gg_touch(kv->key.data, (size_t)kv->key.len);
        char key[256];
        gguf_str_copy(kv->key, key, sizeof(key));
        uint32_t u32;
        int64_t i64;
        float f32;
        bool b;
        gguf_str s;
        (void)gguf_get_u32(f, key, &u32);
        (void)gguf_get_i64(f, key, &i64);
        (void)gguf_get_f32(f, key, &f32);
        (void)gguf_get_bool(f, key, &b);
        if (gguf_get_str(f, key, &s)) gg_touch(s.data, (size_t)s.len);
        if (kv->value.type == GGUF_TYPE_ARRAY) gg_walk_array(&kv->value.v.arr, 0);
    }
    for (uint64_t i = 0; i < f->n_tensors; i++) {
        const gguf_tensor_info *t = &f->tensors[i];
        fz_require((const uint8_t *)t->data >= f->base && t->nbytes <= f->size &&
                       (size_t)((const uint8_t *)t->data - f->base) <= f->size - t->nbytes,
                   "tensor %llu outside the buffer", (unsigned long long)i);
        fz_require(t->nbytes == sl_type_row_size(t->type, t->ne[0]) * (size_t)(t->ne[1] * t->ne[2] * t->ne[3]),
                   "tensor %llu: nbytes %zu disagrees with its shape", (unsigned long long)i, t->nbytes);
        gg_touch(t->data, t->nbytes);
        gg_decode(t);
        char name[256];
        if (t->name.len < sizeof(name)) {
            gguf_str_copy(t->name, name, sizeof(name));
            if (!memchr(name, 0, (size_t)t->name.len)) fz_require(gguf_find_tensor(f, name) == t, "tensor lookup by name");
        }
    }
    /* the writer must be able to re-serialise anything the reader accepted */
    gguf_writer *w = gguf_writer_init();
    fz_require(w && gguf_writer_copy_kv(w, f, NULL, NULL), "gguf_writer_copy_kv failed");
    gguf_writer_free(w);

    gg_vocab(f);
    gguf_close(f);
    return 0;
}

/* ---- seeds -------------------------------------------------------------------------------------- */

/* Keys whose arrays are cut to the first GG_SEED_TOKENS entries, and special ids that would then
 * point past the end. */
#define GG_SEED_TOKENS 400
static bool gg_seed_skip(const char *key, void *ud) {
    (void)ud;
    return !strcmp(key, "tokenizer.ggml.tokens") || !strcmp(key, "tokenizer.ggml.scores") ||
           !strcmp(key, "tokenizer.ggml.token_type") || !strcmp(key, "tokenizer.ggml.merges") ||
           (!strncmp(key, "tokenizer.ggml.", 15) && strstr(key, "_token_id"));
}

/* A vocabulary file cut down to GG_SEED_TOKENS tokens and merges (a few KiB instead of MiBs),
 * with every metadata type kept, so mutations reach the vocabulary builder. */
static void gg_seed_vocab(const char *dir, const char *fixture, const char *name) {
    char path[PATH_MAX];
    if (!fz_fixture(fixture, path, sizeof(path))) return;
    sl_error err;
    gguf_file *f = gguf_open(path, &err);
    if (!f) return;
    gguf_writer *w = gguf_writer_init();
    gguf_writer_copy_kv(w, f, gg_seed_skip, NULL);
    const gguf_array *a;
    static const char *const str_keys[2] = {"tokenizer.ggml.tokens", "tokenizer.ggml.merges"};
    for (int k = 0; k < 2; k++) {
        if (!(a = gguf_get_arr(f, str_keys[k], GGUF_TYPE_STRING))) continue;
        uint64_t n = a->n < GG_SEED_TOKENS ? a->n : GG_SEED_TOKENS;
        char **strs = calloc((size_t)n, sizeof(char *));
        for (uint64_t i = 0; i < n; i++) {
            strs[i] = malloc((size_t)a->strs[i].len + 1);
            gguf_str_copy(a->strs[i], strs[i], (size_t)a->strs[i].len + 1);
        }
        gguf_writer_set_arr_str(w, str_keys[k], (const char *const *)strs, n);
        for (uint64_t i = 0; i < n; i++) free(strs[i]);
        free(strs);
    }
    static const char *const num_keys[2] = {"tokenizer.ggml.scores", "tokenizer.ggml.token_type"};
    for (int k = 0; k < 2; k++) {
        if (!(a = gguf_get_arr(f, num_keys[k], GGUF_TYPE_COUNT)) || !gguf_type_size(a->elem_type)) continue;
        gguf_writer_set_arr(w, num_keys[k], a->elem_type, a->data, a->n < GG_SEED_TOKENS ? a->n : GG_SEED_TOKENS);
    }
    /* special ids: keep those inside the cut vocabulary, move the others to its last tokens */
    for (uint64_t i = 0; i < f->n_kv; i++) {
        char key[128];
        gguf_str_copy(f->kv[i].key, key, sizeof(key));
        uint32_t id;
        if (!gg_seed_skip(key, NULL) || !strstr(key, "_token_id") || !gguf_get_u32(f, key, &id)) continue;
        gguf_writer_set_u32(w, key, id < GG_SEED_TOKENS ? id : GG_SEED_TOKENS - 1 - (uint32_t)(i % 8));
    }
    char out[PATH_MAX];
    snprintf(out, sizeof(out), "%s/%s", dir, name);
    if (gguf_writer_write(w, out, &err) != SL_OK) fprintf(stderr, "fuzz_gguf: %s: %s\n", out, err.message);
    gguf_writer_free(w);
    gguf_close(f);
}

void sl_fuzz_gguf_write_seeds(const char *dir) {
    static const char *const names[FZ_N_VOCABS] = {"vocab-llama-spm.gguf", "vocab-llama-bpe.gguf", "vocab-gpt-2.gguf",
                                                   "vocab-starcoder.gguf", "vocab-deepseek-llm.gguf"};
    for (int i = 0; i < FZ_N_VOCABS; i++) gg_seed_vocab(dir, fz_vocab_files[i], names[i]);
    /* one of every metadata type, and a tensor of every type */
    gguf_writer *w = gguf_writer_init();
    gguf_writer_set_str(w, "general.architecture", "llama");
    gguf_writer_set_u32(w, "general.alignment", 64);
    gguf_writer_set_u32(w, "llama.block_count", 1);
    gguf_writer_set_i32(w, "llama.context_length", -1);
    gguf_writer_set_u64(w, "llama.embedding_length", 32);
    gguf_writer_set_f32(w, "llama.rope.freq_base", 10000.0f);
    gguf_writer_set_bool(w, "tokenizer.ggml.add_bos_token", true);
    const int16_t i16[3] = {-1, 0, 1};
    const double f64[2] = {1.5, -0.0};
    const uint8_t u8[4] = {0, 1, 2, 255};
    gguf_writer_set_arr(w, "a.i16", GGUF_TYPE_INT16, i16, 3);
    gguf_writer_set_arr(w, "a.f64", GGUF_TYPE_FLOAT64, f64, 2);
    gguf_writer_set_arr(w, "a.u8", GGUF_TYPE_UINT8, u8, 4);
    const char *strs[2] = {"", "x y"};
    gguf_writer_set_arr_str(w, "a.str", strs, 2);
    static float buf[64];
    const int64_t ne1[1] = {32}, ne2[2] = {32, 2}, ne4[4] = {32, 1, 1, 1};
    gguf_writer_add_tensor(w, "t.f32", SL_TYPE_F32, 1, ne1, buf);
    gguf_writer_add_tensor(w, "t.f16", SL_TYPE_F16, 2, ne2, buf);
    gguf_writer_add_tensor(w, "t.bf16", SL_TYPE_BF16, 4, ne4, buf);
    gguf_writer_add_tensor(w, "t.q8_0", SL_TYPE_Q8_0, 2, ne2, buf);
    gguf_writer_add_tensor(w, "t.q4_0", SL_TYPE_Q4_0, 1, ne1, buf);
    /* issue 19's types: 32-element blocks, and one 256-element super-block row each */
    static uint8_t kbuf[2 * 210];
    for (size_t j = 0; j < sizeof(kbuf); j++) kbuf[j] = (uint8_t)(j * 37 + 11);
    const int64_t ne256[2] = {256, 1};
    static const sl_type more[] = {SL_TYPE_Q4_1, SL_TYPE_Q5_0, SL_TYPE_Q5_1, SL_TYPE_IQ4_NL, SL_TYPE_Q2_K,
                                   SL_TYPE_Q3_K, SL_TYPE_Q4_K, SL_TYPE_Q5_K, SL_TYPE_Q6_K, SL_TYPE_IQ4_XS};
    for (size_t j = 0; j < sizeof(more) / sizeof(more[0]); j++) {
        char tn[32];
        snprintf(tn, sizeof(tn), "t.%s", sl_type_name(more[j]));
        gguf_writer_add_tensor(w, tn, more[j], 2, sl_type_block_size(more[j]) == 256 ? ne256 : ne2, kbuf);
    }
    char out[PATH_MAX];
    sl_error err;
    snprintf(out, sizeof(out), "%s/all-types.gguf", dir);
    if (gguf_writer_write(w, out, &err) != SL_OK) fprintf(stderr, "fuzz_gguf: %s: %s\n", out, err.message);
    gguf_writer_free(w);
}

#ifndef SL_FUZZ_NO_MAIN
int LLVMFuzzerInitialize(int *argc, char ***argv) {
    const char *seeds = getenv("SL_FUZZ_WRITE_SEEDS");
    if (seeds && *seeds) {
        sl_fuzz_gguf_write_seeds(seeds);
        exit(0);
    }
    return 0;
}
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) { return sl_fuzz_gguf(data, size); }
#endif
