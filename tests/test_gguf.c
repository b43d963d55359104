/*
 * test_gguf.c — the GGUF reader and writer against valid and hostile files.
 *
 * Valid: a file built by the writer with every metadata type (nested arrays included) reads
 * back with the same values; the fixture models parse. Hostile: more than 15 malformed files,
 * generated here byte by byte (truncations at every offset of a header, bad magic/version, huge
 * counts, string lengths past EOF, overflowing dims, offsets past EOF or misaligned, unknown
 * types, too-deep nesting...) and model-level faults (missing tensor/key, wrong shape, unknown
 * architecture): each must be refused with an error message, never a crash, under ASan too.
 */
#include "format/gguf.h"
#include "format/quant.h"
#include "skipllama.h"
#include "testutil.h"
#include "util/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- a byte builder for hand-made files --------------------------------------------------- */

typedef struct bytes {
    uint8_t *p;  /* data */
    size_t n;    /* used */
    size_t cap;  /* allocated */
} bytes;

static void put(bytes *b, const void *src, size_t n) {
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 64;
        b->p = realloc(b->p, b->cap);
    }
    memcpy(b->p + b->n, src, n);
    b->n += n;
}
static void u32(bytes *b, uint32_t v) { put(b, &v, 4); }
static void u64(bytes *b, uint64_t v) { put(b, &v, 8); }
static void str(bytes *b, const char *s) { u64(b, strlen(s)); put(b, s, strlen(s)); }
static void pad_to(bytes *b, size_t align) {
    static const uint8_t z[64];
    while (b->n % align) put(b, z, 1);
}

/* A valid 2-tensor file: header, 2 kv (u32 + string array), tensors "a" f32 [4] and "b" q8_0 [32,2]. */
static bytes valid_file(void) {
    bytes b = {0};
    u32(&b, GGUF_MAGIC);
    u32(&b, 3);
    u64(&b, 2); /* tensors */
    u64(&b, 2); /* kv */
    str(&b, "test.count");
    u32(&b, GGUF_TYPE_UINT32);
    u32(&b, 7);
    str(&b, "test.words");
    u32(&b, GGUF_TYPE_ARRAY);
    u32(&b, GGUF_TYPE_STRING);
    u64(&b, 2);
    str(&b, "hello");
    str(&b, "world");
    str(&b, "a");
    u32(&b, 1);
    u64(&b, 4);
    u32(&b, SL_TYPE_F32);
    u64(&b, 0);
    str(&b, "b");
    u32(&b, 2);
    u64(&b, 32);
    u64(&b, 2);
    u32(&b, SL_TYPE_Q8_0);
    u64(&b, 32);
    pad_to(&b, 32);
    float a[4] = {1, 2, 3, 4};
    put(&b, a, sizeof(a));
    pad_to(&b, 32);
    uint8_t q[68] = {0};
    put(&b, q, sizeof(q));
    return b;
}

/* Offsets of interesting fields in valid_file(), computed by walking the same layout. */
enum {
    OFF_VERSION = 4,
    OFF_NT = 8,
    OFF_NKV = 16,
    OFF_KEY0_LEN = 24,
    OFF_KV0_TYPE = 24 + 8 + 10,
    OFF_KV1_KEYLEN = OFF_KV0_TYPE + 8,
    OFF_KV1_ARRLEN = OFF_KV1_KEYLEN + 8 + 10 + 4 + 4,
    OFF_KV1_STR0_LEN = OFF_KV1_ARRLEN + 8,
    OFF_T0 = OFF_KV1_STR0_LEN + 13 + 13,
    OFF_T0_NDIMS = OFF_T0 + 9,
    OFF_T0_NE0 = OFF_T0_NDIMS + 4,
    OFF_T0_TYPE = OFF_T0_NE0 + 8,
    OFF_T0_OFFSET = OFF_T0_TYPE + 4,
    OFF_T1 = OFF_T0_OFFSET + 8,
    OFF_T1_NE1 = OFF_T1 + 9 + 4 + 8,
    OFF_T1_OFFSET = OFF_T1 + 9 + 4 + 16 + 4,
};

static void set_u32(bytes *b, size_t off, uint32_t v) { memcpy(b->p + off, &v, 4); }
static void set_u64(bytes *b, size_t off, uint64_t v) { memcpy(b->p + off, &v, 8); }

static void expect_reject(const bytes *b, const char *what) {
    sl_error err;
    sl_clear_error(&err);
    /* copy to an exact-size heap buffer so ASan sees any over-read */
    uint8_t *copy = malloc(b->n ? b->n : 1);
    memcpy(copy, b->p, b->n);
    gguf_file *f = gguf_open_memory(copy, b->n, &err);
    CHECK(f == NULL && err.code != SL_OK && err.message[0], "rejected %s: %s", what, err.message);
    gguf_close(f);
    free(copy);
}

static void test_valid_and_hostile(void) {
    bytes b = valid_file();
    sl_error err;
    gguf_file *f = gguf_open_memory(b.p, b.n, &err);
    if (CHECK(f != NULL, "valid hand-made file parses (%s)", f ? "" : err.message)) {
        uint32_t v = 0;
        CHECK(gguf_get_u32(f, "test.count", &v) && v == 7, "u32 value read back");
        const gguf_array *a = gguf_get_arr(f, "test.words", GGUF_TYPE_STRING);
        CHECK(a && a->n == 2 && gguf_str_eq(a->strs[1], "world"), "string array read back");
        const gguf_tensor_info *t = gguf_find_tensor(f, "b");
        CHECK(t && t->type == SL_TYPE_Q8_0 && t->ne[0] == 32 && t->ne[1] == 2 && t->nbytes == 68, "tensor info read back");
        const gguf_tensor_info *ta = gguf_find_tensor(f, "a");
        CHECK(ta && ((const float *)ta->data)[3] == 4.0f, "tensor data points at the right bytes");
        gguf_close(f);
    }
    /* 1. truncated at every offset */
    int truncations_ok = 0;
    for (size_t cut = 0; cut < b.n; cut++) {
        uint8_t *copy = malloc(cut ? cut : 1);
        memcpy(copy, b.p, cut);
        gguf_file *g = gguf_open_memory(copy, cut, &err);
        if (g == NULL && err.message[0]) truncations_ok++;
        else printf("  truncation at %zu was accepted\n", cut);
        gguf_close(g);
        free(copy);
    }
    CHECK(truncations_ok == (int)b.n, "truncated at each of %zu offsets: all rejected (%d)", b.n, truncations_ok);

    struct {
        const char *what; /* description */
        size_t off;       /* where to write */
        int width;        /* 4 or 8 */
        uint64_t value;   /* what to write */
    } faults[] = {
        {"bad magic", 0, 4, 0x46554746},
        {"version 1", OFF_VERSION, 4, 1},
        {"version 99", OFF_VERSION, 4, 99},
        {"huge n_tensors", OFF_NT, 8, 1ull << 60},
        {"huge n_kv", OFF_NKV, 8, UINT64_MAX},
        {"key length past EOF", OFF_KEY0_LEN, 8, 1ull << 40},
        {"unknown value type", OFF_KV0_TYPE, 4, 13},
        {"string array of 10^9 entries", OFF_KV1_ARRLEN, 8, 1000000000ull},
        {"string length past EOF", OFF_KV1_STR0_LEN, 8, 4ull << 30},
        {"n_dims 5", OFF_T0_NDIMS, 4, 5},
        {"n_dims 0", OFF_T0_NDIMS, 4, 0},
        {"zero dimension", OFF_T0_NE0, 8, 0},
        {"dimension 2^62 (element count overflows)", OFF_T1_NE1, 8, 1ull << 62},
        {"unknown tensor type 99", OFF_T0_TYPE, 4, 99},
        {"q4_K tensor whose rows (4) are not a multiple of 256", OFF_T0_TYPE, 4, 12},
        {"q6_K tensor whose rows (32) are not a multiple of 256", OFF_T1 + 9 + 4 + 16, 4, 14},
        {"unsupported ggml type iq2_xxs", OFF_T0_TYPE, 4, 16},
        {"tensor offset past EOF", OFF_T1_OFFSET, 8, 1ull << 20},
        {"tensor offset overflowing", OFF_T1_OFFSET, 8, UINT64_MAX - 31},
        {"misaligned tensor offset", OFF_T1_OFFSET, 8, 33},
        {"row not a multiple of the block size", OFF_T1 + 9 + 4, 8, 30},
    };
    for (size_t i = 0; i < sizeof(faults) / sizeof(faults[0]); i++) {
        bytes c = valid_file();
        if (faults[i].width == 4) set_u32(&c, faults[i].off, (uint32_t)faults[i].value);
        else set_u64(&c, faults[i].off, faults[i].value);
        expect_reject(&c, faults[i].what);
        free(c.p);
    }
    /* a truncated super-block: "b" as 2 rows of one Q4_K super-block (288 bytes) in a file that
     * holds 68 bytes of it */
    bytes tk = valid_file();
    set_u64(&tk, OFF_T1 + 9 + 4, 256);
    set_u32(&tk, OFF_T1 + 9 + 4 + 16, 12);
    expect_reject(&tk, "truncated q4_K super-block");
    free(tk.p);
    /* duplicate tensor name: rename "b" to "a" */
    bytes c = valid_file();
    c.p[OFF_T1 + 8] = 'a';
    expect_reject(&c, "duplicate tensor name");
    free(c.p);
    free(b.p);

    /* structures the byte patcher cannot express */
    bytes d = {0};
    u32(&d, GGUF_MAGIC), u32(&d, 3), u64(&d, 0), u64(&d, 1);
    str(&d, "deep");
    u32(&d, GGUF_TYPE_ARRAY);
    for (int k = 0; k < 12; k++) u32(&d, GGUF_TYPE_ARRAY), u64(&d, 1);
    u32(&d, GGUF_TYPE_UINT8), u64(&d, 0);
    expect_reject(&d, "arrays nested 12 deep");
    free(d.p);

    bytes e = {0};
    u32(&e, GGUF_MAGIC), u32(&e, 3), u64(&e, 0), u64(&e, 2);
    str(&e, "k"), u32(&e, GGUF_TYPE_UINT32), u32(&e, 1);
    str(&e, "k"), u32(&e, GGUF_TYPE_UINT32), u32(&e, 2);
    expect_reject(&e, "duplicate key");
    free(e.p);

    bytes g = {0};
    u32(&g, GGUF_MAGIC), u32(&g, 3), u64(&g, 0), u64(&g, 1);
    str(&g, "general.alignment"), u32(&g, GGUF_TYPE_UINT32), u32(&g, 48);
    expect_reject(&g, "alignment 48 (not a power of two)");
    free(g.p);

    bytes g2 = {0}; /* below the spec's minimum of 8, f32 data could start at odd addresses */
    u32(&g2, GGUF_MAGIC), u32(&g2, 3), u64(&g2, 0), u64(&g2, 1);
    str(&g2, "general.alignment"), u32(&g2, GGUF_TYPE_UINT32), u32(&g2, 4);
    expect_reject(&g2, "alignment 4 (below 8)");
    free(g2.p);

    bytes h = {0};
    u32(&h, GGUF_MAGIC), u32(&h, 3), u64(&h, 0), u64(&h, 1);
    str(&h, "flag"), u32(&h, GGUF_TYPE_BOOL);
    uint8_t two = 2;
    put(&h, &two, 1);
    expect_reject(&h, "bool value 2");
    free(h.p);

    bytes k = {0};
    u32(&k, GGUF_MAGIC), u32(&k, 3), u64(&k, 0), u64(&k, 1);
    str(&k, "nums"), u32(&k, GGUF_TYPE_ARRAY), u32(&k, GGUF_TYPE_UINT64), u64(&k, 1ull << 61);
    expect_reject(&k, "u64 array of 2^61 elements");
    free(k.p);

    CHECK(gguf_open_memory(NULL, 0, &err) == NULL, "empty input rejected: %s", err.message);
}

/* Writer round trip: every value type, nested arrays, tensors of every type. */
static void test_writer_roundtrip(void) {
    gguf_writer *w = gguf_writer_init();
    gguf_writer_set_u32(w, "a.u32", 123456);
    gguf_writer_set_i32(w, "a.i32", -5);
    gguf_writer_set_u64(w, "a.u64", 1ull << 40);
    gguf_writer_set_f32(w, "a.f32", 0.25f);
    gguf_writer_set_bool(w, "a.bool", true);
    gguf_writer_set_str(w, "a.str", "skip");
    const float fa[3] = {1.5f, -2.0f, 3.25f};
    gguf_writer_set_arr(w, "a.farr", GGUF_TYPE_FLOAT32, fa, 3);
    const char *words[3] = {"x", "", "zz"};
    gguf_writer_set_arr_str(w, "a.sarr", words, 3);
    static const sl_type types[] = {SL_TYPE_F32,  SL_TYPE_F16,  SL_TYPE_BF16, SL_TYPE_Q8_0, SL_TYPE_Q4_0,   SL_TYPE_Q4_1,  SL_TYPE_Q5_0,
                                    SL_TYPE_Q5_1, SL_TYPE_Q2_K, SL_TYPE_Q3_K, SL_TYPE_Q4_K, SL_TYPE_Q5_K, SL_TYPE_Q6_K, SL_TYPE_IQ4_NL,
                                    SL_TYPE_IQ4_XS};
    enum { NT = sizeof(types) / sizeof(types[0]) };
    uint8_t *blobs[NT];
    char names[NT][32];
    for (int t = 0; t < NT; t++) {
        int64_t ne[2] = {256, 3};
        size_t nb = sl_type_row_size(types[t], 256) * 3;
        blobs[t] = malloc(nb);
        for (size_t i = 0; i < nb; i++) blobs[t][i] = (uint8_t)(i * 7 + t);
        snprintf(names[t], sizeof(names[t]), "t.%s", sl_type_name(types[t]));
        gguf_writer_add_tensor(w, names[t], types[t], 2, ne, blobs[t]);
    }
    char path[] = "/tmp/skipllama-test-XXXXXX";
    int fd = mkstemp(path);
    close(fd);
    sl_error err;
    CHECK(gguf_writer_write(w, path, &err) == SL_OK, "writer writes %s", path);
    gguf_writer_free(w);
    gguf_file *f = gguf_open(path, &err);
    if (CHECK(f != NULL, "written file reads back (%s)", f ? "" : err.message)) {
        uint32_t u;
        int64_t i;
        float x;
        bool bo;
        gguf_str s;
        CHECK(gguf_get_u32(f, "a.u32", &u) && u == 123456, "u32");
        CHECK(gguf_get_i64(f, "a.i32", &i) && i == -5, "i32");
        CHECK(gguf_get_i64(f, "a.u64", &i) && i == (1ll << 40), "u64");
        CHECK(gguf_get_f32(f, "a.f32", &x) && x == 0.25f, "f32");
        CHECK(gguf_get_bool(f, "a.bool", &bo) && bo, "bool");
        CHECK(gguf_get_str(f, "a.str", &s) && gguf_str_eq(s, "skip"), "string");
        const gguf_array *a = gguf_get_arr(f, "a.farr", GGUF_TYPE_FLOAT32);
        CHECK(a && a->n == 3 && gguf_arr_f32(a, 2) == 3.25f, "f32 array");
        a = gguf_get_arr(f, "a.sarr", GGUF_TYPE_STRING);
        CHECK(a && a->n == 3 && a->strs[1].len == 0 && gguf_str_eq(a->strs[2], "zz"), "string array");
        for (int t = 0; t < NT; t++) {
            const gguf_tensor_info *ti = gguf_find_tensor(f, names[t]);
            CHECK(ti && ti->type == types[t] && ti->ne[0] == 256 && ti->ne[1] == 3 && !memcmp(ti->data, blobs[t], ti->nbytes) &&
                      ((uintptr_t)ti->data - (uintptr_t)f->base) % 32 == 0,
                  "tensor %s: type, shape, bytes and 32-byte alignment", names[t]);
        }
        gguf_close(f);
    }
    for (int t = 0; t < NT; t++) free(blobs[t]);
    remove(path);
}

/* Model-level faults: rewrite tiny-silu.gguf with one thing wrong. */
typedef struct fault {
    const char *drop_key;     /* metadata key to omit, or NULL */
    const char *drop_tensor;  /* tensor to omit, or NULL */
    const char *bad_shape;    /* tensor written with rows+1... , or NULL */
    const char *arch;         /* replacement general.architecture, or NULL */
    const char *act;          /* skipllama.activation value, or NULL */
} fault;

static bool skip_key(const char *key, void *ud) {
    const fault *fl = ud;
    return (fl->drop_key && !strcmp(key, fl->drop_key)) || (fl->arch && !strcmp(key, "general.architecture")) ||
           (fl->act && !strcmp(key, "skipllama.activation"));
}

static sl_status load_with_fault(const gguf_file *src, const fault *fl, sl_error *err) {
    gguf_writer *w = gguf_writer_init();
    gguf_writer_copy_kv(w, src, skip_key, (void *)fl);
    if (fl->arch) gguf_writer_set_str(w, "general.architecture", fl->arch);
    if (fl->act) gguf_writer_set_str(w, "skipllama.activation", fl->act);
    for (uint64_t i = 0; i < src->n_tensors; i++) {
        const gguf_tensor_info *t = &src->tensors[i];
        char name[128];
        gguf_str_copy(t->name, name, sizeof(name));
        if (fl->drop_tensor && !strcmp(name, fl->drop_tensor)) continue;
        int64_t ne[4] = {t->ne[0], t->ne[1], t->ne[2], t->ne[3]};
        if (fl->bad_shape && !strcmp(name, fl->bad_shape)) ne[1] -= 1; /* one row short: data still inside */
        gguf_writer_add_tensor(w, name, t->type, (int)t->n_dims, ne, t->data);
    }
    char path[] = "/tmp/skipllama-fault-XXXXXX";
    int fd = mkstemp(path);
    close(fd);
    gguf_writer_write(w, path, err);
    gguf_writer_free(w);
    sl_model *m = sl_model_load(path, NULL, err);
    sl_status st = m ? SL_OK : err->code;
    sl_model_free(m);
    remove(path);
    return st;
}

static void test_model_faults(void) {
    sl_error err;
    gguf_file *src = gguf_open("tests/data/tiny-silu.gguf", &err);
    if (!CHECK(src != NULL, "open fixture")) return;
    fault none = {0};
    CHECK(load_with_fault(src, &none, &err) == SL_OK, "rewritten fixture without faults loads (%s)", err.message);
    fault faults[] = {
        {.drop_key = "llama.block_count"},
        {.drop_key = "llama.embedding_length"},
        {.drop_key = "llama.attention.head_count"},
        {.drop_tensor = "blk.2.ffn_down.weight"},
        {.drop_tensor = "token_embd.weight"},
        {.drop_tensor = "output_norm.weight"},
        {.bad_shape = "blk.0.attn_k.weight"},
        {.bad_shape = "blk.3.ffn_gate.weight"},
        {.arch = "gptneox"},
        {.act = "swish"},
    };
    for (size_t i = 0; i < sizeof(faults) / sizeof(faults[0]); i++) {
        const fault *fl = &faults[i];
        sl_status st = load_with_fault(src, fl, &err);
        CHECK(st != SL_OK && err.message[0], "model with %s %s refused: %s",
              fl->drop_key ? "missing key" : fl->drop_tensor ? "missing tensor" : fl->bad_shape ? "wrong shape of" : fl->arch ? "architecture" : "activation",
              fl->drop_key ? fl->drop_key : fl->drop_tensor ? fl->drop_tensor : fl->bad_shape ? fl->bad_shape : fl->arch ? fl->arch : fl->act,
              err.message);
    }
    gguf_close(src);
}

static void test_fixtures_parse(void) {
    const char *files[] = {"tests/data/tiny-silu.gguf", "tests/data/tiny-relu.gguf", "tests/data/tiny-silu-f16.gguf",
                           "tests/data/tiny-silu-bf16.gguf", "tests/data/tiny-silu-q8_0.gguf", "tests/data/tiny-silu-q4_0.gguf"};
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        sl_error err;
        gguf_file *f = gguf_open(files[i], &err);
        CHECK(f && f->n_tensors == 38, "%s parses (%llu tensors)", files[i], f ? (unsigned long long)f->n_tensors : 0ull);
        gguf_close(f);
    }
}

static void test_half_conversions(void) {
    /* exhaustive: every finite half survives half -> float -> half */
    int bad = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        if ((h & 0x7c00) == 0x7c00) continue;
        if (sl_fp32_to_fp16(sl_fp16_to_fp32((uint16_t)h)) != h) bad++;
    }
    CHECK(bad == 0, "f16 round trip exact for all finite halves (%d bad)", bad);
    CHECK(sl_fp32_to_fp16(65520.0f) == 0x7c00 && sl_fp32_to_fp16(65519.0f) == 0x7bff, "f16 overflow boundary");
    CHECK(sl_fp32_to_fp16(1.0f + 1.0f / 2048.0f) == 0x3c00, "f16 rounds ties to even");
    CHECK(sl_fp32_to_bf16(1.0f + 1.0f / 256.0f) == 0x3f80 && sl_bf16_to_fp32(0x3f81) == 1.0078125f, "bf16 ties to even");
}

int main(void) {
    test_half_conversions();
    test_valid_and_hostile();
    test_writer_roundtrip();
    test_fixtures_parse();
    test_model_faults();
    return test_summary();
}
